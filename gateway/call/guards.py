"""Watchdogs of a call: idle caller, dead microphone. Deadlines, not polling loops.

A :class:`Deadline` is one timer per period, re-armed lazily: activity only stores a
timestamp (cheap enough for every 20 ms frame) and the timer, when it fires early,
re-arms itself at ``last activity + period``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from gateway.audio.levels import DIGITAL_SILENCE_DBFS
from gateway.config import GuardConfig
from gateway.ids import new_id
from gateway.upstream.client import gateway_event_id

from .session import CallSession

IDLE_PROMPT = "Briefly ask whether the caller is still there."
IDLE_GOODBYE = "Say a short, friendly goodbye because the caller has gone quiet."
DEAD_MIC_PROMPT = "Briefly ask whether the caller can hear you, because you cannot hear them."


class Deadline:
    def __init__(self, period_s: float, on_expire: Callable[[], None]) -> None:
        self.period = period_s
        self._on_expire = on_expire
        self.last = time.monotonic()
        self._handle: asyncio.TimerHandle | None = None
        self.paused = False

    def start(self) -> None:
        self.last = time.monotonic()
        self.paused = False
        self._arm(self.last + self.period)

    def touch(self) -> None:
        self.last = time.monotonic()

    def pause(self) -> None:
        self.paused = True

    def resume(self) -> None:
        if self.paused or self._handle is None:
            self.start()

    def _arm(self, at_monotonic: float) -> None:
        if self._handle is not None:
            self._handle.cancel()
        loop = asyncio.get_running_loop()
        self._handle = loop.call_at(loop.time() + max(0.0, at_monotonic - time.monotonic()),
                                    self._fire)

    def _fire(self) -> None:
        self._handle = None
        if self.paused:
            return
        due = self.last + self.period
        if time.monotonic() >= due:
            self._on_expire()
        else:
            self._arm(due)

    def cancel(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None


class CallGuards:
    """Idle prompts and hang-up, dead-mic events, for one call."""

    def __init__(self, session: CallSession, cfg: GuardConfig, *,
                 ask_on_dead_mic: bool = True) -> None:
        self.session = session
        self.cfg = cfg
        self.ask_on_dead_mic = ask_on_dead_mic
        self.idle_prompted = False
        self.idle = Deadline(cfg.idle_prompt_s, self._idle_prompt)
        self.hangup = Deadline(cfg.idle_hangup_s, self._idle_hangup)
        self.dead_mic = Deadline(cfg.dead_mic_s, self._mic_silent)
        self.mic_silent = False
        self._ending = False
        self._last_frame = time.monotonic()
        h = session.hooks
        h.caller_audio.append(self._on_caller_audio)
        h.playout.append(self._on_playout)
        h.upstream_event.append(self._on_upstream)
        h.on_close.append(self._close)
        for d in (self.idle, self.hangup, self.dead_mic):
            d.start()

    # -- activity -------------------------------------------------------------------------

    def _on_caller_audio(self, pcm: bytes, rms_dbfs: float, offset_ms: float) -> None:
        self._last_frame = time.monotonic()
        if rms_dbfs > DIGITAL_SILENCE_DBFS:
            self.dead_mic.touch()
            if self.mic_silent:
                self.mic_silent = False
                self._client_event("gateway.microphone.active")

    def _on_playout(self, started: bool) -> None:
        # Idle time counts from the end of the agent's *played* audio.
        if started:
            self.idle.pause()
            self.hangup.pause()
        elif not self._ending:
            self.idle.start()
            if self.idle_prompted:
                self.hangup.resume()
            else:
                self.hangup.start()

    def _on_upstream(self, ev: dict[str, Any]) -> None:
        if ev.get("type") == "input_audio_buffer.speech_started":
            self.idle_prompted = False
            self.idle.pause()
            self.hangup.pause()
        elif ev.get("type") == "input_audio_buffer.speech_stopped" and not self._ending:
            self.idle.start()
            self.hangup.start()

    # -- actions ------------------------------------------------------------------------

    def _say(self, instructions: str, purpose: str) -> None:
        up = self.session.upstream
        if up is None or self.session.active_response is not None:
            return
        up.send({"type": "response.create", "event_id": gateway_event_id(), "response": {
            "instructions": instructions, "metadata": {"gateway": purpose}}})

    def _idle_prompt(self) -> None:
        if self.idle_prompted or self._ending:
            return
        self.idle_prompted = True
        self.session.metrics.idle_events.labels("prompt").inc()
        self.session.note("idle_prompt", text=IDLE_PROMPT)
        self._say(IDLE_PROMPT, "idle_prompt")

    def _idle_hangup(self) -> None:
        if self._ending:
            return
        self._ending = True
        self.session.metrics.idle_events.labels("hangup").inc()
        self.session.note("idle_hangup", text=IDLE_GOODBYE)
        self._say(IDLE_GOODBYE, "idle_goodbye")
        self.session.hooks.playout.append(self._end_after_goodbye)
        # If the goodbye never plays (upstream busy or silent), end anyway.
        asyncio.get_running_loop().call_later(8.0, self.session.request_close, "idle_timeout")

    def _end_after_goodbye(self, started: bool) -> None:
        if not started:
            self.session.request_close("idle_timeout")

    def _mic_silent(self) -> None:
        if self.mic_silent:
            return
        self.mic_silent = True
        # No frames at all (RTP stopped) or frames of digital silence (a muted mic).
        kind = "no_audio" if time.monotonic() - self._last_frame > 1.0 else "silence"
        self.session.metrics.dead_mic_events.labels(kind).inc()
        self.session.note("dead_mic", text=f"{kind}: no caller audio above "
                          f"{DIGITAL_SILENCE_DBFS:g} dBFS for {self.cfg.dead_mic_s:g} s")
        self._client_event("gateway.microphone.silent", reason=kind,
                           seconds=self.cfg.dead_mic_s)
        if self.ask_on_dead_mic:
            self._say(DEAD_MIC_PROMPT, "dead_mic")
        self.dead_mic.start()

    def _client_event(self, etype: str, **fields: Any) -> None:
        self.session.send_to_client({"type": etype, "event_id": new_id("event"), **fields})

    async def _close(self, reason: str) -> None:
        for d in (self.idle, self.hangup, self.dead_mic):
            d.cancel()
