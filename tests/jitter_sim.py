"""A deterministic RTP network for jitter buffers: loss, jitter and the reordering it causes.

Packets are sent every 20 ms; each gets a delay of ``base_ms`` plus a uniformly random
jitter, or is lost. Arrivals are fed to a buffer in time order and every frame it releases is
timed, so the delay the buffer itself adds can be measured per packet.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any, Protocol

from aiortc.rtp import RtpPacket

TOC = 0xFC  # CELT fullband 20 ms stereo, one frame (code 0)


class AiortcBuffer(Protocol):
    def add(self, packet: RtpPacket) -> tuple[bool, Any]: ...


class GatewayBuffer(Protocol):
    def push(self, packet: RtpPacket) -> list[RtpPacket | None]: ...


@dataclass
class SimResult:
    added_ms: list[float] = field(default_factory=list)  # per released packet
    released: int = 0
    sent: int = 0
    lost_on_wire: int = 0
    times: list[float] = field(default_factory=list)  # arrival time of each released packet


def simulate(buffer: AiortcBuffer | GatewayBuffer, *, seconds: float, loss: float = 0.0,
             jitter_ms: float = 0.0, base_ms: float = 30.0, seed: int = 1,
             first: int = 0) -> SimResult:
    rng = random.Random(seed)
    n = int(seconds * 50)
    arrivals: list[tuple[float, int]] = []
    res = SimResult(sent=n)
    for i in range(first, first + n):
        if rng.random() < loss:
            res.lost_on_wire += 1
            continue
        arrivals.append(((i - first) * 20 + base_ms + rng.uniform(0, jitter_ms), i))
    arrivals.sort()
    arrival_of = {i: t for t, i in arrivals}
    for t, i in arrivals:
        p = RtpPacket(payload_type=111, sequence_number=(1000 + i) & 0xFFFF,
                      timestamp=(5000 + i * 960) & 0xFFFFFFFF, payload=bytes([TOC]) + b"x" * 60)
        p._data = p.payload  # type: ignore[attr-defined]  # Opus depayloads to itself
        if hasattr(buffer, "push"):  # the gateway's: packets released (None: declared lost)
            stamps = [q.timestamp for q in buffer.push(p) if q is not None]
        else:  # aiortc's: one frame for its decoder, or None
            _, frame = buffer.add(p)
            stamps = [frame.timestamp] if frame is not None else []
        for ts in stamps:
            k = (ts - 5000) // 960
            res.added_ms.append(t - arrival_of[k])
            res.times.append(arrival_of[k])
            res.released += 1
    return res


def pct(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(q / 100 * (len(s) - 1)))] if s else float("nan")
