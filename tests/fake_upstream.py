"""A scripted stand-in for OpenAI's Realtime WebSocket (which cannot be reached here).

Protocol-faithful: every event it sends is validated against the ``openai`` package's GA
server-event types before it goes out, and every event it receives against the GA client
types. The test drives what it says (``say``) and inspects what it heard (``audio``).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
from aiohttp import WSMsgType, web

from tests.oracle import validate_client_event, validate_server_event

REAL_MODEL = "gpt-realtime-2025-08-28"


def _id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(8)}"


@dataclass
class Conn:
    ws: web.WebSocketResponse
    session: dict[str, Any]
    received: list[dict[str, Any]] = field(default_factory=list)
    audio: bytearray = field(default_factory=bytearray)
    active: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    query: dict[str, str] = field(default_factory=dict)
    cancelled: asyncio.Event = field(default_factory=asyncio.Event)

    async def send(self, event: dict[str, Any]) -> None:
        event.setdefault("event_id", _id("event"))
        validate_server_event(event)
        await self.ws.send_str(json.dumps(event))


class FakeUpstream:
    def __init__(self) -> None:
        self.conns: list[Conn] = []
        self.connected = asyncio.Event()
        self.created: list[dict[str, Any]] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self.app = web.Application()
        self.app.router.add_get("/v1/realtime", self._ws)

    @property
    def conn(self) -> Conn:
        return self.conns[-1]

    async def _ws(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(max_msg_size=32 * 1024 * 1024)
        await ws.prepare(request)
        session = {"type": "realtime", "model": REAL_MODEL, "instructions": "default",
                   "output_modalities": ["audio"],
                   "audio": {"input": {"format": {"type": "audio/pcm", "rate": 24000},
                                       "turn_detection": None},
                             "output": {"format": {"type": "audio/pcm", "rate": 24000},
                                        "voice": "alloy"}}}
        conn = Conn(ws, session, headers=dict(request.headers), query=dict(request.query))
        self.conns.append(conn)
        await conn.send({"type": "session.created", "session": session})
        self.connected.set()
        async for msg in ws:
            if msg.type != WSMsgType.TEXT:
                continue
            ev = json.loads(msg.data)
            validate_client_event(ev)
            conn.received.append(ev)
            await self._handle(conn, ev)
        return ws

    async def _handle(self, c: Conn, ev: dict[str, Any]) -> None:
        t = ev["type"]
        if t == "session.update":
            for k, v in ev["session"].items():
                c.session[k] = v
            await c.send({"type": "session.updated", "session": c.session})
        elif t == "input_audio_buffer.append":
            c.audio += base64.b64decode(ev["audio"])
        elif t == "response.cancel":
            if c.active is None:
                await c.send({"type": "error", "error": {
                    "type": "invalid_request_error", "code": "response_cancel_not_active",
                    "message": "no active response", "event_id": ev.get("event_id")}})
            else:
                c.cancelled.set()
        elif t == "response.create":
            if c.active is not None:
                await c.send({"type": "error", "error": {
                    "type": "invalid_request_error",
                    "code": "conversation_already_has_active_response",
                    "message": "active response in progress", "event_id": ev.get("event_id")}})
            else:
                self.created.append(ev)
                words = str((ev.get("response") or {}).get("instructions") or "okay")
                t = np.arange(7200) / 24000
                tone = (4000 * np.sin(2 * np.pi * 600 * t)).astype(np.int16)
                self._spawn(self._respond(c, tone.tobytes(), words, 100, 4.0))
        elif t == "conversation.item.truncate":
            await c.send({"type": "conversation.item.truncated", "item_id": ev["item_id"],
                          "content_index": 0, "audio_end_ms": ev["audio_end_ms"]})

    def say(self, pcm24: npt.NDArray[np.int16], transcript: str, chunk_ms: int = 100,
            speed: float = 0.0, encoding: str = "pcm") -> None:
        """Respond with this audio; ``speed`` x real time (0: as fast as possible).

        ``encoding="pcmu"``: send it as a µ-law session's upstream would, G.711 µ-law at 8 kHz
        (see :meth:`encode`)."""
        data = self.encode(pcm24, encoding)
        self._spawn(self._respond(self.conn, data, transcript, chunk_ms, speed,
                                  8 if encoding == "pcmu" else 48))

    @staticmethod
    def encode(pcm24: npt.NDArray[np.int16], encoding: str = "pcm") -> bytes:
        """The delta bytes :meth:`say` sends for this audio."""
        if encoding == "pcm":
            return pcm24.tobytes()
        if encoding != "pcmu":
            raise ValueError(f"unknown encoding {encoding!r}")
        from gateway.audio.g711 import ulaw_encode
        from gateway.audio.resample import down_24k_to_8k

        usable = len(pcm24) - len(pcm24) % 3
        return ulaw_encode(down_24k_to_8k().process(pcm24[:usable]))

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def transcribe(self, text: str) -> None:
        """The caller's utterance as the upstream's transcription model heard it."""
        iid = _id("item")
        await self.conn.send({
            "type": "conversation.item.input_audio_transcription.completed", "item_id": iid,
            "content_index": 0, "transcript": text,
            "usage": {"type": "duration", "seconds": 1.0}})

    async def speech_started(self) -> None:
        await self.conn.send({"type": "input_audio_buffer.speech_started", "audio_start_ms": 0,
                              "item_id": _id("item")})

    async def _respond(self, c: Conn, pcm: bytes, transcript: str, chunk_ms: int,
                       speed: float, bytes_per_ms: int = 48) -> None:
        rid, iid = _id("resp"), _id("item")
        c.active = rid
        c.cancelled.clear()
        base = {"id": rid, "object": "realtime.response",
                "output": [], "status": "in_progress"}
        await c.send({"type": "response.created", "response": base})
        item = {"id": iid, "type": "message", "role": "assistant", "status": "in_progress",
                "object": "realtime.item", "content": []}
        await c.send({"type": "response.output_item.added", "response_id": rid,
                      "output_index": 0, "item": item})
        await c.send({"type": "conversation.item.added", "item": item})
        part = {"type": "audio", "transcript": ""}
        await c.send({"type": "response.content_part.added", "response_id": rid,
                      "item_id": iid, "output_index": 0, "content_index": 0, "part": part})
        ids = {"response_id": rid, "item_id": iid, "output_index": 0, "content_index": 0}
        step = bytes_per_ms * chunk_ms
        # The transcript streams with the audio, as a real model's does: words spread evenly
        # over the audio chunks.
        words = transcript.split(" ")
        per = -(-len(words) // max(1, -(-len(pcm) // step)))
        status = "completed"
        for k, i in enumerate(range(0, len(pcm), step)):
            if c.cancelled.is_set():
                status = "cancelled"
                break
            chunk_words = words[k * per:(k + 1) * per]
            if chunk_words:
                await c.send({"type": "response.output_audio_transcript.delta", **ids,
                              "delta": (" " if k else "") + " ".join(chunk_words)})
            await c.send({"type": "response.output_audio.delta", **ids,
                          "delta": base64.b64encode(pcm[i:i + step]).decode()})
            await asyncio.sleep(chunk_ms / 1000 / speed if speed else 0)
        if status == "completed":
            await c.send({"type": "response.output_audio.done", **ids})
            await c.send({"type": "response.output_audio_transcript.done", **ids,
                          "transcript": transcript})
        done = dict(base, status=status)
        if status == "cancelled":
            done["status_details"] = {"type": "cancelled", "reason": "client_cancelled"}
        c.active = None
        await c.send({"type": "response.done", "response": done})

    async def close(self) -> None:
        for t in list(self._tasks):
            t.cancel()
        for t in list(self._tasks):
            # A reply still streaming when the gateway hung up on the upstream (the test's
            # call ended mid-reply) found its socket closing: that is the end of the test,
            # not a failure of it.
            with contextlib.suppress(asyncio.CancelledError, ConnectionError):
                await t


@contextlib.asynccontextmanager
async def running_fake() -> AsyncIterator[tuple[FakeUpstream, str]]:
    fake = FakeUpstream()
    runner = web.AppRunner(fake.app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield fake, f"ws://127.0.0.1:{port}/v1/realtime"
    finally:
        await fake.close()
        await runner.cleanup()
