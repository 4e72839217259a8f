"""Python-callable tools for the tests (named by import path in a profile)."""

from __future__ import annotations

from typing import Any


def order_status(args: dict[str, Any]) -> dict[str, Any]:
    return {"order_id": args["order_id"], "status": "shipped"}
