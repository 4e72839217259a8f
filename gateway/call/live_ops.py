""":class:`UpstreamOps` for GPT-Live: how the call core's commands map onto Live events.

Live has no responses, items or truncation (docs/live.md §7), so:

- ``cancel_response`` / ``truncate``: nothing. The model yields by itself when the caller
  talks over it; the gateway only stops its own playout and keeps what was heard.
- ``prompt`` (idle prompt, dead-mic question, goodbye): ``session.commentary.append``
  with ``delegation_id: null`` ("context the model tells the user"), so the model speaks it.
- ``add_context``: ``system`` guidance (a supervisor's coaching) becomes
  ``session.instructions.append``; anything else (a keypad digit) ``session.thinking.append``
  (silent context).
- ``caller_input`` (a keypad digit): ``session.thinking.append``; Live takes its own turns,
  so nothing asks it to answer (``idle`` is not needed).
- ``reseed``: a Live session's ``input`` is fixed at start, so a reconnected session learns
  the conversation as heard through one ``session.instructions.append``.
"""

from __future__ import annotations

from collections.abc import Iterable

from gateway.upstream.client import UpstreamConnection, gateway_event_id

#: Most recent turns replayed into a reconnected session (the frontend prompt is bounded).
RESEED_TURNS = 20


def _append(up: UpstreamConnection, kind: str, content: str) -> None:
    up.send({"type": f"session.{kind}.append", "event_id": gateway_event_id(),
             "content": content, "delegation_id": None})


class LiveOps:
    def cancel_response(self, up: UpstreamConnection, response_id: str | None) -> None:
        return  # the Live model yields on its own

    def truncate(self, up: UpstreamConnection, item_id: str, heard_ms: int) -> None:
        return  # Live keeps no items to truncate

    def prompt(self, up: UpstreamConnection, instructions: str, purpose: str) -> None:
        _append(up, "commentary", instructions)

    def add_context(self, up: UpstreamConnection, text: str, role: str,
                    item_id: str | None = None) -> None:
        _append(up, "instructions" if role == "system" else "thinking", text)

    def caller_input(self, up: UpstreamConnection, text: str, *, idle: bool) -> None:
        _append(up, "thinking", text)

    def reseed(self, up: UpstreamConnection, turns: Iterable[tuple[str, str]]) -> None:
        lines = [f"{'Caller' if role == 'user' else 'You'}: {text}"
                 for role, text in list(turns)[-RESEED_TURNS:] if text]
        if lines:
            _append(up, "instructions", "The connection was renewed. The conversation so "
                    "far, as the caller heard it:\n" + "\n".join(lines))
