"""The WebSocket leg: server programs speaking Realtime over a WebSocket to the gateway.

Unlike WebRTC, the client receives agent audio as ``response.output_audio.delta`` events
and owns playback (and so truncation), exactly as with OpenAI's WebSocket endpoint.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from typing import Any

from aiohttp import WSMsgType, web

from ..audio.formats import FRAME_BYTES, FRAME_MS, PCM_BYTES_PER_MS
from ..audio.rechunk import Rechunker
from ..errors import error_event
from .base import LegSink
from .playout import QueuedFrame

log = logging.getLogger("gateway.websocket")


class WebSocketLeg:
    transport = "websocket"
    forwards_audio_events = True
    audio_active = False

    def __init__(self, ws: web.WebSocketResponse, sink: LegSink, *, max_event_bytes: int,
                 queue_size: int = 2000) -> None:
        self.ws = ws
        self._sink = sink
        self._max_event_bytes = max_event_bytes
        self._queue: asyncio.Queue[str | None] = asyncio.Queue(queue_size)
        self._sender = asyncio.create_task(self._send_loop(), name="ws-leg-send")
        self._closed = False
        self._start = time.monotonic()
        self._agent_cursor_ms = 0.0
        self._chunkers: dict[str, Rechunker] = {}
        self._played: dict[str, float] = {}

    async def _send_loop(self) -> None:
        while (data := await self._queue.get()) is not None:
            try:
                await self.ws.send_str(data)
            except (ConnectionResetError, RuntimeError):
                return

    def send_event(self, event: dict[str, Any]) -> None:
        if self._closed:
            return
        try:
            self._queue.put_nowait(json.dumps(event, separators=(",", ":")))
        except asyncio.QueueFull:
            # The client reads slower than the model speaks: it is gone or stuck.
            log.warning("websocket client is not reading; ending the call")
            self._sink.on_leg_gone("client_too_slow")

    async def run(self) -> None:
        """Read client events until the socket closes."""
        async for msg in self.ws:
            if msg.type == WSMsgType.TEXT:
                if len(msg.data) > self._max_event_bytes:
                    self.send_event(error_event(
                        "event_too_large", f"Event of {len(msg.data)} bytes is over the limit "
                        f"of {self._max_event_bytes} bytes."))
                    continue
                self._sink.on_client_text(msg.data)
            elif msg.type == WSMsgType.BINARY:
                self.send_event(error_event("invalid_event", "Events must be JSON text."))
        self._sink.on_leg_gone("client_closed")

    # The client plays audio itself; the gateway places it in the recording in order of
    # arrival, never before real time (its best knowledge of when the client heard it).
    def play_audio(self, pcm: bytes, item_id: str, response_id: str) -> None:
        ch = self._chunkers.setdefault(item_id, Rechunker(FRAME_BYTES))
        for frame in ch.push(pcm):
            self._emit(QueuedFrame(frame, item_id, response_id, float(FRAME_MS)))

    def end_audio(self, item_id: str) -> None:
        ch = self._chunkers.pop(item_id, None)
        if ch is not None:
            pending = ch.pending
            tail = ch.flush()
            if tail is not None:
                self._emit(QueuedFrame(tail, item_id, "", pending / PCM_BYTES_PER_MS))

    def _emit(self, frame: QueuedFrame) -> None:
        now_ms = (time.monotonic() - self._start) * 1000
        self._agent_cursor_ms = max(self._agent_cursor_ms, now_ms)
        self._played[frame.item_id] = self._played.get(frame.item_id, 0.0) + frame.audio_ms
        self._sink.on_agent_frame(frame, self._agent_cursor_ms)
        self._agent_cursor_ms += FRAME_MS

    def interrupt(self) -> tuple[str | None, float]:
        return None, 0.0

    def played_ms(self, item_id: str) -> float:
        return self._played.get(item_id, 0.0)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(asyncio.QueueFull):
            self._queue.put_nowait(None)
        try:
            async with asyncio.timeout(2.0):
                await asyncio.shield(self._sender)
        except TimeoutError:
            self._sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sender
        await self.ws.close()
