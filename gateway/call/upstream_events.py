"""What the upstream's events do to the call: one handler per event type the gateway acts on.

Everything else is forwarded to the client as it is. Audio deltas go to the leg (RTP carries
audio to WebRTC and phone callers), responses and speech edges keep the call's state for
barge-in and turn latency, transcripts feed the recorder.
"""

from __future__ import annotations

import base64
import binascii
import logging
import time
from collections.abc import Callable

from gateway.audio.formats import bytes_per_ms
from gateway.ids import new_id
from gateway.obs.metrics import bounded
from gateway.upstream.client import GATEWAY_EVENT_PREFIX

from .agent_audio import AgentAudio
from .state import CallPort, Event

log = logging.getLogger("gateway.session")


class UpstreamEvents:
    """The handlers of one call's upstream events, keyed by event type."""

    def __init__(self, call: CallPort, agent: AgentAudio) -> None:
        self.call = call
        self.agent = agent
        self._response_created_at: dict[str, float] = {}
        self.table: dict[str, Callable[[Event], None]] = {
            "session.created": self.drop,
            "session.updated": self.session_updated,
            "response.created": self.response_created,
            "response.done": self.response_done,
            "response.output_audio.delta": self.audio_delta,
            "response.output_audio.done": self.audio_done,
            "response.output_audio_transcript.delta": self.transcript_delta,
            "response.output_audio_transcript.done": self.transcript_done,
            "input_audio_buffer.speech_started": self.speech_started,
            "input_audio_buffer.speech_stopped": self.speech_stopped,
            "conversation.item.input_audio_transcription.completed": self.caller_text,
            "error": self.error,
        }

    def drop(self, event: Event) -> None:
        return

    def session_updated(self, event: Event) -> None:
        event = dict(event)
        event["session"] = self.call.client_session(event.get("session"))
        self.call.forward(event)

    def response_created(self, event: Event) -> None:
        rid = str((event.get("response") or {}).get("id") or "")
        self.call.active_response = rid
        self._response_created_at[rid] = time.monotonic()
        self.call.forward(event)

    def response_done(self, event: Event) -> None:
        resp = event.get("response") or {}
        rid = str(resp.get("id") or "")
        if self.call.active_response == rid:
            self.call.active_response = None
        self._response_created_at.pop(rid, None)
        self.call.forward(event)

    def audio_delta(self, event: Event) -> None:
        call = self.call
        try:
            pcm = base64.b64decode(event.get("delta", ""), validate=True)
        except (binascii.Error, ValueError):
            call.metrics.upstream_errors.labels("bad_audio_delta").inc()
            return
        item_id = str(event.get("item_id", ""))
        rid = str(event.get("response_id", ""))
        st = self.agent.item(item_id, rid)
        if st.received_ms == 0:  # the item's first audio
            created = self._response_created_at.get(rid)
            if created is not None:
                call.metrics.upstream_ttfa.observe(time.monotonic() - created)
        st.received_ms += len(pcm) / bytes_per_ms(call.wire_format)
        if st.truncated_ms is not None:
            return  # cut by a barge-in: what the upstream still sends must not be played
        if call.leg is not None:
            call.leg.play_audio(pcm, item_id, rid)
            if call.leg.forwards_audio_events:
                call.forward(event)

    def audio_done(self, event: Event) -> None:
        if self.call.leg is not None:
            self.call.leg.end_audio(str(event.get("item_id", "")))
        self.call.forward(event)

    def transcript_delta(self, event: Event) -> None:
        # The transcript may run ahead of the audio: the item's state starts with either.
        st = self.agent.item(str(event.get("item_id", "")),
                                  str(event.get("response_id", "")))
        st.transcript += str(event.get("delta", ""))
        self.call.forward(event)

    def transcript_done(self, event: Event) -> None:
        item_id = str(event.get("item_id", ""))
        st = self.agent.item(item_id, str(event.get("response_id", "")))
        st.transcript = str(event.get("transcript", st.transcript))
        for obs in self.call.hooks.agent_text:
            obs(item_id, st)
        self.call.forward(event)

    def speech_started(self, event: Event) -> None:
        call = self.call
        if call.leg is not None and call.leg.audio_active:
            rid = self.agent.interrupt(reason="barge_in")
            call.send_to_client({"type": "output_audio_buffer.cleared",
                                 "event_id": new_id("event"), "response_id": rid})
        self.agent.speech_stopped_at = None
        call.forward(event)

    def speech_stopped(self, event: Event) -> None:
        self.agent.speech_stopped_at = time.monotonic()
        self.agent.first_frame_pending = True
        self.call.forward(event)

    def caller_text(self, event: Event) -> None:
        for obs in self.call.hooks.caller_text:
            obs(str(event.get("item_id", "")), str(event.get("transcript", "")))
        self.call.forward(event)

    def error(self, event: Event) -> None:
        call = self.call
        err = event.get("error") or {}
        code = str(err.get("code") or err.get("type") or "unknown")
        call.metrics.upstream_errors.labels(bounded(code)).inc()
        ref = err.get("event_id")
        if isinstance(ref, str) and ref.startswith(GATEWAY_EVENT_PREFIX):
            for obs in call.hooks.upstream_event:
                obs(event)
            # An error about an event the gateway itself sent (a cancel racing the
            # upstream's own, a truncate past the end): the client never sent it.
            log.debug("upstream refused a gateway event: %s", code)
            return
        call.forward(event)
