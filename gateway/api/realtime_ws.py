"""Realtime over WebSocket (GA and beta) and the beta-era WebRTC endpoints."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from gateway.config import Config, Profile
from gateway.errors import ApiError, bad_request, unauthorized
from gateway.upstream.dialect_checks import DialectError
from gateway.upstream.dialect_session import (
    beta_session_create_request_to_ga,
    ga_client_secret_to_beta_session_response,
)

from .appkeys import CONFIG, FACTORY, METRICS, TOKENS
from .realtime_http import (
    check_api_key,
    read_json,
    read_sdp,
    resolve_profile,
    session_from_request,
    ttl_from,
)

routes = web.RouteTableDef()

INSECURE_KEY_PROTOCOL = "openai-insecure-api-key."
BETA_PROTOCOL = "openai-beta.realtime-v1"


def _offered_protocols(request: web.Request) -> list[str]:
    raw = request.headers.get("Sec-WebSocket-Protocol", "")
    return [p.strip() for p in raw.split(",") if p.strip()]


def _credential(request: web.Request) -> str:
    auth = request.headers.get("Authorization", "")
    scheme, _, value = auth.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    for p in _offered_protocols(request):
        if p.startswith(INSECURE_KEY_PROTOCOL):
            return p[len(INSECURE_KEY_PROTOCOL):]
    raise unauthorized("Missing credentials: send 'Authorization: Bearer …' or the "
                       "'openai-insecure-api-key.<token>' subprotocol.", "missing_authorization")


def _is_beta(request: web.Request) -> bool:
    beta_header = "realtime=v1" in request.headers.get("OpenAI-Beta", "").replace(" ", "")
    return beta_header or BETA_PROTOCOL in _offered_protocols(request)


async def _grant_or_key(request: web.Request, config: Config, model: str | None
                        ) -> tuple[Profile, dict[str, Any], str | None]:
    """Profile and session from an ``ek_`` token or an API key (+ ``?model=``)."""
    cred = _credential(request)
    tokens = request.app[TOKENS]
    if tokens.looks_like_token(cred):
        grant = await tokens.redeem(cred)
        profile = config.profiles.get(grant.profile)
        if profile is None:
            raise ApiError(400, "model_not_found", "The token's agent profile no longer exists.")
        return profile, grant.session, grant.dialect
    check_api_key(config, cred)
    profile = resolve_profile(config, model, param="model")
    return profile, request.app[FACTORY].base_session(profile), None


@routes.get("/v1/realtime")
async def realtime_ws(request: web.Request) -> web.StreamResponse:
    app = request.app
    config = app[CONFIG]
    if request.headers.get("Upgrade", "").lower() != "websocket":
        raise ApiError(400, "websocket_required", "GET /v1/realtime is a WebSocket endpoint.")
    if request.query.get("intent") == "transcription":
        raise bad_request("unsupported_intent", "Transcription-only sessions are not offered.",
                          "intent")
    model = request.query.get("model")
    profile, session, token_dialect = await _grant_or_key(request, config, model)
    dialect = "beta" if _is_beta(request) else (token_dialect or "ga")
    return await app[FACTORY].run_websocket(request, profile=profile, session=session,
                                            dialect=dialect)


@routes.post("/v1/realtime/sessions")
async def beta_sessions(request: web.Request) -> web.Response:
    """Beta: mint an ephemeral key; answers the beta session object with ``client_secret``."""
    app = request.app
    config = app[CONFIG]
    auth = request.headers.get("Authorization", "")
    check_api_key(config, auth.partition(" ")[2].strip() if auth.lower().startswith("bearer ")
                  else "")
    body = await read_json(request)
    model = body.get("model")
    try:
        ga_body, _ignored = beta_session_create_request_to_ga(
            {k: v for k, v in body.items() if k != "model"})
    except DialectError as e:
        raise ApiError(400, e.code, e.message, param=e.param) from e
    profile = resolve_profile(config, model, param="model")
    ga_session = dict(ga_body["session"], model=profile.model)
    profile, session = session_from_request(config, app[FACTORY], ga_session)
    ttl = ttl_from(config, ga_body.get("expires_after"))
    value, expires_at = await app[TOKENS].mint(profile=profile.name, session=session, ttl_s=ttl,
                                              dialect="beta")
    app[METRICS].tokens_minted.labels("beta").inc()
    shown = dict(session, id=f"sess_{value[-16:]}", expires_at=expires_at)
    out = ga_client_secret_to_beta_session_response(value, expires_at, shown)
    if isinstance(model, str):
        out["model"] = model  # beta clients see the model name they asked for
    return web.json_response(out)


@routes.post("/v1/realtime")
async def beta_sdp(request: web.Request) -> web.Response:
    """Beta WebRTC: SDP offer in, answer out; the call's data channel speaks beta."""
    app = request.app
    config = app[CONFIG]
    if request.content_type != "application/sdp":
        raise ApiError(415, "unsupported_content_type", "Send the SDP offer as application/sdp.")
    profile, session, _ = await _grant_or_key(request, config, request.query.get("model"))
    offer = await read_sdp(request)
    call, answer = await app[FACTORY].start_webrtc(offer_sdp=offer, profile=profile,
                                                   session=session, dialect="beta")
    return web.Response(status=201, text=answer, content_type="application/sdp",
                        headers={"Location": f"/v1/realtime/calls/{call.call_id}"})

