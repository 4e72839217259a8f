"""Statistics of the latency bench: markers matched across the loop, and what they say.

Pure functions over the times the processes recorded (monotonic seconds); no I/O. Used by
:mod:`bench.latency` and its tests.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass
from typing import Any

from bench.latency_net import WireTap

HORIZON_S = 1.4  # a detection is matched to a marker of its frequency sent at most this early


def pct(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[max(0, math.ceil(q * len(s)) - 1)]


def summary(xs: list[float | None]) -> dict[str, float | int | None]:
    """n, p50/p95/p99/max and mean of values in seconds, reported in ms (nearest rank)."""
    v = [1000 * x for x in xs if x is not None]
    if not v:
        return {"n": 0, "p50": None, "p95": None, "p99": None, "max": None, "mean": None}
    return {"n": len(v), "p50": round(pct(v, 0.5), 2), "p95": round(pct(v, 0.95), 2),
            "p99": round(pct(v, 0.99), 2), "max": round(max(v), 2),
            "mean": round(sum(v) / len(v), 2)}


def match(sources: list[tuple[float, int]], sinks: list[tuple[float, int]]) -> dict[int, int]:
    """Source index -> sink index: each sink (a detection: time, frequency) goes to the latest
    source (a marker sent: time, frequency) of its frequency no later than it and at most
    HORIZON_S before it; a source keeps its first sink (later ones are repeats)."""
    by_freq: dict[int, list[tuple[float, int]]] = {}
    for i, (t, f) in enumerate(sources):
        by_freq.setdefault(f, []).append((t, i))
    for v in by_freq.values():
        v.sort()
    out: dict[int, int] = {}
    for j in sorted(range(len(sinks)), key=lambda j: sinks[j][0]):
        t, f = sinks[j]
        cands = by_freq.get(f, [])
        k = bisect.bisect_right(cands, (t, math.inf)) - 1
        if k < 0:
            continue
        t_a, i = cands[k]
        if t - t_a <= HORIZON_S and i not in out:
            out[i] = j
    return out


def sub(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


@dataclass
class Marker:
    """One marker through the whole loop; times in monotonic seconds (None: not seen)."""

    k: int  # frame index at the caller
    freq: int
    t_handed: float  # handed to aiortc's sender
    ts: int | None  # its RTP timestamp
    t_wire: float | None  # on the caller's wire, leaving
    t_gw_in: float | None = None  # on the server's wire, arriving
    t_up_recv: float | None = None  # append holding it received by the upstream
    t_up_sent: float | None = None  # delta holding it handed to the upstream's socket
    offset_ms: float = 0.0  # onset's offset in that append (= in the delta)
    chunk_ms: float = 0.0  # that append's length
    out_ts: int | None = None  # RTP timestamp of the server's packet that carried it back
    out_queued: int | None = None  # frames of earlier deltas the server sent before it
    t_gw_out: float | None = None  # that packet on the server's wire, leaving
    t_back: float | None = None  # that packet on the caller's wire, arriving
    t_decoded: float | None = None  # the caller's decoded frame holding it


def build_markers(probe: dict[str, Any], ups: list[list[Any]], tap: WireTap) -> list[Marker]:
    gw_in = tap.index(False, probe["local_ssrc"])
    gw_out = tap.index(True, probe["remote_ssrc"]) if probe["remote_ssrc"] is not None else {}
    marks = [Marker(k, f, th, ts, tw, gw_in.get(ts) if ts is not None else None)
             for k, f, th, ts, tw in probe["sent"]]
    inbound = match([(m.t_wire or m.t_handed, m.freq) for m in marks],
                    [(u[0], int(u[4])) for u in ups])
    for i, j in inbound.items():
        m = marks[i]
        m.t_up_recv, m.t_up_sent, m.offset_ms, m.chunk_ms = ups[j][0], ups[j][1], ups[j][2], \
            ups[j][3]
    echoed = [m for m in marks if m.t_up_sent is not None]
    found = probe["found"]
    outbound = match([(m.t_up_sent or 0.0, m.freq) for m in echoed],
                     [(f[3] or f[2], int(f[1])) for f in found])
    departures = sorted(gw_out.values())
    for i, j in outbound.items():
        m = echoed[i]
        ts, _, t_dec, t_back = found[j]
        m.out_ts, m.t_decoded, m.t_back = ts, t_dec, t_back
        m.t_gw_out = gw_out.get(ts) if ts is not None else None
        m.out_queued = queued_ahead(m, departures)
    return marks


def queued_ahead(m: Marker, departures: list[float]) -> int | None:
    """Frames of *earlier* deltas the server sent between receiving this marker's delta and
    sending the marker: its playout backlog (packets on the server's wire in between, minus
    the frames of the same delta ahead of the marker)."""
    if m.t_gw_out is None or m.t_up_sent is None:
        return None
    between = (bisect.bisect_left(departures, m.t_gw_out)
               - bisect.bisect_right(departures, m.t_up_sent))
    return max(0, between - int(m.offset_ms // 20))


def append_lateness(arrivals: list[list[float]]) -> list[tuple[float, float]]:
    """(time, lateness s) of each append at the upstream: arrival minus the audio clock
    (the audio before it, from the first append), less the smallest such value."""
    out: list[tuple[float, float]] = []
    if not arrivals:
        return out
    t0 = arrivals[0][0]
    audio = 0.0
    for t, ms in arrivals:
        out.append((t, t - t0 - audio))
        audio += ms / 1000
    low = min(x for _, x in out)
    return [(t, x - low) for t, x in out]


def direction_stats(marks: list[Marker]) -> dict[str, Any]:
    """Inbound and outbound figures over the markers of a window."""
    heard = [m for m in marks if m.t_up_recv is not None]
    lost_net = sum(m.t_up_recv is None and m.t_gw_in is None for m in marks)
    back = [m for m in heard if m.t_back is not None or m.t_decoded is not None]
    return {
        "in": {
            "sent": len(marks), "lost": len(marks) - len(heard), "lost_in_network": lost_net,
            "one_way": summary([sub(m.t_up_recv, m.t_wire) for m in heard]),
            "server": summary([sub(m.t_up_recv, m.t_gw_in) for m in heard]),
            "network": summary([sub(m.t_gw_in, m.t_wire) for m in heard]),
            "append_wait": summary([batch_wait(m) / 1000 for m in heard]),
            "after_batching": summary([after_batching(m) for m in heard]),
            "caller_send": summary([sub(m.t_wire, m.t_handed) for m in marks]),
        },
        "out": {
            "sent": len(heard), "lost": len(heard) - len(back),
            "one_way": summary([sub(m.t_back, m.t_up_sent) for m in back]),
            "server": summary([sub(m.t_gw_out, m.t_up_sent) for m in back]),
            "network": summary([sub(m.t_back, m.t_gw_out) for m in back]),
            "delta_position": summary([20 * (m.offset_ms // 20) / 1000 for m in back]),
            "queued_ahead": summary([None if m.out_queued is None else m.out_queued * 0.02
                                     for m in back]),
            "tick_wait_and_send": summary([tick_wait(m) for m in back]),
            "caller_buffer_decode": summary([sub(m.t_decoded, m.t_back) for m in back]),
            "untraced": sum(m.out_ts is None for m in back),
        },
        "round_trip": summary([sub(m.t_back, m.t_wire) for m in back]),
    }


def tick_wait(m: Marker) -> float | None:
    """What is left of the outbound server-added time once the marker's position in its delta
    and the playout backlog ahead of it are taken out: waiting for the next 20 ms tick of the
    outbound track, the encode and the send."""
    d = sub(m.t_gw_out, m.t_up_sent)
    if d is None or m.out_queued is None:
        return None
    return d - 0.02 * (m.offset_ms // 20) - 0.02 * m.out_queued


def after_batching(m: Marker) -> float | None:
    """Inbound server-added time less the append batching: SRTP, jitter buffer (its wait for
    late or lost packets), decode, resample, JSON and the WebSocket."""
    d = sub(m.t_up_recv, m.t_gw_in)
    return None if d is None else d - batch_wait(m) / 1000


def batch_wait(m: Marker) -> float:
    """ms the marker's 20 ms frame waited in the server for the rest of its append."""
    return max(0.0, m.chunk_ms - 20 * (m.offset_ms // 20 + 1))


def in_window(marks: list[Marker], t_from: float, t_to: float) -> list[Marker]:
    return [m for m in marks if t_from <= m.t_handed <= t_to]


def per_minute(marks: list[Marker], t0: float, minutes: int) -> list[dict[str, Any]]:
    rows = []
    for i in range(minutes):
        mine = in_window(marks, t0 + 60 * i, t0 + 60 * (i + 1))
        if mine:
            rows.append({"minute": i + 1, **direction_stats(mine)})
    return rows


def marker_rows(marks: list[Marker]) -> list[list[Any]]:
    """Compact per-marker record for the JSON: k, freq, then each time relative to t_handed
    in ms (None: not seen), then offset and chunk ms, and the playout backlog in frames."""
    def rel(t: float | None, m: Marker) -> float | None:
        return None if t is None else round(1000 * (t - m.t_handed), 3)

    return [[m.k, m.freq, *(rel(t, m) for t in (m.t_wire, m.t_gw_in, m.t_up_recv, m.t_up_sent,
                                                 m.t_gw_out, m.t_back, m.t_decoded)),
             m.offset_ms, m.chunk_ms, m.out_queued] for m in marks]
