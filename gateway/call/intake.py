"""Caller audio into the call: levels, the recording's clock, and upstream appends.

Every 20 ms frame of caller audio passes here once (the hot path in): metered, placed on
the call's timeline for the recorder and the supervisors' mix, and gathered into appends of
``upstream.append_ms`` (cost tracks message count, not bytes).

The gathering is faithful to a client that appends its own audio: an append that carries an
``event_id`` goes up at once, with what was gathered before it, under that id; a ``commit``
or any other event first flushes what is gathered (:meth:`CallerIntake.flush`), and a
``clear`` discards it (:meth:`CallerIntake.discard`), so no audio crosses a turn boundary and
the upstream sees the client's events in the client's order.
"""

from __future__ import annotations

import base64
import time

import numpy as np
import numpy.typing as npt

from gateway.audio.formats import WireFormat, bytes_per_ms
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
        #: The last frame's RMS (dBFS): observers (the console) sample it at their own rate
        #: instead of hooking every frame.
        self.last_rms_dbfs = -100.0

    def push(self, pcm: npt.NDArray[np.int16], wire: bytes | None = None,
             event_id: str | None = None) -> None:
        """Caller audio as PCM16 24 kHz (levels, recording); ``wire`` is the same audio in
        the upstream's format when the leg already has it (µ-law from a phone, G.711 from a
        WebSocket client), so it is passed through untouched. ``event_id``: the client's
        append, sent up at once under its own id."""
        call = self.call
        if call.closing:
            return
        t0 = time.perf_counter()
        level = measure(pcm)
        self.last_rms_dbfs = level.rms_dbfs
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
        if event_id is not None:
            self.flush(event_id)
        elif len(self._buf) >= self._append_bytes and call.upstream is not None:
            call.upstream.send_audio(base64.b64encode(self._buf).decode())
            self._buf.clear()
        m.frame.observe(time.perf_counter() - t0)

    def flush(self, event_id: str | None = None) -> None:
        """Send what is gathered now (before a commit, or any event that must follow it)."""
        up = self.call.upstream
        if not self._buf or up is None:
            return
        audio = base64.b64encode(self._buf).decode()
        self._buf.clear()
        if event_id is None:
            up.send_audio(audio)
        else:  # the client's own append: kept whole, under its id, never dropped
            up.send({"type": "input_audio_buffer.append", "event_id": event_id,
                     "audio": audio})

    def discard(self) -> None:
        """Forget what is gathered (the client cleared its input buffer)."""
        self._buf.clear()

    def set_wire_format(self, fmt: WireFormat) -> None:
        """The upstream's input format changed (a WebSocket client chose G.711 or PCM)."""
        self.flush()
        self._append_bytes = self.call.config.upstream.append_ms * bytes_per_ms(fmt)
