"""The inbound jitter buffer the gateway owns, in place of aiortc's audio one.

aiortc's audio buffer (``JitterBuffer(capacity=16, prefetch=4)``) holds four frames (80 ms)
always, and after one lost packet it waits for the gap to fill until the buffer overflows,
then stays 14 frames (280 ms) behind for good (aiortc#543). The gateway does not play this
audio; it relays it to the model, which buffers for itself, so the only jobs left are putting
packets back in order and deciding that a missing one is lost. This buffer:

- releases in-order packets the moment they arrive (no prefetch);
- on a gap, waits for at most ``wait`` newer packets, then declares the missing one lost
  (released as ``None``: the decoder conceals it, see :mod:`gateway.legs.inbound`);
- adapts ``wait`` to the network: a packet that arrives after it was given up raises it (up to
  ``max_wait``), ten seconds without such a late arrival lower it again (losses do not count);
- releases any backlog at once, so latency built up while waiting drains on the next packet,
  with no audio dropped.

Pure and synchronous: no asyncio, no codec.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

RESET_GAP = 3000  # a jump this large is a new stream (or a restart), not loss
CLEAN_PACKETS_TO_RELAX = 500  # 10 s at 20 ms


class RtpPacket(Protocol):
    """What the buffer and the decoder read of a packet: aiortc's ``RtpPacket`` on its
    datapath, :class:`gateway.legs.rtp.OpusRtp` on the owned one."""

    sequence_number: int
    timestamp: int


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
    recovered: int = 0  # lost packets rebuilt from the next packet's in-band FEC


class AdaptiveJitterBuffer:
    def __init__(self, *, wait: int = 1, max_wait: int = 6, capacity: int = 64) -> None:
        self.wait = wait
        self.min_wait = wait
        self.max_wait = max_wait
        self._capacity = capacity
        self._next: int | None = None
        self._held: dict[int, RtpPacket] = {}
        self._ready: list[RtpPacket | None] = []
        self._clean = 0
        self.stats = JitterStats()

    @property
    def capacity(self) -> int:
        return self._capacity

    def push(self, packet: RtpPacket) -> list[RtpPacket | None]:
        """Packets released by this arrival, in order; ``None`` for each one declared lost."""
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
                return self._emit()
        elif d > RESET_GAP:
            self._reset(seq)
        self._held[seq] = packet
        self._advance()
        return self._emit()

    def _reset(self, seq: int) -> None:
        self._ready.extend(self._held[s] for s in sorted(self._held,
                                                          key=lambda s: seq_diff(s, seq)))
        self._held.clear()
        self._next = seq

    def _advance(self) -> None:
        assert self._next is not None
        while self._held:
            p = self._held.pop(self._next, None)
            if p is not None:
                self._ready.append(p)
                self._next = (self._next + 1) & 0xFFFF
                continue
            if len(self._held) > self.wait or len(self._held) >= self._capacity:
                self.stats.lost += 1  # waited long enough: that one is not coming
                self._ready.append(None)
                self._next = (self._next + 1) & 0xFFFF
                continue
            break
        # Only a late arrival (one given up on, then received) says the wait is too short;
        # a packet that never comes is plain loss and must not hold the wait up (at 2 %
        # loss there is a gap every ~50 packets, so "ten seconds without a gap" never came).
        if self._ready:
            self._clean += len(self._ready)
            if self._clean >= CLEAN_PACKETS_TO_RELAX and self.wait > self.min_wait:
                self.wait -= 1
                self._clean = 0

    def _emit(self) -> list[RtpPacket | None]:
        out, self._ready = self._ready, []
        return out
