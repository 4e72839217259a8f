"""Setting up GPT-Live calls: the Live upstream, and a Live client's WebSocket call.

A Live WebSocket client speaks first (``session.start``), so unlike Realtime the client's
socket is open before the upstream: the route reads the start, and
:func:`run_live_websocket` connects the upstream with the merged session, joins the call
(recording, guards, tools, continuity: the factory's ``join``) and answers
``session.started``. WebRTC Live calls go through ``CallFactory.start_webrtc`` like Realtime
ones; the factory's ``connect_upstream`` comes here for every profile with ``api = "live"``
(phone calls included).
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any, Protocol

import aiohttp
from aiohttp import web

from gateway.cluster.registry import LocalCalls
from gateway.config import Config, Profile
from gateway.errors import ApiError
from gateway.legs.base import Leg
from gateway.legs.websocket import WebSocketLeg
from gateway.obs.metrics import Metrics, bounded
from gateway.tools.registry import ToolRegistry
from gateway.upstream.client import UpstreamConnection, UpstreamError
from gateway.upstream.live_client import LiveUpstreamConnection

from . import live_policy
from .live_client_events import LiveClientEvents
from .live_upstream_events import LiveUpstreamEvents
from .session import CallSession


class CallFactory(Protocol):
    """What Live call setup uses of :class:`gateway.call.factory.CallFactory` (which
    imports this module)."""

    config: Config
    metrics: Metrics
    http: aiohttp.ClientSession
    calls: LocalCalls
    tools: ToolRegistry

    def new_call_id(self) -> str: ...

    def call_closed(self, call: CallSession, reason: str) -> Awaitable[None]: ...

    def join(self, call: CallSession, leg: Leg, upstream: UpstreamConnection,
             effective: dict[str, Any], extra: dict[str, Any]) -> Awaitable[None]: ...

LIVE_DIALECT = "live"


def wire_of(session: dict[str, Any]) -> dict[str, Any]:
    """The upstream wire format: G.711 for a phone call's (Realtime-shaped) session,
    otherwise PCM16 24 kHz (what WebRTC decodes to and the Live WebSocket takes)."""
    fmt = ((session.get("audio") or {}).get("input") or {}).get("format") or {}
    kind = fmt.get("type") if isinstance(fmt, dict) else None
    if kind in ("audio/pcmu", "audio/pcma"):
        return {"type": kind, "rate": 8000}
    return dict(live_policy.PCM24)


async def connect_live(factory: CallFactory, profile: Profile, session: dict[str, Any]
                       ) -> tuple[UpstreamConnection, dict[str, Any]]:
    """A started Live upstream for ``session`` (Live-shaped, or a phone call's Realtime
    session); returns it with the upstream's ``SessionResource``."""
    up = factory.config.upstream
    live = session if session.get("type") != "realtime" else \
        live_policy.from_realtime(session, profile)
    conn = await LiveUpstreamConnection.connect_live(
        factory.http, url=up.live_sessions_url(),
        api_key=factory.config.secrets.openai_api_key.reveal(),
        session=live_policy.for_upstream(live, profile, wire_of(session)),
        timeout_s=up.connect_timeout_s, queue_size=up.send_queue_frames,
        on_drop=lambda: factory.metrics.upstream_errors.labels("send_queue_full").inc())
    return conn, conn.session


def check_dialect(profile: Profile, dialect: str) -> None:
    """A token minted for one API, spent on the other's route: refused (400)."""
    if (profile.api == "live") != (dialect == LIVE_DIALECT):
        raise ApiError(400, "unsupported_api", f"This credential is for "
                       f"{'GPT-Live' if dialect == LIVE_DIALECT else 'the Realtime API'}, but "
                       f"the agent profile '{profile.name}' speaks {profile.api}: use the "
                       "matching route (/v1/realtime or /v1/live/sessions).")


def live_rooms(call: CallSession) -> tuple[LiveClientEvents, LiveUpstreamEvents]:
    client, upstream = call.client_events, call.upstream_events
    assert isinstance(client, LiveClientEvents) and isinstance(upstream, LiveUpstreamEvents)
    return client, upstream


def new_live_call(factory: CallFactory, *, profile: Profile, session: dict[str, Any],
                  transport: str) -> CallSession:
    return CallSession(call_id=factory.new_call_id(), config=factory.config, profile=profile,
                       metrics=factory.metrics, transport=transport, dialect=LIVE_DIALECT,
                       session=session, tool_lookup=factory.tools.spec,
                       on_closed=factory.call_closed)


async def run_live_websocket(factory: CallFactory, ws: web.WebSocketResponse, *,
                             profile: Profile, session: dict[str, Any],
                             locked: frozenset[str], start_event_id: str | None,
                             extra: dict[str, Any]) -> None:
    """Serve one Live WebSocket call whose ``session.start`` was read and accepted.
    Raises :class:`ApiError` (before the call exists) when it cannot start."""
    factory.calls.reserve()
    call = new_live_call(factory, profile=profile, session=session, transport="websocket")
    try:
        upstream, resource = await connect_live(factory, profile, session)
    except UpstreamError as e:
        factory.calls.release_reservation()
        factory.metrics.call_setup_failures.labels("websocket", bounded(e.code)).inc()
        raise ApiError(502, e.code, f"The Live upstream is unavailable: {e.message}",
                       type_="server_error") from e
    except BaseException:
        factory.calls.release_reservation()
        raise
    client, room = live_rooms(call)
    client.locked = locked
    leg = WebSocketLeg(ws, call, max_event_bytes=factory.config.media.max_ws_event_bytes)
    await factory.join(call, leg, upstream, resource, extra)
    call.send_to_client(room.started_event(start_event_id))
    try:
        await leg.run()
    finally:
        await call.close(call.end_reason or "client_closed")
