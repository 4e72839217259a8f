"""What the conformance tests share: the speech they say, a tap between the gateway and the
local engine (to see what reached the upstream), and the event oracles per dialect.

The tap is a plain relay: it opens the same WebSocket on the engine the gateway asked it for
and passes every message through unchanged, keeping a copy of the JSON events each way. The
tests assert on what OpenAI would have received, which nothing else can show.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import wave
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import numpy.typing as npt
from aiohttp import web

from tests.oracle import validate_beta_server_event, validate_server_event

SPEECH = Path(__file__).resolve().parent.parent / "fixtures" / "speech"
ARTIFACTS = Path(__file__).resolve().parent.parent.parent / "test-artifacts" / "conformance"
Json = dict[str, Any]


def speech(name: str, rate: int, lead_s: float = 0.3, tail_s: float = 1.5
           ) -> npt.NDArray[np.int16]:
    """A recorded phrase resampled (linear) to ``rate``, with silence around it."""
    with wave.open(str(SPEECH / f"{name}.wav")) as w:
        x = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
        src = w.getframerate()
    t = np.arange(int(len(x) * rate / src)) / rate
    y = np.interp(t, np.arange(len(x)) / src, x).astype(np.int16)
    return np.concatenate([np.zeros(int(rate * lead_s), np.int16), y,
                           np.zeros(int(rate * tail_s), np.int16)])


def bound_port(runner: web.AppRunner) -> int:
    """The port a started runner's (only) TCP site listens on."""
    site = next(iter(runner.sites))
    server = site._server  # the site keeps it private; the port is what a test needs
    assert isinstance(server, asyncio.Server)
    return int(server.sockets[0].getsockname()[1])


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def mic_wav(tmp: Path, names: list[str], lead_s: float = 2.0, gap_s: float = 6.0) -> Path:
    """A WAV for Chromium's fake microphone: the phrases with silence before, between, after."""
    rate = 16000
    parts: list[npt.NDArray[np.int16]] = [np.zeros(int(rate * lead_s), np.int16)]
    for name in names:
        parts += [speech(name, rate, 0.0, 0.0), np.zeros(int(rate * gap_s), np.int16)]
    parts.append(np.zeros(rate * 10, np.int16))
    path = tmp / ("-".join(names) + "-mic.wav")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(np.concatenate(parts).tobytes())
    return path


@dataclass
class Tap:
    """Every JSON event the gateway sent upstream (``sent``) and got back (``received``)."""

    url: str
    sent: list[Json] = field(default_factory=list)
    received: list[Json] = field(default_factory=list)

    def sent_of(self, etype: str) -> list[Json]:
        return [e for e in self.sent if e.get("type") == etype]

    def appended_since(self, start: int, until_type: str | None = None) -> tuple[bytes, int]:
        """Audio the gateway appended upstream from ``sent[start]`` on, up to (not including)
        the first event of ``until_type``; and the index where it stopped."""
        out = bytearray()
        i = start
        while i < len(self.sent):
            e = self.sent[i]
            if until_type is not None and e.get("type") == until_type:
                break
            if e.get("type") == "input_audio_buffer.append":
                out += base64.b64decode(e["audio"])
            i += 1
        return bytes(out), i


async def _pipe(src: Any, dst: Any, log: list[Json]) -> None:
    async for msg in src:
        if msg.type == aiohttp.WSMsgType.TEXT:
            with contextlib.suppress(ValueError):
                log.append(json.loads(msg.data))
            await dst.send_str(msg.data)
        elif msg.type == aiohttp.WSMsgType.BINARY:
            await dst.send_bytes(msg.data)
        else:
            break


@contextlib.asynccontextmanager
async def upstream_tap(engine_url: str) -> AsyncIterator[Tap]:
    """A relay in front of the local engine; ``tap.url`` goes in GATEWAY_UPSTREAM_URL."""
    tap = Tap(url="")
    http = aiohttp.ClientSession()

    async def relay(request: web.Request) -> web.StreamResponse:
        down = web.WebSocketResponse(max_msg_size=0)
        await down.prepare(request)
        target = engine_url + (f"?{request.query_string}" if request.query_string else "")
        headers = {k: v for k, v in request.headers.items()
                   if k.lower() in ("authorization", "openai-beta")}
        async with http.ws_connect(target, headers=headers, max_msg_size=0) as up:
            a = asyncio.ensure_future(_pipe(down, up, tap.sent))
            b = asyncio.ensure_future(_pipe(up, down, tap.received))
            try:
                await asyncio.wait({a, b}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for t in (a, b):
                    t.cancel()
                await asyncio.gather(a, b, return_exceptions=True)
        await down.close()
        return down

    app = web.Application()
    app.router.add_get("/v1/realtime", relay)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    tap.url = f"ws://127.0.0.1:{bound_port(runner)}/v1/realtime"
    try:
        yield tap
    finally:
        await runner.cleanup()
        await http.close()


def check_events(events: list[Json], dialect: str) -> None:
    """Every event a standard client received is OpenAI's, in its dialect; none is the
    gateway's own (``gateway.*`` goes only to clients that ask for it)."""
    own = [e.get("type") for e in events if str(e.get("type", "")).startswith("gateway.")]
    assert not own, f"a standard client received the gateway's own events: {own}"
    validate = validate_beta_server_event if dialect == "beta" else validate_server_event
    for e in events:
        validate(e)


#: A page's events, told briefly (errors, tool calls, what was said): for failure messages.
PAGE_STORY = """(evs => evs.filter(e => e.type === 'error' || e.type.endsWith('transcript.done') ||
  e.type === 'response.function_call_arguments.done' || e.type.startsWith('gateway.') ||
  e.type.endsWith('transcription.completed')).map(e => e.type + ': ' +
  JSON.stringify(e.error || e.transcript || e.name || '')).slice(-20).join(' | '))(%s)"""


def transcripts(events: list[Json], dialect: str = "ga") -> list[str]:
    kind = ("response.audio_transcript.done" if dialect == "beta"
            else "response.output_audio_transcript.done")
    return [str(e.get("transcript", "")) for e in events if e.get("type") == kind]
