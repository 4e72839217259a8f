"""The inbound jitter buffer the gateway owns, in place of aiortc's audio one.

aiortc's audio buffer (``JitterBuffer(capacity=16, prefetch=4)``) holds four frames (80 ms)
always, and after one lost packet it waits for the gap to fill until the buffer overflows,
then stays 14 frames (280 ms) behind for good (aiortc#543). The gateway does not play this
audio; it relays it to the model, which buffers for itself, so the only jobs left are putting
packets back in order and deciding that a missing one is lost. This buffer:

- emits in-order packets the moment they arrive (no prefetch);
- on a gap, waits for at most ``wait`` newer packets, then declares the missing one lost
  (the pump conceals it, see :mod:`gateway.audio.conceal`);
- adapts ``wait`` to the network: a packet that arrives after it was given up raises it (up to
  ``max_wait``), ten clean seconds lower it again;
- hands any backlog to the decoder at once as one multi-frame Opus packet (RFC 6716 code 3),
  so latency built up while waiting drains on the next packet, with no audio dropped.

It keeps aiortc's interface: ``add(packet) -> (pli_flag, JitterFrame | None)``.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from aiortc.jitterbuffer import JitterFrame
from aiortc.rtp import RtpPacket

from ..audio.opus_packets import join

RESET_GAP = 3000  # a jump this large is a new stream (or a restart), not loss
CLEAN_PACKETS_TO_RELAX = 500  # 10 s at 20 ms


def seq_diff(a: int, b: int) -> int:
    """a - b in 16-bit sequence space, in [-32768, 32767]."""
    return ((a - b + 0x8000) & 0xFFFF) - 0x8000


@dataclass
class JitterStats:
    received: int = 0
    lost: int = 0
    late: int = 0
    duplicates: int = 0
    joined: int = 0
    max_wait_seen: int = 0


class AdaptiveJitterBuffer:
    def __init__(self, *, wait: int = 1, max_wait: int = 6, capacity: int = 64) -> None:
        self.wait = wait
        self.min_wait = wait
        self.max_wait = max_wait
        self._capacity = capacity
        self._next: int | None = None
        self._held: dict[int, RtpPacket] = {}
        self._ready: deque[RtpPacket] = deque()
        self._clean = 0
        self.stats = JitterStats()

    @property
    def capacity(self) -> int:
        return self._capacity

    def add(self, packet: RtpPacket) -> tuple[bool, JitterFrame | None]:
        seq = packet.sequence_number
        self.stats.received += 1
        if self._next is None:
            self._next = seq
        d = seq_diff(seq, self._next)
        if d < 0 or seq in self._held:
            if -d > RESET_GAP:
                self._reset(seq)
            else:
                # Given up on already (or a duplicate): the network reorders deeper than we
                # waited, so wait longer from now on.
                if d < 0:
                    self.stats.late += 1
                    self.wait = min(self.max_wait, self.wait + 1)
                    self.stats.max_wait_seen = max(self.stats.max_wait_seen, self.wait)
                    self._clean = 0
                else:
                    self.stats.duplicates += 1
                return False, self._emit()
        elif d > RESET_GAP:
            self._reset(seq)
        self._held[seq] = packet
        self._advance()
        return False, self._emit()

    def _reset(self, seq: int) -> None:
        self._ready.extend(self._held[s] for s in sorted(self._held,
                                                          key=lambda s: seq_diff(s, seq)))
        self._held.clear()
        self._next = seq

    def _advance(self) -> None:
        assert self._next is not None
        gap = False
        while self._held:
            p = self._held.pop(self._next, None)
            if p is not None:
                self._ready.append(p)
                self._next = (self._next + 1) & 0xFFFF
                continue
            if len(self._held) > self.wait or len(self._held) >= self._capacity:
                self.stats.lost += 1  # waited long enough: that one is not coming
                self._next = (self._next + 1) & 0xFFFF
                gap = True
                continue
            break
        if gap:
            self._clean = 0
        elif self._ready:
            self._clean += len(self._ready)
            if self._clean >= CLEAN_PACKETS_TO_RELAX and self.wait > self.min_wait:
                self.wait -= 1
                self._clean = 0

    def _emit(self) -> JitterFrame | None:
        if not self._ready:
            return None
        first = self._ready.popleft()
        datas = [first._data]  # type: ignore[attr-defined]
        # Consecutive packets go out together (one code-3 Opus packet) when they can.
        while self._ready:
            nxt = self._ready[0]
            if nxt.timestamp - first.timestamp > 960 * 5:  # keep joins within 120 ms
                break
            joined = join([*datas, nxt._data])  # type: ignore[attr-defined]
            if joined is None:
                break
            datas.append(self._ready.popleft()._data)  # type: ignore[attr-defined]
        if len(datas) > 1:
            self.stats.joined += len(datas) - 1
        data = join(datas) if len(datas) > 1 else datas[0]
        return JitterFrame(data=data or datas[0], timestamp=first.timestamp)


def install_jitter_buffer(receiver: object, buffer: AdaptiveJitterBuffer) -> None:
    """Put ``buffer`` in place of the receiver's own audio jitter buffer.

    aiortc has no public hook for this: the attribute is private (name-mangled), so this is
    the one place the gateway reaches into aiortc. It fails loudly if aiortc renames it.
    """
    attr = "_RTCRtpReceiver__jitter_buffer"
    if not hasattr(receiver, attr):
        raise RuntimeError("aiortc's RTCRtpReceiver has no jitter buffer attribute to replace")
    setattr(receiver, attr, buffer)
