"""Phone calls through Twilio Media Streams: the TwiML webhook and the media WebSocket.

``POST /twilio/incoming`` checks Twilio's signature, mints a short-lived single-use call
token bound to the call (profile, µ-law session, caller, CallSid) and answers
``<Connect><Stream>``; the token travels back in ``start.customParameters`` (a stream URL
may carry no query string: Twilio error 31920), and is spent before any audio goes upstream.
The leg itself is :mod:`gateway.legs.twilio_leg`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import WSMsgType, web
from multidict import MultiDict
from twilio.request_validator import (
    SIGNATURE_HEADER,
    SIGNATURE_SETTINGS_HEADER,
    RequestValidator,
    get_signature_algorithm,
)
from twilio.twiml.voice_response import Connect, VoiceResponse

from gateway.call import policy
from gateway.call.session import CallSession
from gateway.config import Config
from gateway.errors import ApiError
from gateway.legs.twilio_leg import TwilioLeg, as_int
from gateway.upstream.client import UpstreamError, gateway_event_id

from .appkeys import CALLS, CONFIG, FACTORY, METRICS, TOKENS
from .tokens import Grant

log = logging.getLogger("gateway.twilio")

routes = web.RouteTableDef()

INCOMING_PATH = "/twilio/incoming"
STREAM_PATH = "/twilio/media-stream"
#: Time from the webhook's answer to the stream's ``start``: Twilio connects within a second
#: or two, so a minute is generous and still bounds a leaked token.
TOKEN_TTL_S = 60
#: A socket that has not sent ``start`` by then is not a Twilio stream worth waiting for.
START_TIMEOUT_S = 10.0
#: Twilio's messages are small (a media frame is ~300 bytes, ``start`` a few KB).
MAX_MESSAGE_BYTES = 64 * 1024
MULAW_FORMAT = {"type": "audio/pcmu"}
#: Environment switches until they are config keys (see docs/twilio.md).
TRANSCODE_ENV = "GATEWAY_TWILIO_TRANSCODE"
DTMF_ENV = "GATEWAY_TWILIO_DTMF"


def transcode_enabled() -> bool:
    """True: upstream gets PCM 24 kHz (transcoded here) instead of µ-law passed through."""
    return os.environ.get(TRANSCODE_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def dtmf_mode() -> str:
    """``note`` (default): digits go to the transcript; ``input``: also to the model."""
    mode = os.environ.get(DTMF_ENV, "note").strip().lower()
    return mode if mode in ("note", "input") else "note"


# -- URLs and signatures ------------------------------------------------------------------

def _first(header: str | None) -> str:
    return (header or "").split(",")[0].strip()


def public_base(request: web.Request, config: Config) -> str:
    """``scheme://host[/prefix]`` as Twilio sees the gateway (an https form)."""
    if config.server.public_url:
        return config.server.public_url.rstrip("/")
    # Behind a TLS terminator Twilio signs the https URL it called, not what reached us.
    proto = _first(request.headers.get("X-Forwarded-Proto")).lower() or request.scheme
    proto = {"wss": "https", "ws": "http"}.get(proto, proto)
    host = _first(request.headers.get("X-Forwarded-Host")) or request.host
    return f"{proto}://{host}"


def _ws_form(base: str) -> str:
    if base.startswith("https://"):
        return "wss://" + base[len("https://"):]
    if base.startswith("http://"):
        return "ws://" + base[len("http://"):]
    return base


def stream_url(request: web.Request, config: Config) -> str:
    url = _ws_form(public_base(request, config)) + STREAM_PATH
    if not url.startswith("wss://"):
        log.warning("stream URL %s is not wss://: Twilio will refuse it (error 31922)", url)
    return url


def _validator(config: Config) -> RequestValidator:
    token = config.secrets.twilio_auth_token
    if not token:
        raise ApiError(503, "twilio_not_configured", "twilio not configured",
                       type_="server_error")
    return RequestValidator(token.reveal())


def _setup_failed(request: web.Request, code: str) -> None:
    request.app[METRICS].call_setup_failures.labels("twilio", code).inc()


def _refuse_signature(request: web.Request) -> ApiError:
    _setup_failed(request, "invalid_signature")
    log.warning("twilio request with a missing or wrong signature: %s %s", request.method,
                request.path)
    return ApiError(403, "invalid_signature",
                    "The X-Twilio-Signature header is missing or does not match the request.",
                    type_="invalid_request_error")


# -- the webhook ----------------------------------------------------------------------------

@routes.post(INCOMING_PATH)
async def incoming(request: web.Request) -> web.Response:
    """Twilio asks what to do with a call: check it is Twilio, then connect a stream."""
    app = request.app
    config = app[CONFIG]
    validator = _validator(config)
    form = await request.post()
    params: MultiDict[str] = MultiDict((k, v) for k, v in form.items() if isinstance(v, str))
    signature = request.headers.get(SIGNATURE_HEADER, "")
    url = public_base(request, config) + request.raw_path
    algorithm = get_signature_algorithm(request.headers.get(SIGNATURE_SETTINGS_HEADER))
    if not signature or not validator.validate(url, params, signature, algorithm):
        raise _refuse_signature(request)
    name = request.query.get("profile") or config.default_profile
    profile = config.profiles.get(name)
    if profile is None:
        _setup_failed(request, "unknown_profile")
        raise ApiError(404, "unknown_profile", f"No agent profile named '{name}'.",
                       param="profile")
    reply = VoiceResponse()
    calls = app[CALLS]
    if calls.draining or len(calls) >= calls.max_calls:
        _setup_failed(request, "at_capacity")
        reply.reject(reason="busy")
        return web.Response(text=str(reply), content_type="text/xml")
    factory = app[FACTORY]
    session = policy.base_session(profile, factory.tools.spec,
                                  audio_format=None if transcode_enabled() else MULAW_FORMAT)
    caller, call_sid = params.get("From", ""), params.get("CallSid", "")
    token, _ = await app[TOKENS].mint(profile=profile.name, session=session, ttl_s=TOKEN_TTL_S,
                                      extra={"caller": caller, "call_sid": call_sid})
    connect = Connect()
    stream = connect.stream(url=stream_url(request, config))
    stream.parameter(name="token", value=token)
    stream.parameter(name="profile", value=profile.name)
    reply.append(connect)
    log.info("twilio call %s answered with profile %s", call_sid or "-", profile.name)
    return web.Response(text=str(reply), content_type="text/xml")


# -- the media stream -----------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class StreamStart:
    stream_sid: str
    call_sid: str
    token: str
    profile: str


def _handshake_ok(request: web.Request, config: Config, signature: str) -> bool:
    validator = _validator(config)
    base = public_base(request, config)
    # Which form Twilio signs for the upgrade is not documented: the wss:// URL from the
    # TwiML is expected, the https:// form is what a webhook would be signed with.
    return any(validator.validate(b + request.raw_path, {}, signature)
               for b in (_ws_form(base), base))


def parse_start(msg: dict[str, Any]) -> StreamStart | str:
    """The ``start`` message's facts, or the code of what is wrong with it."""
    body = msg.get("start")
    if not isinstance(body, dict):
        return "invalid_start"
    sid = msg.get("streamSid") or body.get("streamSid")
    if not isinstance(sid, str) or not sid:
        return "invalid_start"
    fmt = body.get("mediaFormat")
    if isinstance(fmt, dict) and (fmt.get("encoding") != "audio/x-mulaw"
                                  or as_int(fmt.get("sampleRate")) != 8000
                                  or as_int(fmt.get("channels")) not in (None, 1)):
        return "unsupported_media_format"
    params = body.get("customParameters")
    token = params.get("token") if isinstance(params, dict) else None
    if not isinstance(token, str) or not token:
        return "missing_token"
    profile = params.get("profile") if isinstance(params, dict) else None
    call_sid = body.get("callSid")
    return StreamStart(sid, call_sid if isinstance(call_sid, str) else "", token,
                       profile if isinstance(profile, str) else "")


async def _await_start(ws: web.WebSocketResponse) -> StreamStart | str:
    """Read until ``start``: ``connected`` comes first; media before start is dropped."""
    try:
        async with asyncio.timeout(START_TIMEOUT_S):
            async for msg in ws:
                if msg.type != WSMsgType.TEXT:
                    continue
                try:
                    data = json.loads(msg.data)
                except ValueError:
                    continue
                if isinstance(data, dict) and data.get("event") == "start":
                    return parse_start(data)
                if isinstance(data, dict) and data.get("event") == "media":
                    log.warning("twilio media before start: ignored")
    except TimeoutError:
        return "start_timeout"
    return "closed_before_start"


async def _redeem(request: web.Request, start: StreamStart) -> Grant | str:
    app = request.app
    try:
        grant = await app[TOKENS].redeem(start.token)
    except ApiError as e:
        return e.code
    expected = str(grant.extra.get("call_sid") or "")
    if expected and start.call_sid != expected:
        # A token minted for one call cannot carry another.
        return "call_sid_mismatch"
    if grant.profile not in app[CONFIG].profiles:
        return "unknown_profile"
    return grant


def _dtmf_handler(call: CallSession, mode: str) -> Callable[[str], None]:
    def on_digit(digit: str) -> None:
        call.note("dtmf", digit=digit)
        if mode != "input" or call.upstream is None:
            return
        call.upstream.send({"type": "conversation.item.create",
                            "event_id": gateway_event_id(),
                            "item": {"type": "message", "role": "user", "content": [
                                {"type": "input_text",
                                 "text": f"The caller pressed {digit} on the keypad."}]}})
        if call.active_response is None:
            call.upstream.send({"type": "response.create",
                                "event_id": gateway_event_id()})

    return on_digit


@routes.get(STREAM_PATH)
async def media_stream(request: web.Request) -> web.StreamResponse:
    app = request.app
    config = app[CONFIG]
    _validator(config)
    if request.headers.get("Upgrade", "").lower() != "websocket":
        raise ApiError(400, "websocket_required", f"GET {STREAM_PATH} is a WebSocket endpoint.")
    signature = request.headers.get(SIGNATURE_HEADER)
    if signature is not None and not _handshake_ok(request, config, signature):
        raise _refuse_signature(request)
    ws = web.WebSocketResponse(max_msg_size=MAX_MESSAGE_BYTES, timeout=2.0, compress=False)
    await ws.prepare(request)
    start = await _await_start(ws)
    grant = await _redeem(request, start) if isinstance(start, StreamStart) else start
    if not isinstance(grant, Grant) or not isinstance(start, StreamStart):
        _setup_failed(request, str(grant))
        log.warning("twilio stream refused: %s", grant)
        await ws.close(code=1008, message=b"call refused")
        return ws
    await _run_call(request, ws, start, grant)
    return ws


async def _run_call(request: web.Request, ws: web.WebSocketResponse, start: StreamStart,
                    grant: Grant) -> None:
    app = request.app
    config = app[CONFIG]
    factory = app[FACTORY]
    profile = config.profiles[grant.profile]
    try:
        factory.calls.reserve()
    except ApiError as e:
        _setup_failed(request, e.code)
        await ws.close(code=1013, message=b"try again later")
        return
    call = CallSession(call_id=factory.new_call_id(), config=config, profile=profile,
                       metrics=factory.metrics, transport="twilio", dialect="ga",
                       session=grant.session, tool_lookup=factory.tools.spec,
                       on_closed=factory.call_closed)
    try:
        upstream, effective = await factory.connect_upstream(profile, grant.session)
    except UpstreamError as e:
        factory.calls.release_reservation()
        _setup_failed(request, e.code)
        log.warning("twilio call %s: upstream unavailable: %s", start.call_sid, e.code)
        await ws.close(code=1011, message=b"upstream unavailable")
        return
    except BaseException:
        factory.calls.release_reservation()
        await ws.close()
        raise
    caller = str(grant.extra.get("caller") or "")
    call.caller = caller or None
    leg = TwilioLeg(ws, call, stream_sid=start.stream_sid, wire_format=call.wire_format,
                    max_buffer_s=config.media.outbound_buffer_s,
                    dead_peer_s=config.media.dead_peer_s,
                    on_dtmf=_dtmf_handler(call, dtmf_mode()), caller=caller,
                    call_sid=start.call_sid)
    extra = {"caller": caller, "call_sid": start.call_sid, "stream_sid": start.stream_sid}
    try:
        await factory.join(call, leg, upstream, effective, extra)
        log.info("twilio call %s is %s", start.call_sid or "-", call.call_id)
        await leg.run()
    finally:
        await call.close(call.end_reason or "client_closed")
        await leg.close()  # idempotent; covers a join that failed before attach
        if call.upstream is None:
            await upstream.close()


__all__ = ["routes"]
