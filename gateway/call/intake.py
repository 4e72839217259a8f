"""Caller audio into the call: levels, the recording's clock, and upstream appends.

Every 20 ms frame of caller audio passes here once (the hot path in): metered, placed on
the call's timeline for the recorder and the supervisors' mix, and gathered into appends of
``upstream.append_ms`` (cost tracks message count, not bytes).
"""

from __future__ import annotations

import base64
import time

import numpy as np
import numpy.typing as npt

from gateway.audio.formats import bytes_per_ms
from gateway.audio.levels import measure

from .state import CallPort, DirectionMetrics


class CallerIntake:
    def __init__(self, call: CallPort) -> None:
        self.call = call
        self._m = DirectionMetrics(call.metrics, "in")
        self._buf = bytearray()
        self._append_bytes = call.config.upstream.append_ms * bytes_per_ms(call.wire_format)
        #: Where the next caller frame goes on the call's timeline (ms); None: re-anchor.
        self.cursor_ms: float | None = None

    def push(self, pcm: npt.NDArray[np.int16], wire: bytes | None = None) -> None:
        """Caller audio as PCM16 24 kHz (levels, recording); ``wire`` is the same audio in
        the upstream's format when the leg already has it (µ-law from a phone), so it is
        passed through untouched."""
        call = self.call
        if call.closing:
            return
        t0 = time.perf_counter()
        level = measure(pcm)
        m = self._m
        m.level.observe(level.rms_dbfs)
        m.peak.observe(level.peak_dbfs)
        if level.clipped:
            m.clipped.inc(level.clipped)
        data = pcm.tobytes()
        frame_ms = len(pcm) / 24
        m.seconds.inc(frame_ms / 1000)  # cost accrues as it happens, not at hang-up
        call.stats.caller_audio_ms += frame_ms
        # Caller audio is placed by a running cursor (no per-frame jitter), re-anchored to
        # the wall clock when it falls over 100 ms behind (a gap in the media, a reconnect)
        # or gets ahead of it at all (audio cannot have been spoken in the future).
        now_ms = call.call_ms()
        cur = self.cursor_ms
        target = now_ms - frame_ms
        if cur is None or target - cur > 100 or cur - target > 20:
            cur = max(0.0, target)
        self.cursor_ms = cur + frame_ms
        for obs in call.hooks.caller_audio:
            obs(data, level.rms_dbfs, cur)
        self._buf += wire if wire is not None else data
        if len(self._buf) >= self._append_bytes and call.upstream is not None:
            call.upstream.send_audio(base64.b64encode(self._buf).decode())
            self._buf.clear()
        m.frame.observe(time.perf_counter() - t0)
