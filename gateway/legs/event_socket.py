"""A WebSocket that carries Realtime events: a bounded send queue with one sender task, and
a reader that hands each text event on.

The WebSocket leg (a server program's call) and a sideband connection (a server attached to
someone else's call) both are one of these. A peer that stops reading fills the queue and is
reported gone (``on_gone("client_too_slow")``), never buffered without bound.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable
from typing import Any

from aiohttp import WSMsgType, web

from ..errors import error_event

log = logging.getLogger("gateway.websocket")


class EventSocket:
    def __init__(self, ws: web.WebSocketResponse, *, on_text: Callable[[str], None],
                 on_gone: Callable[[str], None], max_event_bytes: int,
                 queue_size: int = 2000,
                 on_error: Callable[[str, str], None] | None = None) -> None:
        self.ws = ws
        self._on_text = on_text
        #: Who answers a refused frame (code, message); by default a GA error event here.
        self._on_error = on_error or (lambda code, msg: self.send_event(error_event(code, msg)))
        self._on_gone = on_gone
        self._max_event_bytes = max_event_bytes
        self._queue: asyncio.Queue[str | None] = asyncio.Queue(queue_size)
        self._sender = asyncio.create_task(self._send_loop(), name="ws-send")
        self.closed = False

    async def _send_loop(self) -> None:
        while (data := await self._queue.get()) is not None:
            try:
                await self.ws.send_str(data)
            except (ConnectionResetError, RuntimeError):
                return

    def send_event(self, event: dict[str, Any]) -> None:
        if self.closed:
            return
        try:
            self._queue.put_nowait(json.dumps(event, separators=(",", ":")))
        except asyncio.QueueFull:
            # The peer reads slower than events come: it is gone or stuck.
            log.warning("websocket peer is not reading; ending it")
            self._on_gone("client_too_slow")

    async def run(self) -> None:
        """Read events until the socket closes."""
        async for msg in self.ws:
            if msg.type == WSMsgType.TEXT:
                if len(msg.data) > self._max_event_bytes:
                    self._on_error("event_too_large", f"Event of {len(msg.data)} bytes is "
                                   f"over the limit of {self._max_event_bytes} bytes.")
                    continue
                self._on_text(msg.data)
            elif msg.type == WSMsgType.BINARY:
                self._on_error("invalid_event", "Events must be JSON text.")
        self._on_gone("client_closed")

    async def close(self) -> None:
        if self.closed:
            return
        self.closed = True
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
