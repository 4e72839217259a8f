"""A GPT-Live WebSocket client (``/v1/live/sessions``): connect, ``session.start`` ->
``session.started``, send and receive Live events, close.

The transport is the Realtime client's (``client.UpstreamConnection``): one owned sender task
draining a bounded queue, audio appends dropped (and counted) under back-pressure, control
events never dropped, ``UpstreamError`` with ``retryable`` for every failure. What differs is
the protocol: no model in the URL (it goes in ``session.start``), the client speaks first,
audio is ``session.input_audio.append``, and Live errors name the command by
``client_event_id``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import aiohttp

from .client import (
    Event,
    UpstreamConnection,
    UpstreamError,
    gateway_event_id,
    open_websocket,
)

#: Live error types after which retrying the same ``session.start`` cannot help.
_CLIENT_ERROR_TYPES = frozenset({"invalid_request_error", "authentication_error",
                                 "permission_error"})


def live_url(base: str) -> str:
    """``wss://api.openai.com/v1`` (or a URL already ending in ``/live/sessions``) -> the
    Live WebSocket URL. Live takes no model query parameter."""
    trimmed = base.rstrip("/")
    return trimmed if trimmed.endswith("/live/sessions") else trimmed + "/live/sessions"


class LiveUpstreamConnection(UpstreamConnection):
    AUDIO_APPEND_PREFIX = '{"type":"session.input_audio.append","audio":"'

    def __init__(self, ws: aiohttp.ClientWebSocketResponse, queue_size: int,
                 on_drop: Callable[[], None] | None = None) -> None:
        super().__init__(ws, queue_size, on_drop)
        self.session: Event = {}  # the resolved session of session.started

    @classmethod
    async def open(cls, http: aiohttp.ClientSession, *, url: str, api_key: str,
                   timeout_s: float, queue_size: int = 250,
                   on_drop: Callable[[], None] | None = None) -> LiveUpstreamConnection:
        """Connect only; call ``start`` next (``connect`` does both)."""
        ws = await open_websocket(http, live_url(url), api_key, timeout_s)
        return cls(ws, queue_size, on_drop)

    @classmethod
    async def connect_live(cls, http: aiohttp.ClientSession, *, url: str, api_key: str,
                           session: Event, timeout_s: float, queue_size: int = 250,
                           on_drop: Callable[[], None] | None = None
                           ) -> LiveUpstreamConnection:
        """Connect and start: the returned connection's ``session`` is the started one. On a
        failed start the socket is closed before the error is raised."""
        conn = await cls.open(http, url=url, api_key=api_key, timeout_s=timeout_s,
                              queue_size=queue_size, on_drop=on_drop)
        try:
            await conn.start(session, timeout_s)
        except BaseException:
            await conn.close()
            raise
        return conn

    async def start(self, session: Event, timeout_s: float) -> Event:
        """Send ``session.start`` (``session`` is a Live ``SessionConfig``, model included)
        and wait for ``session.started``; returns the resolved session."""
        eid = gateway_event_id()
        self.send({"type": "session.start", "event_id": eid, "session": session})
        try:
            async with asyncio.timeout(timeout_s):
                while True:
                    ev = await self.recv()
                    if ev["type"] == "session.started":
                        self.session = dict(ev.get("session") or {})
                        return self.session
                    if ev["type"] == "error":
                        raise live_error(ev)
        except TimeoutError as e:
            raise UpstreamError("upstream_timeout", "The upstream did not start the Live "
                                "session in time.", retryable=True) from e

    def close_session(self) -> None:
        """Ask for ``session.closed`` (the upstream then closes the socket)."""
        self.send({"type": "session.close", "event_id": gateway_event_id()})


def live_error(ev: Event) -> UpstreamError:
    """A Live ``error`` event as an ``UpstreamError`` (client mistakes are not retryable)."""
    err = ev.get("error") or {}
    code = str(err.get("code") or err.get("type") or "upstream_error")
    kind = str(err.get("type") or "")
    return UpstreamError(code, str(err.get("message") or "Upstream error"),
                         retryable=kind not in _CLIENT_ERROR_TYPES)
