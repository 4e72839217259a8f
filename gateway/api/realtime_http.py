"""The OpenAI-compatible HTTP API: parse -> policy/registry -> reply."""

from __future__ import annotations

import hmac
import logging
from typing import Any

from aiohttp import BodyPartReader, web

from gateway.call import policy
from gateway.config import Config, Profile
from gateway.errors import ApiError, bad_request, unauthorized

from .appkeys import CALLS, CONFIG, FACTORY, METRICS, TOKENS
from .cross_api import require_api
from .forwarding import forward_to_owner
from .jsonbody import parse_json, read_body, read_json_object

log = logging.getLogger("gateway.signaling")
routes = web.RouteTableDef()


def bearer(request: web.Request) -> str:
    auth = request.headers.get("Authorization", "")
    scheme, _, value = auth.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        raise unauthorized("Missing bearer token in the Authorization header.",
                           code="missing_authorization")
    return value.strip()


def check_api_key(config: Config, key: str) -> None:
    ok = False
    for k in config.secrets.api_keys:
        ok |= hmac.compare_digest(k.reveal().encode(), key.encode())
    if not ok:
        raise unauthorized("Incorrect API key provided.")


def resolve_profile(config: Config, model: Any, param: str = "session.model",
                    api: str = "realtime") -> Profile:
    """The profile a client's model name picks (exact names, then patterns)."""
    if model is not None and not isinstance(model, str):
        raise bad_request("invalid_type", "model must be a string.", param)
    profile = config.profile_for_model(model, api=api)
    if profile is None:
        offered = ", ".join(config.offered_models())
        raise ApiError(400, "model_not_found", f"The model '{str(model)[:64]}' does not exist "
                       f"here. Offered: {offered}.", param=param)
    require_api(config, profile, "realtime", model, param)  # GPT-Live: docs/live.md
    return profile


def gateway_events_wanted(request: web.Request) -> bool:
    """The gateway's own ``gateway.*`` events go only to clients that ask (the project's
    browser client does, with ``?gateway_events=true``); OpenAI's clients never see them."""
    return request.query.get("gateway_events", "").lower() in ("1", "true", "yes")


async def read_json(request: web.Request) -> dict[str, Any]:
    if request.content_type != "application/json":
        raise ApiError(415, "unsupported_content_type",
                       "Send the body as application/json.")
    return await read_json_object(request)


def session_from_request(config: Config, factory: Any, session: Any
                         ) -> tuple[Profile, dict[str, Any]]:
    """The profile and effective session for a client's requested GA session config."""
    if session is None:
        session = {}
    if not isinstance(session, dict):
        raise bad_request("invalid_type", "session must be an object.", "session")
    transcription = policy.session_kind(session) == policy.TRANSCRIPTION
    # A transcription session names no model (its transcription model is in the session):
    # it runs under the default profile, whose locks it meets.
    profile = resolve_profile(config, None if transcription else session.get("model"))
    requested = {k: v for k, v in session.items() if k != "model" or transcription}
    base = policy.base_transcription_session(profile) if transcription else \
        factory.base_session(profile)
    try:
        # Whoever mints holds an API key: trusted like an OpenAI key holder, unless the
        # profile locks API keys too. What it sets is bound into the token.
        effective = policy.apply_update(base, requested, profile, factory.tools.spec,
                                        policy.API_KEY)
    except policy.PolicyError as e:
        raise ApiError(400, e.code, e.message, param=e.param) from e
    return profile, effective


def ttl_from(config: Config, expires_after: Any) -> int:
    cfg = config.tokens
    if expires_after is None:
        return cfg.default_ttl_s
    if not isinstance(expires_after, dict):
        raise bad_request("invalid_type", "expires_after must be an object.", "expires_after")
    if expires_after.get("anchor", "created_at") != "created_at":
        raise bad_request("invalid_value", "expires_after.anchor must be 'created_at'.",
                          "expires_after.anchor")
    seconds = expires_after.get("seconds", cfg.default_ttl_s)
    if not isinstance(seconds, int) or isinstance(seconds, bool) or not (
            cfg.min_ttl_s <= seconds <= cfg.max_ttl_s):
        raise bad_request("invalid_value", f"expires_after.seconds must be an integer from "
                          f"{cfg.min_ttl_s} to {cfg.max_ttl_s}.", "expires_after.seconds")
    return seconds


@routes.post("/v1/realtime/client_secrets")
async def client_secrets(request: web.Request) -> web.Response:
    app = request.app
    config = app[CONFIG]
    check_api_key(config, bearer(request))
    body = await read_json(request)
    ttl = ttl_from(config, body.get("expires_after"))
    profile, session = session_from_request(config, app[FACTORY], body.get("session"))
    consent = body.get("recording_consent")
    if consent is not None and not isinstance(consent, bool):
        raise bad_request("invalid_type", "recording_consent must be a boolean.",
                          "recording_consent")
    value, expires_at = await app[TOKENS].mint(profile=profile.name, session=session, ttl_s=ttl,
                                              extra={"recording_consent": consent})
    app[METRICS].tokens_minted.labels("ga").inc()
    kind = "realtime.transcription_session" if policy.session_kind(session) == \
        policy.TRANSCRIPTION else "realtime.session"
    shown = dict(policy.without_server_tools(session, profile, app[FACTORY].tools.spec),
                 id=f"sess_{value[-16:]}", object=kind, expires_at=expires_at)
    body = {"value": value, "expires_at": expires_at, "session": shown}
    if ice_servers := app[FACTORY].ice.client_ice_servers(user=shown["id"]):
        body["ice_servers"] = ice_servers  # extension: docs/networking.md
    return web.json_response(body)


async def read_sdp(request: web.Request) -> str:
    try:
        text = (await read_body(request)).decode("utf-8")
    except UnicodeDecodeError as e:
        raise bad_request("invalid_sdp", "The SDP offer is not UTF-8 text.") from e
    if not text.strip():
        raise bad_request("invalid_sdp", "The body is empty; send the SDP offer.")
    return text


@routes.post("/v1/realtime/calls")
async def create_call(request: web.Request) -> web.Response:
    app = request.app
    config = app[CONFIG]
    token = bearer(request)
    ctype = request.content_type
    if ctype == "application/sdp" and token.startswith("rs_"):
        if app[CALLS].by_resume_token(token) is None and (
                fwd := await forward_to_owner(request, resume_token=token)) is not None:
            return fwd
        call, answer = await app[FACTORY].resume_webrtc(
            resume_token=token, offer_sdp=await read_sdp(request),
            gateway_events=gateway_events_wanted(request))
        return web.Response(status=201, text=answer, content_type="application/sdp",
                            headers={"Location": f"/v1/realtime/calls/{call.call_id}"})
    if ctype == "application/sdp":
        tokens = app[TOKENS]
        if not tokens.looks_like_token(token):
            raise unauthorized("Send an ephemeral token (ek_…) with an application/sdp body, "
                               "or use multipart/form-data with an API key.", "invalid_token")
        grant = await tokens.redeem(token)
        profile = config.profiles.get(grant.profile)
        if profile is None:
            raise ApiError(400, "model_not_found", "The token's agent profile no longer exists.")
        session = grant.session
        extra = grant.extra
        offer = await read_sdp(request)
        trust = policy.TOKEN
    elif ctype == "multipart/form-data":
        check_api_key(config, token)
        offer, session_req = await read_multipart(request)
        profile, session = session_from_request(config, app[FACTORY], session_req)
        extra = {}
        trust = policy.API_KEY
    else:
        raise ApiError(415, "unsupported_content_type",
                       "Send the SDP offer as application/sdp (with an ephemeral token) or "
                       "multipart/form-data with parts 'sdp' and 'session' (with an API key).")
    call, answer = await app[FACTORY].start_webrtc(
        offer_sdp=offer, profile=profile, session=session, extra=extra, trust=trust,
        gateway_events=gateway_events_wanted(request))
    return web.Response(status=201, text=answer, content_type="application/sdp",
                        headers={"Location": f"/v1/realtime/calls/{call.call_id}"})


async def read_multipart(request: web.Request) -> tuple[str, Any]:
    try:
        reader = await request.multipart()
    except ValueError as e:  # no boundary in the Content-Type
        raise bad_request("invalid_multipart", "The multipart body has no boundary.") from e
    sdp: str | None = None
    session: Any = None
    limit = request.app[CONFIG].server.max_body_bytes
    while (part := await reader.next()) is not None:
        if not isinstance(part, BodyPartReader):
            raise bad_request("invalid_multipart", "Nested multipart bodies are not accepted.")
        data = await part.read(decode=False)
        if len(data) > limit:
            raise ApiError(413, "body_too_large", "A multipart field is over the size limit.")
        if part.name == "sdp":
            sdp = bytes(data).decode("utf-8", "replace")
        elif part.name == "session":
            session = parse_json(bytes(data), max_bytes=limit, param="session",
                                 what="The 'session' part")
    if not sdp:
        raise bad_request("missing_required_parameter", "The 'sdp' part is missing.", "sdp")
    return sdp, session


async def hang_up(request: web.Request, call_id: str, *, missing: ApiError
                  ) -> web.Response | None:
    """End ``call_id`` here or at its owner (API key); ``missing`` when no one has it.
    ``None``: ended here (each API answers in its own shape)."""
    app = request.app
    check_api_key(app[CONFIG], bearer(request))
    call = app[CALLS].get(call_id)
    if call is None:
        if (fwd := await forward_to_owner(request, call_id=call_id)) is not None:
            return fwd
        raise missing
    await call.close("hangup")
    return None


@routes.post("/v1/realtime/calls/{call_id}/hangup")
async def hangup(request: web.Request) -> web.Response:
    call_id = request.match_info["call_id"]
    fwd = await hang_up(request, call_id, missing=ApiError(
        404, "call_not_found", f"No live call with id '{call_id[:64]}'."))
    return fwd if fwd is not None else web.json_response({}, status=200)
