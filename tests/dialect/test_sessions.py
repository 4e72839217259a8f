"""Session config both ways, round trips, and the two token endpoints' bodies."""

from __future__ import annotations

import copy

import pytest
from openai.types.beta.realtime.session_create_params import SessionCreateParams
from openai.types.realtime.realtime_session_create_request import RealtimeSessionCreateRequest
from openai.types.realtime.realtime_transcription_session_create_request import (
    RealtimeTranscriptionSessionCreateRequest,
)
from pydantic import TypeAdapter

from gateway.upstream.dialect import (
    beta_session_create_request_to_ga,
    ga_client_secret_to_beta_session_response,
    session_beta_to_ga,
    session_ga_to_beta,
    transcription_session_beta_to_ga,
)
from gateway.upstream.dialect_items import item_beta_to_ga, item_ga_to_beta

from .samples import (
    ASSISTANT_DONE,
    BETA_SESSION,
    BETA_SESSION_FULL,
    BETA_SESSION_JS_DEFAULTS,
    BETA_TRANSCRIPTION_SESSION,
    FUNCTION_CALL,
    FUNCTION_OUTPUT,
    GA_SESSION,
    SYSTEM_ITEM,
    USER_AUDIO_ITEM,
    Json,
)
from .validators import (
    assert_no_extras,
    validate_beta_server,
    validate_beta_session_create_response,
    validate_ga_client_secret_request,
)

BETA_SESSIONS = {"basic": BETA_SESSION, "js-defaults": BETA_SESSION_JS_DEFAULTS,
                 "full": BETA_SESSION_FULL, "empty": {}}


def beta_meaning(session: Json) -> Json:
    """What a beta session says, with the spellings that mean the same normalised."""
    out = {k: v for k, v in session.items() if k not in ("temperature", "object")}
    if "modalities" in out:
        out["modalities"] = ["text", "audio"] if "audio" in out["modalities"] else ["text"]
    return out


@pytest.mark.parametrize("name", BETA_SESSIONS)
def test_beta_ga_beta_keeps_meaning(name: str) -> None:
    beta = BETA_SESSIONS[name]
    ga, ignored = session_beta_to_ga(beta)
    assert_no_extras(RealtimeSessionCreateRequest.model_validate(ga))
    back = session_ga_to_beta(ga)
    assert back["object"] == "realtime.session"
    assert beta_meaning(back) == beta_meaning(beta)
    assert ignored == (["temperature"] if "temperature" in beta else [])


def test_ga_beta_ga_keeps_meaning_for_beta_expressible_sessions() -> None:
    expressible = copy.deepcopy(GA_SESSION)
    for gone in ("id", "object", "expires_at", "truncation"):
        del expressible[gone]
    del expressible["audio"]["input"]["turn_detection"]["idle_timeout_ms"]
    ga, ignored = session_beta_to_ga(
        {k: v for k, v in session_ga_to_beta(expressible).items() if k != "object"})
    assert ignored == []
    assert ga == expressible


def test_transcription_session_round_trip() -> None:
    ga, ignored = transcription_session_beta_to_ga(BETA_TRANSCRIPTION_SESSION)
    assert ignored == []
    assert_no_extras(RealtimeTranscriptionSessionCreateRequest.model_validate(ga))
    back = session_ga_to_beta(ga)
    assert back.pop("object") == "realtime.transcription_session"
    assert back == BETA_TRANSCRIPTION_SESSION
    validate_beta_server({"type": "transcription_session.updated", "event_id": "e",
                          "session": {**back, "object": "realtime.transcription_session"}})


def test_ignored_fields_are_listed_with_their_path() -> None:
    _, ignored = session_beta_to_ga({
        "temperature": 0.9, "client_secret": {"expires_after": {"anchor": "created_at"}},
        "turn_detection": {"type": "server_vad", "eagerness": "low"},
    })
    assert ignored == ["temperature", "client_secret", "turn_detection.eagerness"]
    _, ignored = session_beta_to_ga(
        {"turn_detection": {"type": "semantic_vad", "threshold": 0.5, "eagerness": "low"}})
    assert ignored == ["turn_detection.threshold"]


def test_beta_session_values_keep_their_null_meaning() -> None:
    ga, _ = session_beta_to_ga({"turn_detection": None, "input_audio_noise_reduction": None,
                                "tracing": None, "voice": None, "instructions": None})
    assert ga == {"type": "realtime", "tracing": None,
                  "audio": {"input": {"turn_detection": None, "noise_reduction": None}}}


@pytest.mark.parametrize("item", [USER_AUDIO_ITEM, SYSTEM_ITEM, ASSISTANT_DONE, FUNCTION_CALL,
                                  FUNCTION_OUTPUT], ids=lambda i: f"{i['type']}-{i.get('role')}")
def test_item_ga_beta_ga_round_trip(item: Json) -> None:
    beta = item_ga_to_beta(item)
    assert beta is not None
    # a beta null means "not set", so GA gets the item without its null fields
    assert item_beta_to_ga(beta, "item") == [without_nulls(item)]


def without_nulls(value: object) -> object:
    if isinstance(value, dict):
        return {k: without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [without_nulls(v) for v in value]
    return value


# -- POST /v1/realtime/sessions ------------------------------------------------------

BETA_CREATE_BODY: Json = {
    "model": "gpt-4o-realtime-preview-2024-12-17", "modalities": ["audio", "text"],
    "instructions": "You are a friendly assistant.", "voice": "alloy",
    "input_audio_format": "pcm16", "output_audio_format": "pcm16",
    "input_audio_transcription": {"model": "whisper-1"},
    "turn_detection": {"type": "semantic_vad"}, "tools": [], "tool_choice": "none",
    "temperature": 0.7,
    "max_response_output_tokens": 200, "speed": 1.1, "tracing": "auto",
    "client_secret": {"expires_after": {"anchor": "created_at", "seconds": 120}},
}


def test_create_request_golden() -> None:
    TypeAdapter(SessionCreateParams).validate_python(BETA_CREATE_BODY)
    body, ignored = beta_session_create_request_to_ga(BETA_CREATE_BODY)
    validate_ga_client_secret_request(body)
    assert ignored == ["temperature"]
    assert body == {"expires_after": {"anchor": "created_at", "seconds": 120}, "session": {
        "type": "realtime", "model": "gpt-4o-realtime-preview-2024-12-17",
        "output_modalities": ["audio"], "instructions": "You are a friendly assistant.",
        "tools": [], "tool_choice": "none", "max_output_tokens": 200, "tracing": "auto",
        "audio": {"output": {"voice": "alloy", "format": {"type": "audio/pcm", "rate": 24000},
                             "speed": 1.1},
                  "input": {"format": {"type": "audio/pcm", "rate": 24000},
                            "transcription": {"model": "whisper-1"},
                            "turn_detection": {"type": "semantic_vad"}}}}}


def test_create_request_defaults_to_the_beta_one_minute_token() -> None:
    body, ignored = beta_session_create_request_to_ga({"model": "gpt-4o-realtime-preview"})
    validate_ga_client_secret_request(body)
    assert body == {"expires_after": {"anchor": "created_at", "seconds": 60},
                    "session": {"type": "realtime", "model": "gpt-4o-realtime-preview"}}
    assert ignored == []


def test_create_response_golden() -> None:
    body, _ = beta_session_create_request_to_ga(BETA_CREATE_BODY)
    effective = {**body["session"], "id": "sess_042", "object": "realtime.session",
                 "expires_at": 0}
    response = ga_client_secret_to_beta_session_response("ek_abc123", 1_760_000_120, effective)
    validate_beta_session_create_response(response)
    assert response == {
        "id": "sess_042", "object": "realtime.session",
        "model": "gpt-4o-realtime-preview-2024-12-17", "expires_at": 0,
        "modalities": ["text", "audio"], "instructions": "You are a friendly assistant.",
        "voice": "alloy", "speed": 1.1, "input_audio_format": "pcm16",
        "output_audio_format": "pcm16", "input_audio_transcription": {"model": "whisper-1"},
        "turn_detection": {"type": "semantic_vad"}, "tools": [], "tool_choice": "none",
        "max_response_output_tokens": 200, "tracing": "auto",
        "client_secret": {"value": "ek_abc123", "expires_at": 1_760_000_120}}


def test_create_response_from_a_full_ga_session() -> None:
    response = ga_client_secret_to_beta_session_response("ek_x", 1, GA_SESSION)
    validate_beta_session_create_response(response)
    assert response["client_secret"] == {"value": "ek_x", "expires_at": 1}
    assert GA_SESSION["audio"]["input"]["turn_detection"]["idle_timeout_ms"] == 6000
