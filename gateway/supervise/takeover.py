"""A human supervisor takes a call over from the agent, then hands it back.

While taken over:

- the supervisor's microphone (20 ms PCM16 24 kHz frames; G.711 when the call passes a phone's
  audio through to the upstream) is played to the caller through the call's own leg
  (``leg.play_audio(pcm, "supervisor", "supervisor")``), so the recording and the listeners
  get it as "what the caller heard";
- the agent is silent: its response is cut (``session.interrupt``) and cancelled, and the
  upstream is told not to answer: ``session.update`` with the session's turn detection and
  ``create_response``/``interrupt_response`` false. Caller audio is still appended (recorded,
  and committed and transcribed by the upstream's VAD, so the caller's words are in the
  conversation). Held back from the session meanwhile (``SessionHooks.upstream_gate``): agent
  audio, its ``output_audio.done``, transcripts of responses started during the takeover (the
  caller never heard them), and the upstream's VAD events (passed on to the client and the
  observers, but not acted on: no barge-in cutting the supervisor). A response the upstream
  starts anyway (a tool round, an idle prompt, a race) is cancelled at once. A client's
  ``response.create`` and ``output_audio_buffer.clear`` are dropped.

On hand back: the supervisor's turns become assistant text items (``[supervisor spoke for
N s]``: the gateway does not transcribe the supervisor), inserted where they happened among the
conversation's items (``previous_item_id``), then a system message saying a human had the call,
then the session as it was (turn detection restored).
"""

from __future__ import annotations

import base64
import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from gateway.audio.g711 import alaw_encode, ulaw_encode
from gateway.audio.levels import measure
from gateway.audio.resample import down_24k_to_8k
from gateway.call import policy
from gateway.call.session import CallSession, Event
from gateway.ids import new_id
from gateway.upstream.client import gateway_event_id

log = logging.getLogger("gateway.supervise")

SUPERVISOR = "supervisor"
#: Supervisor audio is dropped while the caller's leg has more than this queued (a supervisor
#: whose clock runs fast, or a burst after a stall, must not build up delay).
MAX_QUEUED_MS = 100.0
#: Supervisor speech detection for the hand-back summary: a frame above this level is speech;
#: a turn ends after this much quiet.
VOICE_DBFS = -45.0
TURN_GAP_MS = 800.0

_AUDIO_EVENTS = frozenset({"response.output_audio.delta", "response.output_audio.done"})
_TRANSCRIPT_EVENTS = frozenset({"response.output_audio_transcript.delta",
                                "response.output_audio_transcript.done"})
_VAD_EVENTS = frozenset({"input_audio_buffer.speech_started",
                         "input_audio_buffer.speech_stopped"})
_BLOCKED_CLIENT_EVENTS = frozenset({"response.create", "output_audio_buffer.clear"})


def _gw_event() -> str:
    return gateway_event_id()


@dataclass
class Turn:
    start_ms: float
    end_ms: float
    #: The last conversation item added before the turn began (None: none during takeover).
    after_item: str | None


class Takeover:
    def __init__(self, call: CallSession, listener_id: str, who: str) -> None:
        self.call = call
        self.listener_id = listener_id
        self.who = who
        self.started_ms = call.call_ms()
        self.turns: list[Turn] = []
        self._open: Turn | None = None
        self._last_voiced_ms = 0.0
        self._last_item: str | None = None
        self._first_item_seen = False
        self._first_item_prev: str | None = None
        self._blocked: set[str] = set()
        self.frames_played = 0
        self.frames_dropped = 0
        self.cancelled_responses = 0
        self.active = False
        # A leg plays audio in the upstream's wire format: G.711 for a phone passed through.
        self._to_wire = None if call.wire_format == "audio/pcm" else down_24k_to_8k()
        self._g711 = alaw_encode if call.wire_format == "audio/pcma" else ulaw_encode

    # -- switching ------------------------------------------------------------------------

    def start(self) -> None:
        call = self.call
        self.active = True
        h = call.hooks
        h.upstream_gate.append(self._gate)
        h.upstream_event.append(self._on_upstream)
        h.from_client.append(self._from_client)
        rid = call.interrupt(reason="takeover")
        call.send_to_client({"type": "output_audio_buffer.cleared", "event_id": new_id("event"),
                             "response_id": rid})
        self._pause()
        call.note("takeover", text="a supervisor took the call over", listener_id=self.listener_id,
                  by=self.who)

    def detach(self) -> None:
        """Unhook from the session (the call is ending: nothing to hand back)."""
        self.active = False
        h = self.call.hooks
        if self._gate in h.upstream_gate:
            h.upstream_gate.remove(self._gate)
        if self._on_upstream in h.upstream_event:
            h.upstream_event.remove(self._on_upstream)
        if self._from_client in h.from_client:
            h.from_client.remove(self._from_client)

    def end(self, reason: str) -> dict[str, Any]:
        """Hand the call back to the agent; returns a summary."""
        call = self.call
        self.detach()
        if self._open is not None:
            self.turns.append(self._open)
            self._open = None
        ended_ms = call.call_ms()
        items = self._handback_events(ended_ms)
        up = call.upstream
        if up is not None and not call.closed.is_set():
            for ev in items:
                up.send(ev)
            resume = self._session_update(paused=False)
            if resume is not None:
                up.send(resume)
        summary = {"reason": reason, "duration_s": round((ended_ms - self.started_ms) / 1000, 3),
                   "supervisor_turns": len(self.turns), "items_added": len(items),
                   "cancelled_responses": self.cancelled_responses}
        call.note("handback", text="the supervisor handed the call back to the agent",
                  listener_id=self.listener_id, **summary)
        return summary

    # -- the supervisor's microphone ------------------------------------------------------

    def feed(self, pcm: npt.NDArray[np.int16]) -> None:
        """One frame of the supervisor's microphone, PCM16 24 kHz mono."""
        if not self.active:
            return
        call = self.call
        now_ms = call.call_ms()
        if measure(pcm).rms_dbfs > VOICE_DBFS:
            if self._open is None:
                self._open = Turn(now_ms, now_ms, self._last_item)
            self._open.end_ms = now_ms + len(pcm) / 24
            self._last_voiced_ms = now_ms
        elif self._open is not None and now_ms - self._last_voiced_ms > TURN_GAP_MS:
            self.turns.append(self._open)
            self._open = None
        leg = call.leg
        if leg is None:
            return
        queued = getattr(getattr(leg, "playout", None), "queued_ms", 0.0)
        if queued > MAX_QUEUED_MS:
            self.frames_dropped += 1
            return
        data = pcm.tobytes() if self._to_wire is None else self._g711(self._to_wire.process(pcm))
        leg.play_audio(data, SUPERVISOR, SUPERVISOR)
        self.frames_played += 1
        if leg.forwards_audio_events:  # a WebSocket client plays what it receives as events
            call.send_to_client({"type": "response.output_audio.delta",
                                 "event_id": new_id("event"), "response_id": SUPERVISOR,
                                 "item_id": SUPERVISOR, "output_index": 0, "content_index": 0,
                                 "delta": base64.b64encode(data).decode()})

    # -- hooks ----------------------------------------------------------------------------

    def _gate(self, event: Event) -> bool:
        etype = event.get("type")
        if etype in _AUDIO_EVENTS:
            return False
        if etype in _TRANSCRIPT_EVENTS:
            return str(event.get("response_id", "")) not in self._blocked
        if etype in _VAD_EVENTS:
            # Seen by the client and the observers (guards), but no barge-in: the caller may
            # talk over the supervisor, as people do.
            for obs in list(self.call.hooks.upstream_event):
                obs(event)
            self.call.send_to_client(event)
            return False
        return True

    def _on_upstream(self, event: Event) -> None:
        etype = event.get("type")
        if etype == "conversation.item.added":
            item = event.get("item") or {}
            iid = item.get("id") if isinstance(item, dict) else None
            if isinstance(iid, str):
                if not self._first_item_seen:
                    self._first_item_seen = True
                    # GA names the item before it (null: it is the first of the conversation).
                    if "previous_item_id" in event:
                        prev = event["previous_item_id"]
                        self._first_item_prev = prev if isinstance(prev, str) else "root"
                self._last_item = iid
        elif etype == "response.created":
            rid = str((event.get("response") or {}).get("id") or "")
            self._blocked.add(rid)
            self.cancelled_responses += 1
            if self.call.upstream is not None:
                self.call.upstream.send({"type": "response.cancel", "event_id": _gw_event(),
                                         "response_id": rid})
        elif etype == "session.updated":
            # A client's session.update (or a reconnect) re-enabled responses: pause again.
            td = ((event.get("session") or {}).get("audio") or {}).get("input", {}) \
                .get("turn_detection")
            if isinstance(td, dict) and (td.get("create_response") is not False
                                         or td.get("interrupt_response") is not False):
                self._pause()

    def _from_client(self, event: Event) -> list[Event]:
        if event.get("type") in _BLOCKED_CLIENT_EVENTS:
            log.debug("takeover: dropped a client %s", event.get("type"))
            return []
        return [event]

    # -- upstream session -----------------------------------------------------------------

    def _session_update(self, *, paused: bool) -> Event | None:
        session = self.call.session
        td = ((session.get("audio") or {}).get("input") or {}).get("turn_detection")
        if not isinstance(td, dict):
            return None  # no VAD: the upstream only answers a response.create (blocked)
        out = policy.for_upstream(session)
        if paused:
            out["audio"]["input"]["turn_detection"] = dict(
                td, create_response=False, interrupt_response=False)
        return {"type": "session.update", "event_id": _gw_event(), "session": out}

    def _pause(self) -> None:
        ev = self._session_update(paused=True)
        if ev is not None and self.call.upstream is not None:
            self.call.upstream.send(ev)

    def _handback_events(self, ended_ms: float) -> list[Event]:
        out: list[Event] = []
        chain: dict[str | None, str] = {}
        for turn in self.turns:
            anchor = turn.after_item
            # Before any item of the takeover: right where the first of them went (when the
            # upstream said where; otherwise at the end, after the caller's items).
            prev = self._first_item_prev if anchor is None else anchor
            prev = chain.get(anchor, prev)
            iid = new_id("gw_sup", 8)
            secs = max(0.02, (turn.end_ms - turn.start_ms) / 1000)
            ev: Event = {"type": "conversation.item.create", "event_id": _gw_event(), "item": {
                "id": iid, "type": "message", "role": "assistant",
                "content": [{"type": "output_text",
                             "text": f"[supervisor spoke for {secs:.1f} s; not transcribed]"}]}}
            if prev is not None:
                ev["previous_item_id"] = prev
            chain[anchor] = iid
            out.append(ev)
        start_s, end_s = self.started_ms / 1000, ended_ms / 1000
        note = (f"A human supervisor had this call from {start_s:.0f} s to {end_s:.0f} s into "
                "it. Assistant messages marked [supervisor ...] were spoken by that person, not "
                "by you; the caller's words in that time are in the conversation as usual. The "
                "supervisor has handed the call back to you: continue from here.")
        out.append({"type": "conversation.item.create", "event_id": _gw_event(), "item": {
            "type": "message", "role": "system",
            "content": [{"type": "input_text", "text": note}]}})
        return out

    def stats(self) -> dict[str, Any]:
        return {"listener_id": self.listener_id, "since_ms": round(self.started_ms),
                "frames_played": self.frames_played, "frames_dropped": self.frames_dropped,
                "supervisor_turns": len(self.turns) + (self._open is not None),
                "cancelled_responses": self.cancelled_responses}


__all__ = ["SUPERVISOR", "Takeover", "Turn"]
