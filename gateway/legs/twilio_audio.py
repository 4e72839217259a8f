"""Bookkeeping of a Twilio leg's outbound audio: frames, transcoding, marks. No asyncio.

Twilio echoes a ``mark`` once the audio sent before it has played, or at once when a
``clear`` dropped that audio. :class:`MarkLedger` turns the echoes into milliseconds played
per item, which is what barge-in truncation must report (what the caller heard, not what
was sent).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

from ..audio.formats import FRAME_MS, G711_BYTES_PER_MS, G711_FRAME_BYTES
from ..audio.g711 import ULAW_SILENCE, ulaw_encode
from ..audio.resample import Decimator, down_24k_to_8k
from .playout import Playout, QueuedFrame


class MulawPlayout(Playout):
    """:class:`Playout` over 160-byte µ-law frames (20 ms at 8 kHz), padded with µ-law silence
    (a zero byte is full negative scale in µ-law, not silence)."""

    def push(self, pcm: bytes, item_id: str, response_id: str) -> None:
        buf = self._partial.setdefault(item_id, bytearray())
        self._partial_resp[item_id] = response_id
        buf += pcm
        n = len(buf) // G711_FRAME_BYTES
        for i in range(n):
            frame = bytes(buf[i * G711_FRAME_BYTES:(i + 1) * G711_FRAME_BYTES])
            self._append(QueuedFrame(frame, item_id, response_id, float(FRAME_MS)))
        del buf[: n * G711_FRAME_BYTES]

    def end_item(self, item_id: str) -> None:
        buf = self._partial.pop(item_id, None)
        resp = self._partial_resp.pop(item_id, "")
        if buf:
            pad = bytes([ULAW_SILENCE]) * (G711_FRAME_BYTES - len(buf))
            self._append(QueuedFrame(bytes(buf) + pad, item_id, resp,
                                     len(buf) / G711_BYTES_PER_MS))

    def head_item(self) -> str | None:
        return self._frames[0].item_id if self._frames else None


class PcmToMulaw:
    """Transcode mode: upstream PCM16 24 kHz deltas (any size) -> µ-law 8 kHz for one item
    at a time. The decimator takes whole groups of 3 samples, so a remainder is carried."""

    def __init__(self) -> None:
        self._down: Decimator = down_24k_to_8k()
        self._carry = bytearray()
        self.item_id = ""
        self.response_id = ""

    def push(self, pcm: bytes) -> bytes:
        self._carry += pcm
        usable = len(self._carry) - len(self._carry) % 6
        if not usable:
            return b""
        samples = np.frombuffer(bytes(self._carry[:usable]), dtype="<i2")
        del self._carry[:usable]
        return ulaw_encode(self._down.process(samples))

    def flush(self) -> bytes:
        """The carried remainder, zero-padded to a whole group."""
        if not self._carry:
            return b""
        self._carry += bytes(-len(self._carry) % 6)
        out = ulaw_encode(self._down.process(np.frombuffer(bytes(self._carry), dtype="<i2")))
        self._carry.clear()
        return out

    def reset(self) -> None:
        self._down = down_24k_to_8k()
        self._carry.clear()


@dataclass(slots=True)
class Sent:
    """A frame sent to Twilio whose mark has not come back yet."""

    seq: int
    item_id: str
    audio_ms: float
    due: float  # loop time by which Twilio should have played it


class MarkLedger:
    def __init__(self) -> None:
        self._pending: deque[Sent] = deque()
        self._played: dict[str, float] = {}
        self._seq = 0

    def sent(self, item_id: str, audio_ms: float, due: float) -> str:
        """Record a frame about to be sent; the name of the mark to send after it."""
        self._seq += 1
        self._pending.append(Sent(self._seq, item_id, audio_ms, due))
        return str(self._seq)

    def ack(self, seq: int) -> None:
        """Twilio echoed mark ``seq``. Marks come back in the order sent, so one echo
        acknowledges every frame before it too."""
        while self._pending and self._pending[0].seq <= seq:
            self._settle(self._pending.popleft())

    def settle_all(self) -> int:
        """Count every pending frame as played (their echoes are overdue); how many."""
        n = len(self._pending)
        while self._pending:
            self._settle(self._pending.popleft())
        return n

    def forget_pending(self) -> None:
        """After a ``clear``: the echoes still to come are for audio that was dropped."""
        self._pending.clear()

    def _settle(self, sent: Sent) -> None:
        self._played[sent.item_id] = self._played.get(sent.item_id, 0.0) + sent.audio_ms

    def played_ms(self, item_id: str) -> float:
        return self._played.get(item_id, 0.0)

    @property
    def head_item(self) -> str | None:
        """The item Twilio is playing now, if it holds any unacknowledged audio."""
        return self._pending[0].item_id if self._pending else None

    @property
    def last_due(self) -> float | None:
        return self._pending[-1].due if self._pending else None

    def __len__(self) -> int:
        return len(self._pending)
