"""Attach the beta dialect to a call: translate client events in and server events out."""

from __future__ import annotations

from typing import Any

from gateway.upstream import dialect
from gateway.upstream.dialect_checks import DialectError

from .session import CallSession

Event = dict[str, Any]


def attach_beta(session: CallSession) -> None:
    def from_client(event: Event) -> list[Event]:
        try:
            return dialect.client_event_beta_to_ga(event)
        except DialectError as e:
            eid = event.get("event_id")
            session.client_error(e.code, e.message, param=e.param,
                                 client_event_id=eid if isinstance(eid, str) else None)
            return []

    session.hooks.from_client.append(from_client)
    session.hooks.to_client.append(dialect.server_event_ga_to_beta)
