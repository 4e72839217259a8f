"""What a client's events do to its call: one handler per event type the gateway acts on.

Events without a handler go upstream as they are. The table is the call's client-facing
policy seam: ``session.update`` is merged under the profile's locks, tool outputs for the
gateway's own tools are refused, audio appends feed the caller intake.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable

import numpy as np

from gateway.ids import new_id

from . import policy
from .agent_audio import AgentAudio
from .intake import CallerIntake
from .state import CallPort, Event

#: One append may carry at most this much audio (OpenAI's limit).
MAX_APPEND_BYTES = 15 * 1024 * 1024


def _event_id(event: Event) -> str | None:
    eid = event.get("event_id")
    return eid if isinstance(eid, str) else None


class ClientEvents:
    """The handlers of one call's client events, keyed by event type."""

    def __init__(self, call: CallPort, agent: AgentAudio, intake: CallerIntake) -> None:
        self.call = call
        self.agent = agent
        self.intake = intake
        self.table: dict[str, Callable[[Event], None]] = {
            "session.update": self.session_update,
            "output_audio_buffer.clear": self.output_clear,
            "conversation.item.create": self.item_create,
            "input_audio_buffer.append": self.append,
        }

    def session_update(self, event: Event) -> None:
        call = self.call
        eid = _event_id(event)
        try:
            new = policy.apply_update(call.session, event.get("session"), call.profile,
                                      call.tool_lookup)
        except policy.PolicyError as e:
            call.client_error(e.code, e.message, param=e.param, client_event_id=eid)
            return
        call.session = new
        out: Event = {"type": "session.update", "session": policy.for_upstream(new)}
        if eid is not None:
            out["event_id"] = eid
        if call.upstream is not None:
            call.upstream.send(out)

    def output_clear(self, event: Event) -> None:
        rid = self.agent.interrupt(reason="client")
        self.call.send_to_client({"type": "output_audio_buffer.cleared",
                                  "event_id": new_id("event"), "response_id": rid})

    def item_create(self, event: Event) -> None:
        call = self.call
        item = event.get("item")
        if isinstance(item, dict) and item.get("type") == "function_call_output":
            for hook in call.hooks.function_output_guard:
                refusal = hook(item)
                if refusal is not None:
                    call.client_error("tool_output_refused", refusal, param="item.call_id",
                                      client_event_id=_event_id(event))
                    return
        if call.upstream is not None:
            call.upstream.send(event)

    def append(self, event: Event) -> None:
        call = self.call
        eid = _event_id(event)
        audio = event.get("audio")
        try:
            if not isinstance(audio, str):
                raise ValueError
            pcm = base64.b64decode(audio, validate=True)
        except (binascii.Error, ValueError):
            call.client_error("invalid_audio", "input_audio_buffer.append needs 'audio' as "
                              "base64 PCM16.", param="audio", client_event_id=eid)
            return
        if len(pcm) % 2:
            call.client_error("invalid_audio", "PCM16 audio must have an even number of bytes.",
                              param="audio", client_event_id=eid)
            return
        if len(pcm) > MAX_APPEND_BYTES:
            call.client_error("audio_too_large", "One append may carry at most 15 MiB.",
                              param="audio", client_event_id=eid)
            return
        self.intake.push(np.frombuffer(pcm, dtype="<i2"))
