"""The echo upstream of bench.latency: ``bench.echo_upstream``'s protocol, plus marker times.

Every ``input_audio_buffer.append`` is echoed at once as a ``response.output_audio.delta`` of
the same bytes, so the caller hears its own markers back (GPT-Live at ``/v1/live/sessions``:
``session.start`` -> ``session.started``, each ``session.input_audio.append`` back as a
``session.output_audio.delta``); then, off the echo's path, the
appended PCM (24 kHz mono s16) is scanned with :class:`bench.markers.MarkerDetector`. For each
marker found it records, in ``time.monotonic()`` (one clock for every process of the bench):

- ``t_recv``: when the append's WebSocket message was received (before parsing it);
- ``t_sent``: when the delta carrying the same audio back was handed to the socket;
- the onset's offset in the append and the append's length (both in ms), and the frequency;

and, for every append, when it arrived and how much audio it held (how evenly the server
delivers the caller's audio: each late append delays the echo, and what the caller hears).

``GET /markers`` returns them per upstream connection (in the order connections opened);
``GET /stats`` returns ``bench.echo_upstream``'s counters. Runs in its own process so its
work never counts against the server under test.
"""

from __future__ import annotations

import base64
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from aiohttp import web

from bench import echo_upstream
from bench.markers import MarkerDetector

RATE = 24_000
MAX_MARKERS = 50_000  # per connection (a 10-minute call has 1,200)
MAX_ARRIVALS = 100_000  # per connection (a 10-minute call has 15,000 appends of 40 ms)


@dataclass(slots=True)
class UpMarker:
    t_recv: float
    t_sent: float
    offset_ms: float
    chunk_ms: float
    freq: int

    def as_list(self) -> list[float | int]:
        return [self.t_recv, self.t_sent, round(self.offset_ms, 3), round(self.chunk_ms, 3),
                self.freq]


@dataclass
class Connection:
    index: int
    opened: float = field(default_factory=time.monotonic)
    detector: MarkerDetector[tuple[float, float, float]] = field(
        default_factory=lambda: MarkerDetector(RATE))
    markers: deque[UpMarker] = field(default_factory=lambda: deque(maxlen=MAX_MARKERS))
    #: (received, ms of audio) of every append: how evenly the server delivers audio.
    arrivals: deque[tuple[float, float]] = field(
        default_factory=lambda: deque(maxlen=MAX_ARRIVALS))
    appends: int = 0

    def scan(self, audio_b64: str, t_recv: float, t_sent: float) -> None:
        pcm = np.frombuffer(base64.b64decode(audio_b64), dtype=np.int16)
        chunk_ms = 1000 * len(pcm) / RATE
        self.arrivals.append((t_recv, chunk_ms))
        for hit in self.detector.feed(pcm, (t_recv, t_sent, chunk_ms)):
            r, s, ms = hit.tag
            self.markers.append(UpMarker(r, s, 1000 * hit.offset / RATE, ms, hit.freq))


CONNECTIONS = web.AppKey("connections", list[Connection])


async def markers_handler(request: web.Request) -> web.Response:
    out: list[dict[str, Any]] = [
        {"index": c.index, "opened": c.opened, "appends": c.appends,
         "markers": [m.as_list() for m in c.markers],
         "arrivals": [[round(t, 6), round(ms, 3)] for t, ms in c.arrivals]}
        for c in request.app[CONNECTIONS]]
    return web.json_response({"connections": out})


def make_app() -> web.Application:
    app = echo_upstream.make_app()
    conns: list[Connection] = []
    app[CONNECTIONS] = conns

    def observer() -> echo_upstream.AppendObserver:
        conn = Connection(len(conns))
        conns.append(conn)

        def on_append(audio: str, t_recv: float, t_sent: float) -> None:
            conn.appends += 1
            conn.scan(audio, t_recv, t_sent)
        return on_append

    app[echo_upstream.OBSERVER] = observer
    app.router.add_get("/markers", markers_handler)
    return app


def main(argv: list[str] | None = None) -> int:
    return echo_upstream.serve("python -m bench.marker_upstream", make_app, argv)


if __name__ == "__main__":
    raise SystemExit(main())
