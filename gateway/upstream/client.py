"""A GA Realtime WebSocket client: connect, configure, send and receive events.

It knows the protocol and nothing about calls. Sends go through a bounded queue drained
by one owned task, so a slow upstream never blocks the media path: when the queue is full
audio appends are dropped (and counted) while control events still wait for room.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

import aiohttp

from ..ids import new_id

log = logging.getLogger("gateway.upstream")

Event = dict[str, Any]


class UpstreamError(Exception):
    """A failure talking to the upstream. ``retryable`` says whether a reconnect may help."""

    def __init__(self, code: str, message: str, *, retryable: bool) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.retryable = retryable


class UpstreamClosed(UpstreamError):
    def __init__(self, code: str = "upstream_closed", message: str = "Upstream closed",
                 *, retryable: bool = True) -> None:
        super().__init__(code, message, retryable=retryable)


#: Upstream error codes after which the session cannot go on.
FATAL_CODES = frozenset({"session_expired", "beta_api_shape_disabled", "invalid_api_key"})
GATEWAY_EVENT_PREFIX = "gw_"


def gateway_event_id() -> str:
    """The id of an event the gateway itself sends upstream: errors about it are never
    forwarded to the client (see ``CallSession._up_error``)."""
    return new_id(GATEWAY_EVENT_PREFIX + "evt")


def realtime_url(base: str, model: str) -> str:
    parts = urlsplit(base)
    query = parts.query + ("&" if parts.query else "") + urlencode({"model": model})
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, ""))


async def open_websocket(http: aiohttp.ClientSession, url: str, api_key: str,
                         timeout_s: float) -> aiohttp.ClientWebSocketResponse:
    """The upstream's WebSocket, or an ``UpstreamError`` saying whether a retry may help."""
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    try:
        return await asyncio.wait_for(
            http.ws_connect(url, headers=headers, heartbeat=20.0,
                            max_msg_size=32 * 1024 * 1024, compress=0),
            timeout_s)
    except TimeoutError as e:
        raise UpstreamError("upstream_timeout", "The upstream did not answer in time.",
                            retryable=True) from e
    except aiohttp.WSServerHandshakeError as e:
        retry = e.status >= 500 or e.status == 429
        raise UpstreamError("upstream_rejected",
                            f"The upstream refused the connection (HTTP {e.status}).",
                            retryable=retry) from e
    except (aiohttp.ClientError, OSError) as e:
        raise UpstreamError("upstream_unreachable", "The upstream is unreachable.",
                            retryable=True) from e


class UpstreamConnection:
    def __init__(self, ws: aiohttp.ClientWebSocketResponse, queue_size: int,
                 on_drop: Callable[[], None] | None = None) -> None:
        self._ws = ws
        self._queue: asyncio.Queue[str | None] = asyncio.Queue(queue_size)
        self._on_drop = on_drop
        self._sender = asyncio.create_task(self._send_loop(), name="upstream-send")
        self.closed = False

    @classmethod
    async def connect(cls, http: aiohttp.ClientSession, *, url: str, model: str, api_key: str,
                      timeout_s: float, queue_size: int = 250,
                      on_drop: Callable[[], None] | None = None) -> UpstreamConnection:
        ws = await open_websocket(http, realtime_url(url, model), api_key, timeout_s)
        return cls(ws, queue_size, on_drop)

    async def _send_loop(self) -> None:
        while True:
            data = await self._queue.get()
            if data is None:
                return
            try:
                await self._ws.send_str(data)
            except (ConnectionResetError, aiohttp.ClientError, RuntimeError):
                log.info("upstream send failed; the connection is closing")
                return

    def send(self, event: Event) -> None:
        """Queue a control event. Control events are small and rare; they are never dropped
        (the queue grows by at most a few entries past its bound)."""
        if self.closed:
            return
        data = json.dumps(event, separators=(",", ":"))
        try:
            self._queue.put_nowait(data)
        except asyncio.QueueFull:
            # Make room by dropping the oldest queued message, which under back-pressure is
            # an audio append; losing one beats reordering control events behind audio.
            with contextlib.suppress(asyncio.QueueEmpty):
                self._queue.get_nowait()
            if self._on_drop:
                self._on_drop()
            self._queue.put_nowait(data)

    #: The JSON an audio append starts with; ``send_audio`` appends the base64 and ``"}``.
    AUDIO_APPEND_PREFIX = '{"type":"input_audio_buffer.append","audio":"'

    def send_audio(self, b64audio: str) -> bool:
        """Queue an audio append; False (dropped) when the upstream lags."""
        if self.closed:
            return False
        if self._queue.full():
            if self._on_drop:
                self._on_drop()
            return False
        self._queue.put_nowait(self.AUDIO_APPEND_PREFIX + b64audio + '"}')
        return True

    async def recv(self) -> Event:
        while True:
            msg = await self._ws.receive()
            if msg.type == aiohttp.WSMsgType.TEXT:
                try:
                    event = json.loads(msg.data)
                except ValueError:
                    log.warning("upstream sent a non-JSON message; ignored")
                    continue
                if isinstance(event, dict) and isinstance(event.get("type"), str):
                    return event
                log.warning("upstream sent a message without a type; ignored")
                continue
            if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSING,
                            aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR):
                code = self._ws.close_code
                self.closed = True
                raise UpstreamClosed(message=f"Upstream closed the connection (code {code}).",
                                     retryable=code not in (4000, 1008))

    async def handshake(self, session: Event, timeout_s: float) -> Event:
        """Wait for ``session.created``, apply ``session``, return the effective session."""
        async with asyncio.timeout(timeout_s):
            first = await self.recv()
            if first["type"] == "error":
                raise _error_from_event(first)
            if first["type"] != "session.created":
                raise UpstreamError("upstream_protocol",
                                    "The upstream did not start with session.created.",
                                    retryable=False)
            eid = gateway_event_id()
            self.send({"type": "session.update", "event_id": eid, "session": session})
            while True:
                ev = await self.recv()
                if ev["type"] == "session.updated":
                    return dict(ev.get("session") or {})
                if ev["type"] == "error":
                    raise _error_from_event(ev)

    async def close(self) -> None:
        if not self._sender.done():
            self.closed = True
            with contextlib.suppress(asyncio.QueueFull):
                self._queue.put_nowait(None)
            try:
                async with asyncio.timeout(1.0):
                    await asyncio.shield(self._sender)
            except TimeoutError:
                self._sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sender
        self.closed = True
        await self._ws.close()


def _error_from_event(ev: Event) -> UpstreamError:
    err = ev.get("error") or {}
    code = str(err.get("code") or err.get("type") or "upstream_error")
    return UpstreamError(code, str(err.get("message") or "Upstream error"),
                         retryable=code not in FATAL_CODES)
