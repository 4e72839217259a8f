"""Identifiers in the shapes OpenAI uses (``event_…``, ``item_…``, ``resp_…``, ``rtc_…``)."""

from __future__ import annotations

import secrets


def new_id(prefix: str, nbytes: int = 12) -> str:
    return f"{prefix}_{secrets.token_hex(nbytes)}"
