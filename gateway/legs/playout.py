"""Agent audio waiting to be played: 20 ms frames tagged with their item, and what was played.

Pure bookkeeping (no asyncio, no aiortc), shared by every leg that paces audio itself
(WebRTC's outbound track, Twilio). ``played_ms`` is what left the gateway toward the
caller, which is what barge-in truncation and the recording need.

Underruns do not ratchet latency up. When the queue runs dry in the middle of an item (its
audio came late: a slow upstream, or network jitter on the way in) the caller hears silence
meanwhile, and the late audio would then stay that much behind for the rest of the item. The
playout counts those silent frames as a debt and, while it is owed, skips queued frames that
are themselves near-silent, so the item's timeline catches up in its pauses; speech is never
skipped. (NetEq does the same with time compression.)
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

from ..audio.formats import FRAME_BYTES, FRAME_MS, PCM_BYTES_PER_MS

#: A frame whose peak is below this (-50 dBFS) is a pause that may be skipped to repay an
#: underrun.
QUIET_PEAK = 104
#: At most this much underrun (5 s) is remembered for repayment.
MAX_DEBT_FRAMES = 250


def quiet(pcm: bytes) -> bool:
    x = np.frombuffer(pcm, "<i2")
    return int(np.maximum.reduce(np.abs(x.astype(np.int32)))) < QUIET_PEAK


@dataclass(slots=True)
class QueuedFrame:
    pcm: bytes
    item_id: str
    response_id: str
    audio_ms: float  # real audio in the frame (the last frame of an item may be padded)


class Playout:
    def __init__(self, max_buffer_s: float) -> None:
        self._frames: deque[QueuedFrame] = deque()
        self._max_frames = int(max_buffer_s * 1000 / FRAME_MS)
        self._partial: dict[str, bytearray] = {}
        self._partial_resp: dict[str, str] = {}
        self.played_ms: dict[str, float] = {}
        self.current_item: str | None = None
        self.current_response: str | None = None
        self.dropped_frames = 0
        self.debt_frames = 0  # silence played inside an unfinished item (an underrun)
        self.shed_frames = 0  # quiet frames skipped to repay it
        self._last_item: str | None = None

    def push(self, pcm: bytes, item_id: str, response_id: str) -> None:
        buf = self._partial.setdefault(item_id, bytearray())
        self._partial_resp[item_id] = response_id
        buf += pcm
        n = len(buf) // FRAME_BYTES
        for i in range(n):
            self._append(QueuedFrame(bytes(buf[i * FRAME_BYTES:(i + 1) * FRAME_BYTES]),
                                     item_id, response_id, float(FRAME_MS)))
        del buf[: n * FRAME_BYTES]

    def end_item(self, item_id: str) -> None:
        """The item's audio is complete: queue its last partial frame, padded with silence."""
        buf = self._partial.pop(item_id, None)
        resp = self._partial_resp.pop(item_id, "")
        if buf:
            ms = len(buf) / PCM_BYTES_PER_MS
            self._append(QueuedFrame(bytes(buf) + bytes(FRAME_BYTES - len(buf)), item_id, resp, ms))

    def _append(self, frame: QueuedFrame) -> None:
        if len(self._frames) >= self._max_frames:
            self.dropped_frames += 1
            return
        self._frames.append(frame)

    def pop(self) -> QueuedFrame | None:
        """The next frame to play (None: play silence); counts it as played."""
        while self._frames:
            f = self._frames.popleft()
            if f.item_id != self._last_item:
                self.debt_frames = 0  # a new item: nothing of the old one to catch up
                self._last_item = f.item_id
            elif self.debt_frames and self._frames and quiet(f.pcm):
                # Repay an underrun: the caller already heard this much silence.
                self.debt_frames -= 1
                self.shed_frames += 1
                self.played_ms[f.item_id] = self.played_ms.get(f.item_id, 0.0) + f.audio_ms
                continue
            return self._play(f)
        if self._last_item is not None and self._last_item in self._partial:
            self.debt_frames = min(self.debt_frames + 1, MAX_DEBT_FRAMES)
        self.current_item = None
        return None

    def _play(self, f: QueuedFrame) -> QueuedFrame:
        self.current_item = f.item_id
        self.current_response = f.response_id
        self.played_ms[f.item_id] = self.played_ms.get(f.item_id, 0.0) + f.audio_ms
        return f

    def drop(self, frames: int) -> int:
        """Discard up to ``frames`` queued frames without playing them (the sender fell
        behind real time); they do not count as played. Returns how many went."""
        n = min(frames, len(self._frames))
        for _ in range(n):
            self._frames.popleft()
        self.dropped_frames += n
        return n

    def clear(self) -> tuple[str | None, float]:
        """Drop everything queued. Returns the item that was playing and its played ms."""
        item = self.current_item or (self._frames[0].item_id if self._frames else None)
        self._frames.clear()
        self._partial.clear()
        self._partial_resp.clear()
        self.current_item = None
        self.debt_frames = 0
        return item, (self.played_ms.get(item, 0.0) if item else 0.0)

    @property
    def queued_ms(self) -> float:
        return len(self._frames) * FRAME_MS

    @property
    def active(self) -> bool:
        return bool(self._frames)

