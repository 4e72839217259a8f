"""Delay added by the inbound jitter buffer: the gateway's vs aiortc's, same simulated network.

10 minutes of 20 ms RTP per condition, seeded, so the figures are exactly repeatable.
Run: python -m bench.jitter
"""

from __future__ import annotations

import json
from pathlib import Path

from aiortc.jitterbuffer import JitterBuffer

from gateway.legs.jitter import AdaptiveJitterBuffer
from tests.jitter_sim import pct, simulate

OUT = Path(__file__).parent / "results" / "jitter.json"
CONDITIONS = [("clean", 0.0, 0.0), ("1% loss, 20 ms jitter", 0.01, 20.0),
              ("2% loss, 20 ms jitter", 0.02, 20.0), ("5% loss, 20 ms jitter", 0.05, 20.0)]


def main() -> None:
    rows = []
    for name, loss, jitter in CONDITIONS:
        row: dict[str, object] = {"condition": name}
        for label, make in (("gateway", AdaptiveJitterBuffer),
                            ("aiortc", lambda: JitterBuffer(capacity=16, prefetch=4))):
            r = simulate(make(), seconds=600, loss=loss, jitter_ms=jitter)
            last = [a for a, t in zip(r.added_ms, r.times, strict=True) if t > 540_000]
            row[label] = {"p50_ms": pct(r.added_ms, 50), "p99_ms": pct(r.added_ms, 99),
                          "last_minute_p50_ms": pct(last, 50),
                          "delivered_pct": 100 * r.released / max(1, r.sent - r.lost_on_wire)}
        rows.append(row)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(rows, indent=2))
    head = ('condition', 'gateway p50/p99 (last min)', 'aiortc p50/p99 (last min)')
    print(f"{head[0]:24s} {head[1]:>30s} {head[2]:>30s}")
    for row in rows:
        cells = []
        for k in ("gateway", "aiortc"):
            v = row[k]
            assert isinstance(v, dict)
            cells.append(f"{v['p50_ms']:.0f}/{v['p99_ms']:.0f} ms ({v['last_minute_p50_ms']:.0f})")
        print(f"{row['condition']!s:24s} {cells[0]:>30s} {cells[1]:>30s}")


if __name__ == "__main__":
    main()
