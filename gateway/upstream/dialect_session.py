"""Session configuration between the retired beta shape and GA (protocol notes §1.6-§1.9).

GA sessions need ``type: "realtime" | "transcription"`` and nest audio settings; beta
sessions are flat (the per-field converters live in ``dialect_fields``). Also the two
token endpoints: a beta ``POST /v1/realtime/sessions`` body becomes a GA
``client_secrets`` body, and a GA client secret becomes the beta response.

Pure code: no I/O, no asyncio; inputs are never mutated.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from typing import Any

from .dialect_checks import (
    DialectError,
    ErrorCode,
    Json,
    expect_dict,
    expect_enum,
    expect_int,
    reject_unknown,
    require,
)
from .dialect_fields import (
    Move,
    Walk,
    as_copy,
    as_number,
    as_str,
    audio_format_beta_to_ga,
    audio_format_ga_to_beta,
    dict_or_empty,
    max_tokens_beta_to_ga,
    modalities_beta_to_ga,
    modalities_ga_to_beta,
    noise_reduction_beta_to_ga,
    noise_reduction_ga_to_beta,
    tool_choice_beta_to_ga,
    tool_choice_ga_to_beta,
    tools_beta_to_ga,
    tools_ga_to_beta,
    tracing_beta_to_ga,
    transcription_beta_to_ga,
    transcription_ga_to_beta,
    translate_fields,
    turn_detection_beta_to_ga,
    turn_detection_ga_to_beta,
    voice_beta_to_ga,
    voice_ga_to_beta,
)

#: The closed ``model`` enum of the beta ``Session`` type; other names are left out of
#: beta session objects so a strict beta parser does not reject the whole event.
BETA_MODELS = frozenset({
    "gpt-realtime", "gpt-realtime-2025-08-28", "gpt-4o-realtime-preview",
    "gpt-4o-realtime-preview-2024-10-01", "gpt-4o-realtime-preview-2024-12-17",
    "gpt-4o-realtime-preview-2025-06-03", "gpt-4o-mini-realtime-preview",
    "gpt-4o-mini-realtime-preview-2024-12-17",
})
#: Beta tokens from ``POST /v1/realtime/sessions`` lived one minute unless the body said
#: otherwise ("Currently, all tokens expire after one minute"); GA's default is 600 s.
BETA_DEFAULT_TOKEN_TTL_S = 60
# -- beta -> GA sessions -----------------------------------------------------------------

_SESSION_MOVES: Mapping[str, Move] = {
    "model": Move("", "model", as_str),
    "instructions": Move("", "instructions", as_str),
    "modalities": Move("", "output_modalities", modalities_beta_to_ga),
    "input_audio_format": Move("input", "format", audio_format_beta_to_ga),
    "input_audio_transcription": Move("input", "transcription", transcription_beta_to_ga, True),
    "input_audio_noise_reduction": Move("input", "noise_reduction",
                                        noise_reduction_beta_to_ga, True),
    "turn_detection": Move("input", "turn_detection", turn_detection_beta_to_ga, True),
    "output_audio_format": Move("output", "format", audio_format_beta_to_ga),
    "voice": Move("output", "voice", voice_beta_to_ga),
    "speed": Move("output", "speed", as_number),
    "tools": Move("", "tools", tools_beta_to_ga),
    "tool_choice": Move("", "tool_choice", tool_choice_beta_to_ga),
    "max_response_output_tokens": Move("", "max_output_tokens", max_tokens_beta_to_ga),
    "tracing": Move("", "tracing", tracing_beta_to_ga, True),
    # Not in the beta realtime Session type, but beta transcription sessions had it with
    # the same meaning, and GA realtime sessions accept it unchanged.
    "include": Move("", "include", as_copy("list")),
}
#: Beta fields accepted and dropped: GA has no sampling temperature; the others are the
#: read-only parts of a beta session object that clients echo back in session.update,
#: and ``client_secret`` only means something on ``POST /v1/realtime/sessions``.
SESSION_IGNORED = ("temperature", "client_secret", "id", "object", "expires_at")

_TRANSCRIPTION_MOVES: Mapping[str, Move] = {
    key: _SESSION_MOVES[key] for key in (
        "input_audio_format", "input_audio_transcription", "input_audio_noise_reduction",
        "turn_detection", "include")
}
#: A transcription session has no output, so beta ``modalities`` says nothing there.
TRANSCRIPTION_IGNORED = ("modalities", "client_secret", "id", "object", "expires_at")

_SESSION_GA_ONLY: Mapping[str, str] = {
    "type": "Beta session objects have no 'type'; the gateway adds it.",
    "audio": "Use the flat beta fields (input_audio_format, output_audio_format, voice, speed, "
             "input_audio_transcription, input_audio_noise_reduction, turn_detection).",
    "output_modalities": "Use 'modalities'.",
    "max_output_tokens": "Use 'max_response_output_tokens'.",
    "truncation": "The beta dialect has no truncation setting.",
    "prompt": "The beta dialect has no stored prompts.",
    "reasoning": "The beta dialect has no reasoning setting.",
    "parallel_tool_calls": "The beta dialect has no parallel_tool_calls setting.",
}


def _session(session: Any, w: Walk, moves: Mapping[str, Move], ignored: Collection[str],
             ga_type: str) -> Json:
    obj = expect_dict(session, w.prefix)
    reject_unknown(obj, (*moves, *ignored), w.prefix, _SESSION_GA_ONLY)
    return {"type": ga_type, **translate_fields(obj, moves, w, ignored)}


def session_beta_to_ga(session: Json, *, param_prefix: str = "session"
                       ) -> tuple[Json, list[str]]:
    """A beta realtime session config -> (GA config with ``type:"realtime"``, ignored fields).

    Ignored fields are paths relative to the session (``temperature``,
    ``turn_detection.eagerness``). Raises :class:`DialectError` for malformed input.
    """
    w = Walk(param_prefix)
    return _session(session, w, _SESSION_MOVES, SESSION_IGNORED, "realtime"), w.ignored


def transcription_session_beta_to_ga(session: Json, *, param_prefix: str = "session"
                                     ) -> tuple[Json, list[str]]:
    """A beta ``transcription_session.update`` session -> GA ``type:"transcription"``."""
    w = Walk(param_prefix)
    return (_session(session, w, _TRANSCRIPTION_MOVES, TRANSCRIPTION_IGNORED, "transcription"),
            w.ignored)


def _expires_after(client_secret: Any, w: Walk) -> Json:
    seconds = BETA_DEFAULT_TOKEN_TTL_S
    if client_secret is not None:
        secret = expect_dict(client_secret, w.param("client_secret"))
        reject_unknown(secret, ("expires_after",), w.param("client_secret"))
        if secret.get("expires_after") is not None:
            rel = "client_secret.expires_after"
            after = expect_dict(secret["expires_after"], w.param(rel))
            reject_unknown(after, ("anchor", "seconds"), w.param(rel))
            expect_enum(require(after, "anchor", w.param(rel)), ("created_at",),
                        w.param(f"{rel}.anchor"))
            if after.get("seconds") is not None:
                seconds = expect_int(after["seconds"], w.param(f"{rel}.seconds"))
                if not 10 <= seconds <= 7200:
                    raise DialectError(
                        ErrorCode.INVALID_VALUE,
                        f"'{w.param(rel + '.seconds')}' must be between 10 and 7200.",
                        w.param(f"{rel}.seconds"))
    return {"anchor": "created_at", "seconds": seconds}


def beta_session_create_request_to_ga(body: Json) -> tuple[Json, list[str]]:
    """A beta ``POST /v1/realtime/sessions`` body -> (GA ``client_secrets`` body, ignored).

    The result is ``{"expires_after": {...}, "session": {type:"realtime", ...}}``, the body
    of GA ``POST /v1/realtime/client_secrets``. Error params are body field names
    (``input_audio_format``). Without ``client_secret.expires_after`` the token lives
    :data:`BETA_DEFAULT_TOKEN_TTL_S` seconds, as beta tokens did.
    """
    w = Walk("")
    obj = expect_dict(body, "")
    reject_unknown(obj, (*_SESSION_MOVES, *SESSION_IGNORED), "", _SESSION_GA_ONLY)
    expires_after = _expires_after(obj.get("client_secret"), w)
    fields = {k: v for k, v in obj.items() if k != "client_secret"}
    session = {"type": "realtime", **translate_fields(fields, _SESSION_MOVES, w, SESSION_IGNORED)}
    return {"expires_after": expires_after, "session": session}, w.ignored


def beta_transcription_session_create_request_to_ga(body: Json) -> tuple[Json, list[str]]:
    """A beta ``POST /v1/realtime/transcription_sessions`` body -> (GA ``client_secrets``
    body with a ``type:"transcription"`` session, ignored fields); the token's lifetime as
    for :func:`beta_session_create_request_to_ga`."""
    w = Walk("")
    obj = expect_dict(body, "")
    reject_unknown(obj, (*_TRANSCRIPTION_MOVES, *TRANSCRIPTION_IGNORED), "", _SESSION_GA_ONLY)
    expires_after = _expires_after(obj.get("client_secret"), w)
    fields = {k: v for k, v in obj.items() if k != "client_secret"}
    session = {"type": "transcription",
               **translate_fields(fields, _TRANSCRIPTION_MOVES, w, TRANSCRIPTION_IGNORED)}
    return {"expires_after": expires_after, "session": session}, w.ignored


# -- GA -> beta sessions -----------------------------------------------------------------

def _put_nullable(out: Json, key: str, src: Json, src_key: str,
                  convert: Callable[[Any], Any]) -> None:
    """Copy a field whose explicit ``null`` means "off"; a missing field stays missing."""
    if src_key in src:
        out[key] = None if src[src_key] is None else convert(src[src_key])


def _put(out: Json, key: str, value: Any) -> None:
    if value is not None:
        out[key] = value


def _realtime_session_ga_to_beta(session: Json) -> Json:
    audio = dict_or_empty(session.get("audio"))
    a_in, a_out = dict_or_empty(audio.get("input")), dict_or_empty(audio.get("output"))
    beta: Json = {}
    _put(beta, "id", session.get("id"))
    beta["object"] = "realtime.session"
    if session.get("model") in BETA_MODELS:
        beta["model"] = session["model"]
    _put(beta, "expires_at", session.get("expires_at"))
    _put(beta, "modalities", modalities_ga_to_beta(session.get("output_modalities")))
    _put(beta, "instructions", session.get("instructions"))
    _put(beta, "voice", voice_ga_to_beta(a_out.get("voice")))
    _put(beta, "speed", a_out.get("speed"))
    _put(beta, "input_audio_format", audio_format_ga_to_beta(a_in.get("format")))
    _put(beta, "output_audio_format", audio_format_ga_to_beta(a_out.get("format")))
    _put_nullable(beta, "input_audio_transcription", a_in, "transcription",
                  transcription_ga_to_beta)
    _put_nullable(beta, "input_audio_noise_reduction", a_in, "noise_reduction",
                  noise_reduction_ga_to_beta)
    _put_nullable(beta, "turn_detection", a_in, "turn_detection", turn_detection_ga_to_beta)
    if "tools" in session:
        beta["tools"] = tools_ga_to_beta(session["tools"])
    _put(beta, "tool_choice", tool_choice_ga_to_beta(session.get("tool_choice")))
    _put(beta, "max_response_output_tokens", session.get("max_output_tokens"))
    _put_nullable(beta, "tracing", session, "tracing", lambda t: t)
    return beta


def _transcription_session_ga_to_beta(session: Json) -> Json:
    a_in = dict_or_empty(dict_or_empty(session.get("audio")).get("input"))
    beta: Json = {}
    _put(beta, "id", session.get("id"))
    beta["object"] = "realtime.transcription_session"
    _put(beta, "expires_at", session.get("expires_at"))
    _put(beta, "input_audio_format", audio_format_ga_to_beta(a_in.get("format")))
    _put_nullable(beta, "input_audio_transcription", a_in, "transcription",
                  transcription_ga_to_beta)
    _put_nullable(beta, "input_audio_noise_reduction", a_in, "noise_reduction",
                  noise_reduction_ga_to_beta)
    _put_nullable(beta, "turn_detection", a_in, "turn_detection",
                  lambda td: turn_detection_ga_to_beta(td, transcription=True))
    _put(beta, "include", session.get("include"))
    return beta


def session_ga_to_beta(session: Json) -> Json:
    """A GA session object (request or effective config) -> the beta session object.

    ``type:"transcription"`` gives the beta transcription-session shape, anything else the
    beta realtime ``Session`` (``object:"realtime.session"``, flat formats, ``modalities``).
    """
    if session.get("type") == "transcription":
        return _transcription_session_ga_to_beta(session)
    return _realtime_session_ga_to_beta(session)


def ga_client_secret_to_beta_session_response(value: str, expires_at: int,
                                              ga_session: Json) -> Json:
    """GA client-secret parts -> the beta ``POST /v1/realtime/sessions`` response body."""
    body = session_ga_to_beta(ga_session)
    body["client_secret"] = {"value": value, "expires_at": expires_at}
    return body


__all__ = [
    "BETA_DEFAULT_TOKEN_TTL_S", "BETA_MODELS", "SESSION_IGNORED", "TRANSCRIPTION_IGNORED",
    "beta_session_create_request_to_ga", "beta_transcription_session_create_request_to_ga",
    "ga_client_secret_to_beta_session_response",
    "session_beta_to_ga", "session_ga_to_beta", "transcription_session_beta_to_ga",
]
