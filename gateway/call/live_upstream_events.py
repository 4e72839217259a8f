"""What a GPT-Live upstream's events do to the call (the Live counterpart of
:mod:`gateway.call.upstream_events`), and what a Live client may receive.

Live has no responses or items: agent speech is one stream on the session timeline. The room
cuts it into *utterances* (ids ``lv_ut_…``) so the core's per-item machinery (playout, what
was heard, the recorder's agent lines) works unchanged: an utterance opens with the first
output transcript or audio after the caller's turn, a barge-in or a timeline gap, and closes
when its playout ends, the caller's turn arrives, or the call ends. Caller lines are built
from ``session.input_transcript.delta`` fragments and end when the agent answers or after a
pause on the timeline.

Barge-in: Live sends no speech edges and its model yields by itself, but audio already
buffered for playout would keep playing. Where the gateway owns playout (WebRTC, phones) it
detects the caller talking over the agent from the levels it measures anyway and stops its
playout (:meth:`AgentAudio.interrupt`: no cancel or truncate goes up, see
:mod:`gateway.call.live_ops`); what the caller heard is accounted as for Realtime. Agent
audio is then held back until the caller's turn is transcribed or speech starting after the
cut on the timeline arrives.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import time
from collections.abc import Callable

from gateway.audio.formats import bytes_per_ms
from gateway.ids import new_id
from gateway.obs.metrics import bounded
from gateway.upstream.client import GATEWAY_EVENT_PREFIX, UpstreamClosed, UpstreamConnection
from gateway.upstream.live_client import LiveUpstreamConnection

from . import live_policy
from .agent_audio import AgentAudio
from .state import CallPort, Event, ItemState

#: Caller audio above this level for BARGE_IN_MS while the agent plays is a barge-in.
BARGE_IN_DBFS = -40.0
BARGE_IN_MS = 200.0
#: A pause this long on the session timeline between fragments starts a new line.
LINE_GAP_MS = 1500
#: Playout running dry for less than this is an underrun (late audio), not the utterance's
#: end: closing it there would start a new playout item and forfeit the playout's catch-up
#: of the silence played meanwhile, so every underrun would add to the delay for good.
UNDERRUN_GRACE_S = 0.3
#: Live's close reasons after which a new upstream session may carry the call on.
_RECOVERABLE = frozenset({"expired", "connection_lost"})
#: How a call's end reason reads in the ``session.closed`` a Live client gets.
CLOSE_REASONS: dict[str, str] = {
    "client_closed": "close_requested", "max_duration": "expired",
    "upstream_closed": "connection_lost", "server_shutdown": "connection_lost",
    "client_lost": "connection_lost",
}


class LiveUpstreamEvents:
    def __init__(self, call: CallPort, agent: AgentAudio, call_id: str) -> None:
        self.call = call
        self.agent = agent
        self.call_id = call_id
        #: The session resource the upstream last reported (for the client's view).
        self.resource: Event = {}
        self.close_requested = False
        self.closed_sent = False
        self.utterance: str | None = None
        self._last_out_end = -1
        self.held = False
        self._cut_at_ms = 0.0
        self._loud_ms = 0.0
        self._caller: list[str] = []
        self._caller_end = -1
        #: The call's caller audio (ms) when the current upstream session started: a new
        #: session's timeline restarts at 0, the call's does not.
        self._base_ms = 0.0
        #: A new upstream session took over: its first speech starts a new utterance.
        self._fresh = False
        self._drained: asyncio.TimerHandle | None = None
        self.table: dict[str, Callable[[Event], None]] = {
            "session.started": self.drop,
            "session.updated": self.session_updated,
            "session.closed": self.session_closed,
            "session.output_audio.delta": self.audio_delta,
            "session.output_transcript.delta": self.agent_delta,
            "session.input_transcript.delta": self.caller_delta,
            "session.delegation.created": self.delegation,
            "error": self.error,
            "session.instructions.appended": self.acknowledged,
            "session.thinking.appended": self.acknowledged,
            "session.commentary.appended": self.acknowledged,
            "session.input_audio.muted": self.acknowledged,
            "session.input_audio.unmuted": self.acknowledged,
        }
        h = call.hooks
        h.to_client.insert(0, self.to_live)
        if call.profile.turn_detection != "none":  # "none": the gateway never cuts playout
            h.caller_audio.append(self._caller_audio)
        h.playout.append(self._playout)
        h.interrupted.append(self._interrupted)
        h.ending.append(self._ending)
        h.upstream_swapped.append(self._swapped)

    # -- what a Live client receives -----------------------------------------------------

    def to_live(self, event: Event) -> list[Event]:
        """Only Live server events reach a Live client; the core's Realtime-shaped errors
        are re-shaped (``client_event_id`` at both levels)."""
        etype = event.get("type")
        if etype == "error" and "event_id" in (err := event.get("error") or {}):
            ref = err.get("event_id")
            shaped = {k: v for k, v in err.items() if k != "event_id"}
            event = {"type": "error", "event_id": event.get("event_id") or new_id("event"),
                     "error": shaped}
            if isinstance(ref, str):
                shaped["client_event_id"] = ref
                event["client_event_id"] = ref
        return [event] if etype in live_policy.SERVER_EVENT_TYPES else []

    def client_session(self) -> Event:
        call = self.call
        return live_policy.for_client(self.resource, call.session, self.call_id, call.profile,
                                      webrtc=call.transport == "webrtc")

    def started_event(self, client_event_id: str | None = None) -> Event:
        event: Event = {"type": "session.started", "event_id": new_id("event"),
                        "session": self.client_session()}
        if client_event_id is not None:
            event["client_event_id"] = client_event_id
        return event

    def closed_event(self, reason: str) -> Event:
        return {"type": "session.closed", "event_id": new_id("event"),
                "reason": CLOSE_REASONS.get(reason, "remote_hangup"),
                "session": self.client_session(),
                "usage": {"seconds": round(self.call.call_ms() / 1000, 3)}}

    def farewell(self, reason: str) -> None:
        """The call ends without the client asking: it still hears ``session.closed``."""
        if not self.closed_sent and self.call.leg is not None:
            self.closed_sent = True
            # Straight to the leg: the call is already closing (send_to_client is shut).
            self.call.leg.send_event(self.closed_event(reason))

    # -- session ---------------------------------------------------------------------------

    def drop(self, event: Event) -> None:
        return

    def session_updated(self, event: Event) -> None:
        self.resource = dict(event.get("session") or {})
        self.call.forward(dict(event, session=self.client_session()))

    def session_closed(self, event: Event) -> None:
        reason = str(event.get("reason") or "")
        if not self.close_requested and reason in _RECOVERABLE:
            # The upstream session ended under the call: continuity may carry it on.
            raise UpstreamClosed(reason, f"the Live upstream session closed ({reason})")
        self.resource = dict(event.get("session") or self.resource)
        self.closed_sent = True
        self.call.forward(dict(event, session=self.client_session()))
        self.call.request_close("client_closed" if self.close_requested else "upstream_closed")

    def error(self, event: Event) -> None:
        ref = event.get("client_event_id") or (event.get("error") or {}).get("client_event_id")
        if isinstance(ref, str) and ref.startswith(GATEWAY_EVENT_PREFIX):
            return  # about an event the gateway sent (a prompt, a reseed): not the client's
        code = str((event.get("error") or {}).get("code") or "unknown")
        self.call.metrics.upstream_errors.labels(bounded(code)).inc()
        self.call.forward(event)

    def acknowledged(self, event: Event) -> None:
        ref = event.get("client_event_id")
        if isinstance(ref, str) and ref.startswith(GATEWAY_EVENT_PREFIX):
            return  # the gateway's own append (a prompt, a reseed)
        self.call.forward(event)

    def delegation(self, event: Event) -> None:
        deleg = event.get("delegation") or {}
        self.call.note("tool_call", tool="delegation", delegation_id=deleg.get("id"),
                       target=deleg.get("target"))
        self.call.forward(event)

    # -- agent speech ------------------------------------------------------------------------

    def _open(self) -> str:
        self.utterance = new_id("lv_ut", 10)
        return self.utterance

    def close_utterance(self) -> None:
        """The current utterance is complete: its text goes to the observers (recorder,
        continuity) with what is known of how much was heard."""
        self._cancel_drained()
        ut, self.utterance = self.utterance, None
        if ut is None:
            return
        leg = self.call.leg
        if leg is not None and not self.held:  # its last partial frame plays; none is kept
            leg.end_audio(ut)
        st = self.agent.items.pop(ut, None)
        if st is not None and st.transcript:
            for obs in self.call.hooks.agent_text:
                obs(ut, st)

    def _speaking(self) -> str:
        """The utterance agent output belongs to (a new session's speech: a new one)."""
        if self._fresh:
            self._fresh = False
            self.close_utterance()
        return self.utterance or self._open()

    def audio_delta(self, event: Event) -> None:
        call = self.call
        if self.held:
            return  # cut by a barge-in; the model is yielding
        try:
            pcm = base64.b64decode(event.get("delta", ""), validate=True)
        except (binascii.Error, ValueError):
            call.metrics.upstream_errors.labels("bad_audio_delta").inc()
            return
        self._cancel_drained()  # more audio: the playout ran dry only for a moment
        ut = self._speaking()
        st = self.agent.item(ut, ut)
        st.received_ms += len(pcm) / bytes_per_ms(call.wire_format)
        if call.leg is not None:
            call.leg.play_audio(pcm, ut, ut)
            if call.leg.forwards_audio_events:
                call.forward(event)

    def agent_delta(self, event: Event) -> None:
        start = event.get("start_ms")
        start_ms = start if isinstance(start, int) else 0
        if self.held:
            if start_ms < self._cut_at_ms:
                return  # the rest of what was cut: never heard, never shown
            self.held = False
        self._flush_caller()
        if self.utterance is not None and self._last_out_end >= 0 and \
                start_ms > self._last_out_end + LINE_GAP_MS:
            self.close_utterance()
        end = event.get("end_ms")
        self._last_out_end = end if isinstance(end, int) else start_ms
        ut = self._speaking()
        self.agent.item(ut, ut).transcript += str(event.get("delta", ""))
        self.call.forward(event)

    # -- caller speech ---------------------------------------------------------------------

    def caller_delta(self, event: Event) -> None:
        start, end = event.get("start_ms"), event.get("end_ms")
        if self._caller and isinstance(start, int) and start > self._caller_end + LINE_GAP_MS:
            self._flush_caller()
        self.close_utterance()  # the caller's turn: the agent's line before it is complete
        self.held = False
        self._caller.append(str(event.get("delta", "")))
        self._caller_end = end if isinstance(end, int) else self._caller_end
        # Live reports no end of speech: the caller's transcript is the turn's edge.
        self.agent.speech_stopped_at = time.monotonic()
        self.agent.first_frame_pending = True
        self.call.forward(event)

    def _flush_caller(self) -> None:
        text = "".join(self._caller).strip()
        self._caller.clear()
        if text:
            for obs in self.call.hooks.caller_text:
                obs(new_id("lv_in", 10), text)

    def _ending(self, reason: str) -> None:
        # The lines still open are written; the client hears why the session closed.
        self._flush_caller()
        self.close_utterance()
        self.farewell(reason)

    # -- barge-in ----------------------------------------------------------------------------

    def _caller_audio(self, pcm: bytes, rms_dbfs: float, offset_ms: float) -> None:
        leg = self.call.leg
        if leg is None or not leg.audio_active or rms_dbfs < BARGE_IN_DBFS:
            self._loud_ms = 0.0
            return
        self._loud_ms += len(pcm) / 48
        if self._loud_ms >= BARGE_IN_MS:
            self._loud_ms = 0.0
            self.agent.interrupt(reason="barge_in")

    def _interrupted(self, item_id: str, heard_ms: int, st: ItemState | None) -> None:
        self.held = True
        self._cut_at_ms = self.call.stats.caller_audio_ms - self._base_ms  # session time
        if item_id == self.utterance:
            self.close_utterance()

    def _swapped(self, conn: UpstreamConnection) -> None:
        """A new Live session carries the call on (continuity). Its timeline starts at 0 and
        it will not finish the old session's speech: what was cut stays cut, a caller line
        in progress is complete, and the utterance still playing keeps its accounting until
        the new session speaks."""
        self._flush_caller()
        self.held = False
        self._loud_ms = 0.0
        self._last_out_end = -1
        self._caller_end = -1
        self._base_ms = self.call.stats.caller_audio_ms
        self._fresh = True
        if isinstance(conn, LiveUpstreamConnection) and conn.session:
            self.resource = dict(conn.session)

    def _playout(self, started: bool) -> None:
        if started:
            self._cancel_drained()
        elif not self.held and self.utterance is not None and self._drained is None:
            self._drained = asyncio.get_running_loop().call_later(UNDERRUN_GRACE_S,
                                                                  self._drained_close)

    def _drained_close(self) -> None:
        self._drained = None
        self.close_utterance()

    def _cancel_drained(self) -> None:
        if self._drained is not None:
            self._drained.cancel()
            self._drained = None
