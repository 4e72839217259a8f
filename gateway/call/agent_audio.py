"""Agent audio out of the call: what the caller heard, turn latency, and barge-in.

The leg reports every 20 ms slot it played (:meth:`AgentAudio.on_frame`, the hot path out)
with its offset; that is the call's record of what the caller heard, which the recorder,
the turn-latency metric and truncation all use. :meth:`AgentAudio.interrupt` stops the agent
and makes the upstream forget what was not heard.
"""

from __future__ import annotations

import time

from gateway.audio.levels import measure_bytes
from gateway.ids import new_id
from gateway.legs.playout import QueuedFrame
from gateway.upstream.client import gateway_event_id

from .state import CallPort, DirectionMetrics, ItemState


class AgentAudio:
    def __init__(self, call: CallPort) -> None:
        self.call = call
        self._m = DirectionMetrics(call.metrics, "out")
        #: Assistant items being spoken, by item id.
        self.items: dict[str, ItemState] = {}
        self.speech_stopped_at: float | None = None
        self.first_frame_pending = False
        self.bargein_at: float | None = None
        #: Call time of the current leg's offset 0 (a resumed leg starts again at 0).
        self.base_ms: float | None = None

    def item(self, item_id: str, response_id: str) -> ItemState:
        return self.items.setdefault(item_id, ItemState(response_id))

    def on_frame(self, frame: QueuedFrame | None, offset_ms: float) -> None:
        call = self.call
        if self.base_ms is None:
            self.base_ms = call.call_ms() - offset_ms
        offset_ms += self.base_ms
        if frame is None:
            self._m.silent_frames.inc()
            if self.bargein_at is not None:
                call.metrics.barge_in_cutoff.observe(time.perf_counter() - self.bargein_at)
                self.bargein_at = None
            for obs in call.hooks.agent_audio:
                obs(None, offset_ms)
            return
        call.stats.agent_audio_ms += frame.audio_ms
        m = self._m
        m.speech_frames.inc()
        m.seconds.inc(frame.audio_ms / 1000)
        level = measure_bytes(frame.pcm)
        m.level.observe(level.rms_dbfs)
        m.peak.observe(level.peak_dbfs)
        if level.clipped:
            m.clipped.inc(level.clipped)
        if self.first_frame_pending and self.speech_stopped_at is not None:
            self.first_frame_pending = False
            call.metrics.turn_latency.labels(call.transport).observe(
                time.monotonic() - self.speech_stopped_at)
        for obs in call.hooks.agent_audio:
            obs(frame, offset_ms)

    def on_playout(self, started: bool, response_id: str) -> None:
        etype = "output_audio_buffer.started" if started else "output_audio_buffer.stopped"
        self.call.send_to_client({"type": etype, "event_id": new_id("event"),
                                  "response_id": response_id})
        for obs in self.call.hooks.playout:
            obs(started)

    def interrupt(self, *, reason: str) -> str:
        """Stop agent audio now and make the upstream remember only what was heard.

        Returns the id of the response whose audio was cut ("" when none)."""
        call = self.call
        if call.leg is None or call.upstream is None:
            return ""
        self.bargein_at = time.perf_counter()
        item, played_ms = call.leg.interrupt()
        rid = call.active_response or ""
        if call.active_response:
            call.upstream.send({"type": "response.cancel", "event_id": gateway_event_id()})
        if item:
            st = self.items.get(item)
            rid = st.response_id if st is not None else rid
            heard = int(min(played_ms, st.received_ms if st else played_ms))
            if st is not None:
                st.truncated_ms = heard
            call.upstream.send({"type": "conversation.item.truncate",
                                "event_id": gateway_event_id(),
                                "item_id": item, "content_index": 0, "audio_end_ms": heard})
            for obs in call.hooks.interrupted:
                obs(item, heard, st)
        call.stats.interruptions += 1
        call.metrics.interruptions.labels(call.transport).inc()
        return rid
