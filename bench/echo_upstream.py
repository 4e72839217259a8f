"""An "echo" Realtime upstream for benchmarks: each caller append comes back as agent audio.
It speaks GPT-Live at ``/v1/live/sessions`` too (the same echo in Live's events).

A GA WebSocket server at ``/v1/realtime``: it sends ``session.created``, answers
``session.update`` with ``session.updated``, and echoes each ``input_audio_buffer.append`` as a
``response.output_audio.delta`` of the same bytes, so a call through a gateway is full duplex
(the caller's own audio comes back to it over the gateway's outbound track).

It runs in its own process so its CPU never counts against the server under test. The base64
payload is echoed without decoding it (the byte count follows from its length): the echo
should cost the shared machine as little as possible.

``GET /stats`` returns counters the bench reads before and after its window: audio bytes
received (PCM16 24 kHz mono, 48 bytes a millisecond), appends, deltas sent, connections.
"""

from __future__ import annotations

import argparse
import copy
import json
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import WSMsgType, web

BYTES_PER_MS = 48  # PCM16 mono 24 kHz

SESSION: dict[str, Any] = {
    "type": "realtime", "model": "gpt-realtime-echo", "instructions": "echo",
    "output_modalities": ["audio"],
    "audio": {"input": {"format": {"type": "audio/pcm", "rate": 24000}, "turn_detection": None},
              "output": {"format": {"type": "audio/pcm", "rate": 24000}, "voice": "alloy"}},
}


@dataclass
class Stats:
    connections: int = 0
    open: int = 0
    appends: int = 0
    audio_bytes_in: int = 0
    deltas: int = 0
    events_in: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {"connections": self.connections, "open": self.open, "appends": self.appends,
                "audio_bytes_in": self.audio_bytes_in,
                "audio_ms_in": self.audio_bytes_in / BYTES_PER_MS, "deltas": self.deltas,
                "events_in": self.events_in}


def b64_len(s: str) -> int:
    """Decoded length of a padded base64 string, without decoding it."""
    return len(s) * 3 // 4 - (2 if s.endswith("==") else 1 if s.endswith("=") else 0)


#: Told about every append once its echo is sent: (base64 audio, received, echo sent), in
#: ``time.monotonic()``. One is made per connection by the app's OBSERVER factory, if any.
AppendObserver = Callable[[str, float, float], None]

STATS = web.AppKey("stats", Stats)
OBSERVER: web.AppKey[Callable[[], AppendObserver]] = web.AppKey("observer")


async def realtime(request: web.Request) -> web.WebSocketResponse:
    stats = request.app[STATS]
    ws = web.WebSocketResponse(max_msg_size=32 * 1024 * 1024)
    await ws.prepare(request)
    factory = request.app.get(OBSERVER)
    observe = factory() if factory is not None else None
    stats.connections += 1
    stats.open += 1
    tag = secrets.token_hex(6)
    seq = 0
    session = copy.deepcopy(SESSION)
    # One response and item for the whole call: the echo never ends its turn.
    prefix = ('{"type":"response.output_audio.delta","response_id":"resp_' + tag +
              '","item_id":"item_' + tag + '","output_index":0,"content_index":0,'
              '"event_id":"event_' + tag + '_')
    try:
        await ws.send_str(json.dumps({"type": "session.created", "event_id": f"event_{tag}_c",
                                      "session": session}))
        async for msg in ws:
            t_recv = time.monotonic()
            if msg.type != WSMsgType.TEXT:
                continue
            stats.events_in += 1
            ev = json.loads(msg.data)
            etype = ev.get("type")
            if etype == "input_audio_buffer.append":
                audio = ev.get("audio", "")
                seq += 1
                await _echo(ws, stats, observe, audio, t_recv,
                            prefix + str(seq) + '","delta":"' + audio + '"}')
            elif etype == "session.update":
                session.update(ev.get("session") or {})
                await ws.send_str(json.dumps({"type": "session.updated",
                                              "event_id": f"event_{tag}_u{seq}",
                                              "session": session}))
    finally:
        stats.open -= 1
    return ws


async def _echo(ws: web.WebSocketResponse, stats: Stats, observe: AppendObserver | None,
                audio: str, t_recv: float, line: str) -> None:
    """One append echoed back as ``line`` (its audio as a delta), counted and observed."""
    stats.appends += 1
    stats.audio_bytes_in += b64_len(audio)
    stats.deltas += 1
    t_sent = time.monotonic()
    await ws.send_str(line)
    if observe is not None:
        observe(audio, t_recv, t_sent)

async def live(request: web.Request) -> web.WebSocketResponse:
    """GPT-Live echo: ``session.start`` -> ``session.started``, then every
    ``session.input_audio.append`` comes back as a ``session.output_audio.delta``."""
    stats = request.app[STATS]
    ws = web.WebSocketResponse(max_msg_size=32 * 1024 * 1024)
    await ws.prepare(request)
    factory = request.app.get(OBSERVER)
    observe = factory() if factory is not None else None
    stats.connections += 1
    stats.open += 1
    tag = secrets.token_hex(6)
    try:
        async for msg in ws:
            t_recv = time.monotonic()
            if msg.type != WSMsgType.TEXT:
                continue
            stats.events_in += 1
            ev = json.loads(msg.data)
            etype = ev.get("type")
            if etype == "session.input_audio.append":
                audio = ev.get("audio", "")
                await _echo(ws, stats, observe, audio, t_recv,
                            '{"type":"session.output_audio.delta","delta":"' + audio + '"}')
            elif etype == "session.start":
                session = dict(ev.get("session") or {}, id=f"sess_{tag}",
                               expires_at=int(time.time()) + 3600, status="active")
                await ws.send_str(json.dumps({"type": "session.started",
                                              "event_id": f"event_{tag}_s",
                                              "client_event_id": ev.get("event_id"),
                                              "session": session}))
    finally:
        stats.open -= 1
    return ws


async def stats_handler(request: web.Request) -> web.Response:
    return web.json_response(request.app[STATS].as_dict())


def make_app() -> web.Application:
    app = web.Application()
    app[STATS] = Stats()
    app.router.add_get("/v1/realtime", realtime)
    app.router.add_get("/v1/live/sessions", live)
    app.router.add_get("/stats", stats_handler)
    return app


def serve(prog: str, app: Callable[[], web.Application], argv: list[str] | None) -> int:
    """``--host``/``--port`` from the command line, then serve ``app()`` until stopped."""
    p = argparse.ArgumentParser(prog=prog)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    args = p.parse_args(argv)
    web.run_app(app(), host=args.host, port=args.port, print=None)
    return 0


def main(argv: list[str] | None = None) -> int:
    return serve("python -m bench.echo_upstream", make_app, argv)


if __name__ == "__main__":
    raise SystemExit(main())
