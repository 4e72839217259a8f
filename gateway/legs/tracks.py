"""The outbound audio track: exact 20 ms Opus packets paced to the wall clock.

aiortc's sender calls ``recv()`` in a loop with no pacing of its own, so ``recv()``
sleeps until each frame is due. It returns packets already encoded by
:class:`~gateway.legs.opus_out.VoiceOpusEncoder` (aiortc then only packetizes them), each
with ``pts``/``time_base`` set: the RTP timestamp advances 960 ticks (48 kHz) per packet.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import av
from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError

from ..audio.formats import FRAME_MS, FRAME_SAMPLES
from .opus_out import VoiceOpusEncoder
from .playout import Playout, QueuedFrame

#: Called for every frame sent: (frame or None for silence, offset of the frame in ms
#: since the track started).
FrameObserver = Callable[[QueuedFrame | None, float], None]


class OutboundAudioTrack(MediaStreamTrack):
    kind = "audio"

    def __init__(self, playout: Playout, on_frame: FrameObserver, *,
                 encoder: VoiceOpusEncoder | None = None,
                 on_encode: Callable[[float], None] | None = None) -> None:
        super().__init__()
        self._encoder = encoder or VoiceOpusEncoder()
        self._on_encode = on_encode
        self.playout = playout
        self._on_frame = on_frame
        self._start: float | None = None
        self._index = 0

    async def recv(self) -> av.Packet[Any]:
        if self.readyState != "live":
            raise MediaStreamError
        loop = asyncio.get_running_loop()
        now = loop.time()
        if self._start is None:
            self._start = now
        due = self._start + self._index * FRAME_MS / 1000
        if due > now:
            await asyncio.sleep(due - now)
        elif now - due > 0.2:
            # The loop stalled for over 200 ms: re-anchor instead of bursting frames out, and
            # drop the audio those slots would have carried, so the caller stays in real time
            # and an overloaded process does not pile agent audio up in memory.
            skipped = int((now - due) * 1000 / FRAME_MS)
            self._index += skipped
            self.playout.drop(skipped)
        f = self.playout.pop()
        t0 = time.perf_counter()
        packet = self._encoder.encode(f.pcm if f is not None else None,
                                      self._index * FRAME_SAMPLES)
        if self._on_encode is not None:
            self._on_encode(time.perf_counter() - t0)
        self._on_frame(f, self._index * FRAME_MS)
        self._index += 1
        return packet
