"""What the call core asks of its upstream, independent of the voice API it speaks.

The core's rooms (agent audio, guards, continuity, supervision) need a few things done
upstream: forget a cancelled answer, say a prompt, remember context. Realtime does each with
its own events; GPT-Live with others or not at all (:mod:`gateway.call.live_ops`). The call
holds one :class:`UpstreamOps` chosen by its profile's ``api``; callers never build API
events themselves.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from gateway.upstream.client import UpstreamConnection, gateway_event_id


class UpstreamOps(Protocol):
    """Commands the call core sends upstream (all fire-and-forget, ids prefixed ``gw_``)."""

    def cancel_response(self, up: UpstreamConnection, response_id: str | None) -> None:
        """Stop generating the current answer (a barge-in, a takeover)."""

    def truncate(self, up: UpstreamConnection, item_id: str, heard_ms: int) -> None:
        """Make the model remember only the ``heard_ms`` of an answer the caller heard."""

    def prompt(self, up: UpstreamConnection, instructions: str, purpose: str) -> None:
        """Have the agent say something now (idle prompt, dead-mic question, goodbye)."""

    def add_context(self, up: UpstreamConnection, text: str, role: str,
                    item_id: str | None = None) -> None:
        """Silent context: ``role`` ``system`` (guidance) or ``user`` (a caller's action)."""

    def reseed(self, up: UpstreamConnection, turns: Iterable[tuple[str, str]]) -> None:
        """A fresh upstream session learns the conversation so far ((role, text) turns)."""

    def caller_input(self, up: UpstreamConnection, text: str, *, idle: bool) -> None:
        """Something the caller did other than speak (a keypad digit), for the model to act
        on; ``idle``: no answer is in progress."""


class RealtimeOps:
    """Realtime GA: ``response.cancel``, ``conversation.item.truncate``, out-of-band
    ``response.create`` and ``conversation.item.create``."""

    def cancel_response(self, up: UpstreamConnection, response_id: str | None) -> None:
        event: dict[str, object] = {"type": "response.cancel", "event_id": gateway_event_id()}
        if response_id:
            event["response_id"] = response_id
        up.send(event)

    def truncate(self, up: UpstreamConnection, item_id: str, heard_ms: int) -> None:
        up.send({"type": "conversation.item.truncate", "event_id": gateway_event_id(),
                 "item_id": item_id, "content_index": 0, "audio_end_ms": heard_ms})

    def prompt(self, up: UpstreamConnection, instructions: str, purpose: str) -> None:
        up.send({"type": "response.create", "event_id": gateway_event_id(), "response": {
            "instructions": instructions, "metadata": {"gateway": purpose}}})

    def add_context(self, up: UpstreamConnection, text: str, role: str,
                    item_id: str | None = None) -> None:
        item: dict[str, object] = {"type": "message", "role": role,
                                   "content": [{"type": "input_text", "text": text}]}
        if item_id is not None:
            item = {"id": item_id, **item}
        up.send({"type": "conversation.item.create", "event_id": gateway_event_id(),
                 "item": item})

    def caller_input(self, up: UpstreamConnection, text: str, *, idle: bool) -> None:
        self.add_context(up, text, "user")
        if idle:  # Realtime answers only when asked (or on speech)
            up.send({"type": "response.create", "event_id": gateway_event_id()})

    def reseed(self, up: UpstreamConnection, turns: Iterable[tuple[str, str]]) -> None:
        for role, text in turns:
            if not text:
                continue
            kind = "input_text" if role == "user" else "output_text"
            up.send({"type": "conversation.item.create", "event_id": gateway_event_id(),
                     "item": {"type": "message", "role": role,
                              "content": [{"type": kind, "text": text}]}})
