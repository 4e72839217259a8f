"""GPT-Live's client surface (``/v1/live/…``), as OpenAI serves it, onto the gateway's calls.

- ``GET /v1/live/sessions``: WebSocket; the client sends ``session.start`` first (events
  before it are answered ``session_not_started``), the gateway starts the upstream with the
  profile's session merged under its locks and answers ``session.started``.
- ``POST /v1/live/sessions``: WebRTC (``client.live.create()``): JSON ``{session, transport:
  {type: "webrtc", sdp}}`` in, ``LiveCreateResponse`` out; ``session.started`` then arrives on
  the data channel. ``Authorization: Bearer rs_…`` resumes a dropped call (the token is in
  the ``X-Gateway-Resume-Token`` response header: Live's bodies have no room for it).
- ``POST /v1/live/client_secrets``: an ``ek_`` token bound to a Live session config (the SDK
  has no Live client-secret route; this mirrors ``/v1/realtime/client_secrets``).
- ``POST /v1/live/sessions/{id}/hangup`` ends the call; ``accept``/``reject``/``refer``
  (SIP), ``fork`` and ``content`` (stored sessions) are not served and say so.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from aiohttp import WSMsgType, web

from gateway.call import live_policy
from gateway.call.live_calls import LIVE_DIALECT, live_rooms, run_live_websocket
from gateway.call.live_client_events import LiveClientEvents
from gateway.call.policy import PolicyError
from gateway.call.session import CallSession
from gateway.call.sideband import Sideband
from gateway.config import Config, Profile
from gateway.errors import ApiError, bad_request
from gateway.ids import new_id

from .appkeys import CALLS, CONFIG, FACTORY, METRICS, TOKENS
from .cross_api import require_api
from .forwarding import forward_to_owner, forward_websocket
from .realtime_http import bearer, check_api_key, hang_up, read_json, ttl_from

log = logging.getLogger("gateway.live")
routes = web.RouteTableDef()

RESUME_HEADER = "X-Gateway-Resume-Token"
#: A Live client that never sends session.start is dropped after this long.
START_TIMEOUT_S = 30.0
#: Events before session.started answered with an error before the socket is closed.
MAX_EARLY_EVENTS = 50


def _profile_for(config: Config, model: Any) -> Profile:
    if not isinstance(model, str) or not model:
        raise PolicyError("session.model", "Missing required parameter: 'session.model'.",
                          code="missing_required_parameter")
    profile = config.profile_for_model(model, api="live")
    if profile is None:
        raise PolicyError("session.model", f"The model '{model}' is not offered here. Live "
                          f"models: {', '.join(_live_models(config)) or 'none'}.",
                          code="model_not_found")
    return profile


def _live_models(config: Config) -> list[str]:
    from .cross_api import offered

    return offered(config, "live")


async def _grant_session(request: web.Request, credential: str, requested: Any, *,
                         webrtc: bool) -> tuple[Profile, dict[str, Any], frozenset[str],
                                                dict[str, Any]]:
    """(profile, client-visible session, the client's locks, extra) for a Live start by an
    API key (trusted unless ``lock_api_keys``) or an ``ek_`` token (locks apply)."""
    app = request.app
    config = app[CONFIG]
    factory = app[FACTORY]
    req = requested if isinstance(requested, dict) else {}
    tokens = app[TOKENS]
    if tokens.looks_like_token(credential):
        grant = await tokens.redeem(credential)
        profile = config.profiles.get(grant.profile)
        if profile is None:
            raise ApiError(400, "model_not_found", "The token's agent profile no longer exists.")
        if grant.dialect != LIVE_DIALECT:
            raise ApiError(400, "unsupported_api", "This client secret was minted for the "
                           "Realtime API; mint one with POST /v1/live/client_secrets.")
        model = req.get("model")
        if isinstance(model, str) and not profile.matches_model(model):
            raise PolicyError("session.model", f"The client secret is bound to "
                              f"'{profile.model}'; '{model}' does not match it.",
                              code="invalid_value")
        base, locked, extra = grant.session, profile.locked_fields(), grant.extra
    else:
        check_api_key(config, credential)
        profile = _profile_for(config, req.get("model"))
        require_api(config, profile, "live", req.get("model"), "session.model")
        base = live_policy.base_session(profile)
        locked = profile.locked_fields() if profile.lock_api_keys else frozenset()
        extra = {}
    session = live_policy.apply_start(base, req, profile, factory.tools.spec, locked=locked,
                                      webrtc=webrtc)
    return profile, session, locked, extra


def _policy_api_error(e: PolicyError) -> ApiError:
    status = 400
    return ApiError(status, e.code, e.message, param=e.param)


# -- WebSocket ---------------------------------------------------------------------------


def _live_error(code: str, message: str, *, param: str | None = None,
                client_event_id: str | None = None, type_: str = "invalid_request_error"
                ) -> dict[str, Any]:
    error: dict[str, Any] = {"type": type_, "code": code, "message": message, "param": param}
    event: dict[str, Any] = {"type": "error", "event_id": new_id("event"), "error": error}
    if client_event_id is not None:
        error["client_event_id"] = client_event_id
        event["client_event_id"] = client_event_id
    return event


@routes.get("/v1/live/sessions")
async def live_ws(request: web.Request) -> web.StreamResponse:
    app = request.app
    config = app[CONFIG]
    if request.headers.get("Upgrade", "").lower() != "websocket":
        raise ApiError(400, "websocket_required", "GET /v1/live/sessions is a WebSocket "
                       "endpoint; browsers use POST /v1/live/sessions (WebRTC).")
    credential = bearer(request)
    if not app[TOKENS].looks_like_token(credential):
        check_api_key(config, credential)  # refuse a bad key before the upgrade, as OpenAI
    ws = web.WebSocketResponse(heartbeat=30.0, max_msg_size=config.media.max_ws_event_bytes,
                               compress=False)
    await ws.prepare(request)
    try:
        await _serve_live_ws(request, ws, credential)
    finally:
        if not ws.closed:
            await ws.close()
    return ws


async def _serve_live_ws(request: web.Request, ws: web.WebSocketResponse,
                         credential: str) -> None:
    factory = request.app[FACTORY]
    for _ in range(MAX_EARLY_EVENTS):
        try:
            msg = await ws.receive(timeout=START_TIMEOUT_S)
        except TimeoutError:
            return
        if msg.type != WSMsgType.TEXT:
            if msg.type == WSMsgType.BINARY:
                await ws.send_json(_live_error("invalid_type", "Binary frames are not "
                                               "supported: send client events as JSON text."))
                continue
            return
        start = await _read_start(ws, msg.data)
        if start is None:
            continue
        eid = start.get("event_id") if isinstance(start.get("event_id"), str) else None
        try:
            profile, session, locked, extra = await _grant_session(
                request, credential, start["session"], webrtc=False)
            await run_live_websocket(factory, ws, profile=profile, session=session,
                                     locked=locked, start_event_id=eid, extra=extra)
            return
        except PolicyError as e:
            await ws.send_json(_live_error(e.code, e.message, param=e.param,
                                           client_event_id=eid))
        except ApiError as e:
            await ws.send_json(_live_error(e.code, e.message, param=e.param,
                                           client_event_id=eid, type_=e.type))
            if e.status != 400:  # no slot, no upstream, a spent token: nothing to retry here
                return
    await ws.send_json(_live_error("session_not_started", "Too many events before "
                                   "session.start; closing."))


async def _read_start(ws: web.WebSocketResponse, text: str) -> dict[str, Any] | None:
    """The first event if it is a well-formed ``session.start``; else answers it."""
    try:
        event = json.loads(text)
    except ValueError:
        await ws.send_json(_live_error("invalid_json", "The event is not valid JSON."))
        return None
    if not isinstance(event, dict) or not isinstance(event.get("type"), str):
        await ws.send_json(_live_error("invalid_type", "An event must be a JSON object with a "
                                       "'type'.", param="type"))
        return None
    eid = event.get("event_id") if isinstance(event.get("event_id"), str) else None
    etype = event["type"]
    if etype not in live_policy.CLIENT_EVENTS:
        await ws.send_json(_live_error(
            "invalid_value", f"Invalid value: '{etype}'. Supported values are: "
            f"{', '.join(sorted(live_policy.CLIENT_EVENTS))}.", param="type",
            client_event_id=eid))
        return None
    if etype != "session.start":
        await ws.send_json(_live_error("session_not_started", "Send session.start and wait "
                                       f"for session.started before '{etype}'.",
                                       client_event_id=eid))
        return None
    try:
        live_policy.check_client_event(event)
    except PolicyError as e:
        await ws.send_json(_live_error(e.code, e.message, param=e.param, client_event_id=eid))
        return None
    return event


# -- WebRTC ------------------------------------------------------------------------------


def _offer(body: dict[str, Any]) -> str:
    transport = body.get("transport")
    if not isinstance(transport, dict):
        raise bad_request("missing_required_parameter", "Missing required parameter: "
                          "'transport'.", "transport")
    for key in transport:
        if key not in ("type", "sdp"):
            raise bad_request("unknown_parameter", f"Unknown parameter: 'transport.{key}'.",
                              f"transport.{key}")
    if transport.get("type") != "webrtc":
        raise bad_request("invalid_value", "transport.type must be 'webrtc'.", "transport.type")
    sdp = transport.get("sdp")
    if not isinstance(sdp, str) or not sdp.strip():
        raise bad_request("missing_required_parameter", "Missing required parameter: "
                          "'transport.sdp'.", "transport.sdp")
    return sdp


@routes.post("/v1/live/sessions")
async def live_create(request: web.Request) -> web.Response:
    app = request.app
    credential = bearer(request)
    body = await read_json(request)
    for key in body:
        if key not in ("session", "transport"):
            raise bad_request("unknown_parameter", f"Unknown parameter: '{key}'.", key)
    offer = _offer(body)
    factory = app[FACTORY]
    if credential.startswith("rs_"):
        if app[CALLS].by_resume_token(credential) is None and (
                fwd := await forward_to_owner(request, resume_token=credential)) is not None:
            return fwd
        call, answer = await factory.resume_webrtc(resume_token=credential, offer_sdp=offer)
        if call.dialect != LIVE_DIALECT:
            raise ApiError(400, "unsupported_api", "This resume token is for a Realtime call.")
        call.send_to_client(live_rooms(call)[1].started_event())
    else:
        if "session" not in body:
            raise bad_request("missing_required_parameter", "Missing required parameter: "
                              "'session'.", "session")
        try:
            profile, session, locked, extra = await _grant_session(
                request, credential, body["session"], webrtc=True)
        except PolicyError as e:
            raise _policy_api_error(e) from e
        call, answer = await factory.start_webrtc(offer_sdp=offer, profile=profile,
                                                  session=session, dialect=LIVE_DIALECT,
                                                  extra=extra)
        client, room = live_rooms(call)
        client.locked = locked
        call.send_to_client(room.started_event())
    return web.json_response({"session": {"id": call.call_id},
                              "transport": {"type": "webrtc", "sdp": answer}},
                             headers={RESUME_HEADER: call.resume_token})


# -- client secrets ----------------------------------------------------------------------


@routes.post("/v1/live/client_secrets")
async def live_client_secrets(request: web.Request) -> web.Response:
    app = request.app
    config = app[CONFIG]
    check_api_key(config, bearer(request))
    body = await read_json(request)
    for key in body:
        if key not in ("session", "expires_after", "recording_consent"):
            raise bad_request("unknown_parameter", f"Unknown parameter: '{key}'.", key)
    ttl = ttl_from(config, body.get("expires_after"))
    requested = body.get("session")
    if not isinstance(requested, dict):
        raise bad_request("missing_required_parameter", "Missing required parameter: "
                          "'session' (a Live session config with its model).", "session")
    consent = body.get("recording_consent")
    if consent is not None and not isinstance(consent, bool):
        raise bad_request("invalid_type", "recording_consent must be a boolean.",
                          "recording_consent")
    try:
        profile = _profile_for(config, requested.get("model"))
        require_api(config, profile, "live", requested.get("model"), "session.model")
        locked = profile.locked_fields() if profile.lock_api_keys else frozenset()
        session = live_policy.apply_start(live_policy.base_session(profile), requested,
                                          profile, app[FACTORY].tools.spec, locked=locked,
                                          webrtc=True)
    except PolicyError as e:
        raise _policy_api_error(e) from e
    value, expires_at = await app[TOKENS].mint(
        profile=profile.name, session=session, ttl_s=ttl, dialect=LIVE_DIALECT,
        extra={"recording_consent": consent})
    app[METRICS].tokens_minted.labels(LIVE_DIALECT).inc()
    return web.json_response({"value": value, "expires_at": expires_at, "session": session})


# -- session controls --------------------------------------------------------------------


@routes.post("/v1/live/sessions/{session_id}/hangup")
async def live_hangup(request: web.Request) -> web.Response:
    sid = request.match_info["session_id"]
    fwd = await hang_up(request, sid, missing=ApiError(
        404, "session_not_found", f"No live session with id '{sid[:64]}'."))
    return fwd if fwd is not None else web.Response(status=200)


_NOT_SERVED = {
    "accept": "SIP calls are not served by this gateway (phone calls arrive over Twilio "
              "Media Streams, see docs/twilio.md): there is no SIP session to accept.",
    "reject": "SIP calls are not served by this gateway: there is no SIP session to reject.",
    "refer": "SIP calls are not served by this gateway: there is no SIP session to refer.",
    "fork": "Forking needs a stored session (store: true); this gateway stores sessions as "
            "its own recordings (/admin/recordings), not as forkable Live sessions.",
}


async def _not_served(request: web.Request) -> web.Response:
    app = request.app
    check_api_key(app[CONFIG], bearer(request))
    sid = request.match_info["session_id"]
    action = request.path.rsplit("/", 1)[-1]
    if app[CALLS].get(sid) is None and (
            fwd := await forward_to_owner(request, call_id=sid)) is not None:
        return fwd
    if app[CALLS].get(sid) is None:
        raise ApiError(404, "session_not_found", f"No live session with id '{sid[:64]}'.")
    raise ApiError(400, "unsupported_operation", _NOT_SERVED[action], param="session_id")


for _action in _NOT_SERVED:
    routes.post(f"/v1/live/sessions/{{session_id}}/{_action}")(_not_served)


@routes.get("/v1/live/sessions/{session_id}/attach")
async def live_attach(request: web.Request) -> web.StreamResponse:
    """The app's server attaches to a live Live session (the SDK's
    ``client.live.sideband.connect(session_id=…)``): it hears the session's events and the
    caller's audio, and may send Live client events under the same policy."""
    app = request.app
    config = app[CONFIG]
    check_api_key(config, bearer(request))
    sid = request.match_info["session_id"]
    call = app[CALLS].get(sid)
    if not isinstance(call, CallSession) or call.closing:
        if (relayed := await forward_websocket(request, call_id=sid)) is not None:
            return relayed
        raise ApiError(404, "session_not_found", f"No live session with id '{sid[:64]}'.",
                       param="session_id")
    if not isinstance(call.client_events, LiveClientEvents):
        raise ApiError(400, "unsupported_api", "This session speaks the Realtime API: attach "
                       "with GET /v1/realtime?call_id=… instead.", param="session_id")
    limit = config.media.max_ws_event_bytes
    ws = web.WebSocketResponse(heartbeat=30.0, max_msg_size=limit, compress=False)
    await ws.prepare(request)
    await Sideband(ws, call, max_event_bytes=limit, check=call.client_events.check,
                   reflect_audio=True, greet=False).run()
    return ws


@routes.get("/v1/live/sessions/{session_id}/content")
async def live_content(request: web.Request) -> web.Response:
    check_api_key(request.app[CONFIG], bearer(request))
    raise ApiError(404, "not_found", "Live sessions are not stored upstream through this "
                   "gateway; its recordings are under /admin/recordings.")
