"""What a client's events do to its call: one handler per event type the gateway acts on.

Events without a handler go upstream as they are, after the caller audio gathered so far
(the upstream sees the client's events in the client's order). Every event that can carry a
session field meets the profile's locks for the sender's :class:`~gateway.call.policy.Trust`
(the call's client, or a sideband connection holding an API key); tool outputs for the
gateway's own tools are refused; audio appends feed the caller intake in the session's
input format.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable

from gateway.audio.wire import WireDecoder
from gateway.ids import new_id

from . import locks, policy
from .agent_audio import AgentAudio
from .intake import CallerIntake
from .state import CallPort, Event, Sender, output_format_of, wire_format_of

#: One append may carry at most this much audio (OpenAI's limit).
MAX_APPEND_BYTES = 15 * 1024 * 1024

Handler = Callable[[Event, Sender], None]


def _event_id(event: Event) -> str | None:
    eid = event.get("event_id")
    return eid if isinstance(eid, str) else None


class ClientEvents:
    """The handlers of one call's client events, keyed by event type."""

    def __init__(self, call: CallPort, agent: AgentAudio, intake: CallerIntake,
                 formats: policy.FormatRule) -> None:
        self.call = call
        self.agent = agent
        self.intake = intake
        #: What this call's transport lets the audio format be ("any", "pcm", "fixed").
        self.formats = formats
        self._decoder = WireDecoder(wire_format_of(call.session))
        self.table: dict[str, Handler] = {
            "session.update": self.session_update,
            "response.create": self.response_create,
            "conversation.item.create": self.item_create,
            "input_audio_buffer.append": self.append,
            "input_audio_buffer.commit": self.commit,
            "input_audio_buffer.clear": self.clear,
            "output_audio_buffer.clear": self.output_clear,
        }

    def forward(self, event: Event, sender: Sender | None = None) -> None:
        """An event the gateway passes on: after the audio gathered before it."""
        self.intake.flush()
        if self.call.upstream is not None:
            self.call.upstream.send(event)

    def _refuse(self, e: policy.PolicyError, event: Event, sender: Sender) -> None:
        self.call.client_error(e.code, e.message, param=e.param,
                               client_event_id=_event_id(event), to=sender.reply)

    def session_update(self, event: Event, sender: Sender) -> None:
        call = self.call
        try:
            new = policy.apply_update(call.session, event.get("session"), call.profile,
                                      call.tool_lookup, sender.trust, self.formats)
        except policy.PolicyError as e:
            self._refuse(e, event, sender)
            return
        old_in, old_out = wire_format_of(call.session), output_format_of(call.session)
        call.session = new
        new_in, new_out = wire_format_of(new), output_format_of(new)
        if new_in != old_in:
            self.intake.set_wire_format(new_in)
            self._decoder = WireDecoder(new_in)
            call.wire_format = new_in
        if new_out != old_out and call.leg is not None:
            call.leg.set_output_format(new_out)
        out: Event = {"type": "session.update", "session": policy.for_upstream(new)}
        if (eid := _event_id(event)) is not None:
            out["event_id"] = eid
        self.forward(out)

    def response_create(self, event: Event, sender: Sender) -> None:
        call = self.call
        try:
            locks.check_response_create(event, call.session, call.profile, call.tool_lookup,
                                        sender.trust)
        except policy.PolicyError as e:
            self._refuse(e, event, sender)
            return
        self.forward(event)

    def item_create(self, event: Event, sender: Sender) -> None:
        call = self.call
        item = event.get("item")
        try:
            locks.check_item(item, call.profile, sender.trust)
        except policy.PolicyError as e:
            self._refuse(e, event, sender)
            return
        if isinstance(item, dict) and item.get("type") == "function_call_output":
            for hook in call.hooks.function_output_guard:
                refusal = hook(item)
                if refusal is not None:
                    call.client_error("tool_output_refused", refusal, param="item.call_id",
                                      client_event_id=_event_id(event), to=sender.reply)
                    return
        self.forward(event)

    def append(self, event: Event, sender: Sender) -> None:
        eid = _event_id(event)
        audio = event.get("audio")
        dec = self._decoder
        try:
            if not isinstance(audio, str):
                raise ValueError
            data = base64.b64decode(audio, validate=True)
        except (binascii.Error, ValueError):
            self.call.client_error("invalid_audio", "input_audio_buffer.append needs 'audio' "
                                   f"as base64 {dec.format}.", param="audio",
                                   client_event_id=eid, to=sender.reply)
            return
        if not dec.bytes_ok(data):
            self.call.client_error("invalid_audio", "PCM16 audio must have an even number of "
                                   "bytes.", param="audio", client_event_id=eid,
                                   to=sender.reply)
            return
        if len(data) > MAX_APPEND_BYTES:
            self.call.client_error("audio_too_large", "One append may carry at most 15 MiB.",
                                   param="audio", client_event_id=eid, to=sender.reply)
            return
        pcm = dec.decode(data)
        self.intake.push(pcm, wire=None if dec.format == "audio/pcm" else data, event_id=eid)

    def commit(self, event: Event, sender: Sender) -> None:
        self.forward(event)  # flushes first: the whole turn is in the buffer it commits

    def clear(self, event: Event, sender: Sender) -> None:
        self.intake.discard()  # audio appended before a clear never reaches the upstream
        self.forward(event)

    def output_clear(self, event: Event, sender: Sender) -> None:
        rid = self.agent.interrupt(reason="client")
        self.call.send_to_client({"type": "output_audio_buffer.cleared",
                                  "event_id": new_id("event"), "response_id": rid})

