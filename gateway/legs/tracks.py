"""The outbound audio track: exact 20 ms frames paced to the wall clock.

aiortc's sender calls ``recv()`` in a loop with no pacing of its own, so ``recv()``
sleeps until each frame is due. Frames carry ``pts``/``time_base`` (``pts=None`` stops
the sender silently) and are exactly 20 ms (other sizes are re-chunked by aiortc and
every packet of one encode gets the same RTP timestamp).
"""

from __future__ import annotations

import asyncio
import fractions
import time
from collections.abc import Callable

import av
import numpy as np
from aiortc import MediaStreamTrack

from ..audio.formats import FRAME_MS, FRAME_SAMPLES, SAMPLE_RATE, SILENCE_FRAME
from .playout import Playout, QueuedFrame

TIME_BASE = fractions.Fraction(1, SAMPLE_RATE)
SILENCE_STEREO = SILENCE_FRAME * 2


def _to_stereo(pcm: bytes) -> bytes:
    return np.repeat(np.frombuffer(pcm, dtype=np.int16), 2).tobytes()

#: Called for every frame sent: (frame or None for silence, offset of the frame in ms
#: since the track started).
FrameObserver = Callable[[QueuedFrame | None, float], None]


class OutboundAudioTrack(MediaStreamTrack):
    kind = "audio"

    def __init__(self, playout: Playout, on_frame: FrameObserver) -> None:
        super().__init__()
        self.playout = playout
        self._on_frame = on_frame
        self._start: float | None = None
        self._index = 0
        self.started_at_wall: float | None = None

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            from aiortc.mediastreams import MediaStreamError

            raise MediaStreamError
        loop = asyncio.get_running_loop()
        now = loop.time()
        if self._start is None:
            self._start = now
            self.started_at_wall = time.time()
        due = self._start + self._index * FRAME_MS / 1000
        if due > now:
            await asyncio.sleep(due - now)
        elif now - due > 0.2:
            # The loop stalled for over 200 ms: re-anchor instead of bursting frames out.
            skipped = int((now - due) * 1000 / FRAME_MS)
            self._index += skipped
        f = self.playout.pop()
        # Stereo, not mono: aiortc's encoder upmixes mono with FFmpeg's -3 dB centre-mix
        # law, which would make every agent word 3 dB quieter than the model made it.
        pcm = _to_stereo(f.pcm) if f is not None else SILENCE_STEREO
        frame = av.AudioFrame(format="s16", layout="stereo", samples=FRAME_SAMPLES)
        frame.planes[0].update(pcm)
        frame.sample_rate = SAMPLE_RATE
        frame.pts = self._index * FRAME_SAMPLES
        frame.time_base = TIME_BASE
        self._on_frame(f, self._index * FRAME_MS)
        self._index += 1
        return frame
