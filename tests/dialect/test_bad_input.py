"""Malformed beta input, GA shapes on a beta connection, unknown fields: DialectError.

Each case names the error code and the ``param`` a beta client sees; the error object is
itself a valid beta ``error`` event, so the session can go on.
"""

from __future__ import annotations

from typing import Any

import pytest

from gateway.upstream.dialect import (
    DialectError,
    ErrorCode,
    beta_session_create_request_to_ga,
    client_event_beta_to_ga,
    session_beta_to_ga,
)

from .validators import validate_beta_server

MISMATCH = ErrorCode.DIALECT_MISMATCH
UNKNOWN = ErrorCode.UNKNOWN_PARAMETER
MISSING = ErrorCode.MISSING_REQUIRED_PARAMETER
TYPE = ErrorCode.INVALID_TYPE
VALUE = ErrorCode.INVALID_VALUE


def session(**fields: Any) -> dict[str, Any]:
    return {"type": "session.update", "event_id": "client_7", "session": fields}


def item(**fields: Any) -> dict[str, Any]:
    return {"type": "conversation.item.create", "item": fields}


def user(*content: Any) -> dict[str, Any]:
    return item(type="message", role="user", content=list(content))


def response(**fields: Any) -> dict[str, Any]:
    return {"type": "response.create", "response": fields}


CASES: list[tuple[str, Any, ErrorCode, str | None]] = [
    # envelope
    ("not-an-object", ["session.update"], TYPE, None),
    ("no-type", {"session": {}}, MISSING, "type"),
    ("type-not-string", {"type": 3}, TYPE, "type"),
    ("unknown-type", {"type": "session.replace"}, VALUE, "type"),
    ("server-event-name", {"type": "conversation.item.added", "item": {}}, VALUE, "type"),
    ("unknown-top-level-field", {"type": "input_audio_buffer.commit", "force": True},
     UNKNOWN, "force"),
    ("event-id-not-string", {"type": "input_audio_buffer.clear", "event_id": 7}, TYPE,
     "event_id"),
    # GA session shapes
    ("ga-session-type", session(type="realtime"), MISMATCH, "session.type"),
    ("ga-nested-audio", session(audio={"input": {"format": {"type": "audio/pcm"}}}),
     MISMATCH, "session.audio"),
    ("ga-output-modalities", session(output_modalities=["audio"]), MISMATCH,
     "session.output_modalities"),
    ("ga-max-output-tokens", session(max_output_tokens=100), MISMATCH,
     "session.max_output_tokens"),
    ("ga-truncation", session(truncation="auto"), MISMATCH, "session.truncation"),
    ("ga-format-object", session(input_audio_format={"type": "audio/pcmu"}), MISMATCH,
     "session.input_audio_format"),
    ("ga-custom-voice", session(voice={"id": "voice_1"}), MISMATCH, "session.voice"),
    ("ga-idle-timeout", session(turn_detection={"type": "server_vad", "idle_timeout_ms": 5}),
     MISMATCH, "session.turn_detection.idle_timeout_ms"),
    ("ga-noise-strength", session(input_audio_noise_reduction={"type": "near_field",
                                                               "strength": 1}),
     MISMATCH, "session.input_audio_noise_reduction.strength"),
    ("ga-transcription-delay", session(input_audio_transcription={"model": "whisper-1",
                                                                  "delay": "low"}),
     MISMATCH, "session.input_audio_transcription.delay"),
    ("ga-mcp-tool", session(tools=[{"type": "mcp", "server_label": "x"}]), MISMATCH,
     "session.tools[0].type"),
    ("ga-mcp-tool-choice", session(tool_choice={"type": "mcp", "server_label": "x"}),
     MISMATCH, "session.tool_choice.type"),
    # malformed beta sessions
    ("session-missing", {"type": "session.update"}, MISSING, "session"),
    ("session-not-object", {"type": "session.update", "session": "pcm16"}, TYPE, "session"),
    ("session-unknown-field", session(vad=True), UNKNOWN, "session.vad"),
    ("bad-input-format", session(input_audio_format="mp3"), VALUE,
     "session.input_audio_format"),
    ("bad-output-format", session(output_audio_format="pcm"), VALUE,
     "session.output_audio_format"),
    ("bad-modality", session(modalities=["text", "video"]), VALUE, "session.modalities[1]"),
    ("no-modality", session(modalities=[]), VALUE, "session.modalities"),
    ("modalities-not-list", session(modalities="audio"), TYPE, "session.modalities"),
    ("voice-not-string", session(voice=3), TYPE, "session.voice"),
    ("speed-not-number", session(speed="fast"), TYPE, "session.speed"),
    ("speed-bool", session(speed=True), TYPE, "session.speed"),
    ("max-tokens-string", session(max_response_output_tokens="lots"), TYPE,
     "session.max_response_output_tokens"),
    ("vad-type", session(turn_detection={"type": "push_to_talk"}), VALUE,
     "session.turn_detection.type"),
    ("vad-not-object", session(turn_detection="server_vad"), TYPE, "session.turn_detection"),
    ("vad-threshold-type", session(turn_detection={"threshold": "high"}), TYPE,
     "session.turn_detection.threshold"),
    ("vad-eagerness", session(turn_detection={"type": "semantic_vad", "eagerness": "eager"}),
     VALUE, "session.turn_detection.eagerness"),
    ("vad-unknown-knob", session(turn_detection={"type": "server_vad", "sensitivity": 1}),
     UNKNOWN, "session.turn_detection.sensitivity"),
    ("transcription-not-object", session(input_audio_transcription="whisper-1"), TYPE,
     "session.input_audio_transcription"),
    ("noise-type", session(input_audio_noise_reduction={"type": "studio"}), VALUE,
     "session.input_audio_noise_reduction.type"),
    ("tools-not-list", session(tools={"name": "f"}), TYPE, "session.tools"),
    ("tool-without-name", session(tools=[{"type": "function"}]), MISSING,
     "session.tools[0].name"),
    ("tool-unknown-field", session(tools=[{"name": "f", "strict": True}]), UNKNOWN,
     "session.tools[0].strict"),
    ("tool-choice-word", session(tool_choice="sometimes"), VALUE, "session.tool_choice"),
    ("tracing-unknown", session(tracing={"workflow": "x"}), UNKNOWN,
     "session.tracing.workflow"),
    ("transcription-session-realtime-field",
     {"type": "transcription_session.update", "session": {"voice": "alloy"}}, UNKNOWN,
     "session.voice"),
    ("transcription-session-ga-type",
     {"type": "transcription_session.update", "session": {"type": "transcription"}},
     MISMATCH, "session.type"),
    # items
    ("item-missing", {"type": "conversation.item.create"}, MISSING, "item"),
    ("item-without-type", item(role="user", content=[]), MISSING, "item.type"),
    ("item-unknown-type", item(type="note"), VALUE, "item.type"),
    ("item-mcp", item(type="mcp_call", id="x"), MISMATCH, "item.type"),
    ("item-reference-outside-response", item(type="item_reference", id="item_1"), VALUE,
     "item.type"),
    ("item-unknown-field", item(type="message", role="user", content=[], lang="en"),
     UNKNOWN, "item.lang"),
    ("item-field-of-other-type", item(type="message", role="user", content=[],
                                      call_id="c"), UNKNOWN, "item.call_id"),
    ("item-role", item(type="message", role="developer", content=[]), VALUE, "item.role"),
    ("item-no-content", item(type="message", role="user"), MISSING, "item.content"),
    ("ga-content-output-text", item(type="message", role="assistant",
                                    content=[{"type": "output_text", "text": "x"}]),
     MISMATCH, "item.content[0].type"),
    ("ga-content-image", user({"type": "input_image", "image_url": "data:"}), MISMATCH,
     "item.content[0].type"),
    ("assistant-input-text", item(type="message", role="assistant",
                                  content=[{"type": "input_text", "text": "x"}]),
     VALUE, "item.content[0].type"),
    ("user-text", user({"type": "text", "text": "x"}), VALUE, "item.content[0].type"),
    ("system-audio", item(type="message", role="system",
                          content=[{"type": "input_audio", "audio": "AA"}]),
     VALUE, "item.content[0].type"),
    ("content-field-of-other-type", user({"type": "input_text", "text": "x", "audio": "AA"}),
     UNKNOWN, "item.content[0].audio"),
    ("content-text-not-string", user({"type": "input_text", "text": 5}), TYPE,
     "item.content[0].text"),
    ("function-call-without-name", item(type="function_call", arguments="{}"), MISSING,
     "item.name"),
    ("function-output-without-call-id", item(type="function_call_output", output="x"),
     MISSING, "item.call_id"),
    ("function-output-not-string", item(type="function_call_output", call_id="c",
                                        output={"ok": True}), TYPE, "item.output"),
    ("previous-item-id-type", {**user(), "previous_item_id": 3}, TYPE, "previous_item_id"),
    # response.create
    ("response-not-object", {"type": "response.create", "response": "now"}, TYPE,
     "response"),
    ("ga-response-output-modalities", response(output_modalities=["text"]), MISMATCH,
     "response.output_modalities"),
    ("ga-response-audio", response(audio={"output": {"voice": "marin"}}), MISMATCH,
     "response.audio"),
    ("ga-response-reasoning", response(reasoning={"effort": "low"}), MISMATCH,
     "response.reasoning"),
    ("response-unknown", response(stream=True), UNKNOWN, "response.stream"),
    ("response-format", response(output_audio_format="opus"), VALUE,
     "response.output_audio_format"),
    ("response-metadata-value", response(metadata={"n": 1}), TYPE, "response.metadata.n"),
    ("response-input-not-list", response(input={"type": "message"}), TYPE, "response.input"),
    ("response-input-ga-content", response(input=[
        {"type": "message", "role": "assistant",
         "content": [{"type": "output_audio", "transcript": "x"}]}]),
     MISMATCH, "response.input[0].content[0].type"),
    ("response-reference-without-id", response(input=[{"type": "item_reference"}]), MISSING,
     "response.input[0].id"),
    ("response-content-reference-without-id", response(input=[
        {"type": "message", "role": "user", "content": [{"type": "item_reference"}]}]),
     MISSING, "response.input[0].content[0].id"),
    # plain events
    ("append-without-audio", {"type": "input_audio_buffer.append"}, MISSING, "audio"),
    ("append-audio-bytes", {"type": "input_audio_buffer.append", "audio": [1, 2]}, TYPE,
     "audio"),
    ("truncate-index-string", {"type": "conversation.item.truncate", "item_id": "i",
                               "content_index": "0", "audio_end_ms": 10}, TYPE,
     "content_index"),
    ("truncate-missing-ms", {"type": "conversation.item.truncate", "item_id": "i",
                             "content_index": 0}, MISSING, "audio_end_ms"),
    ("delete-without-id", {"type": "conversation.item.delete"}, MISSING, "item_id"),
    ("cancel-id-type", {"type": "response.cancel", "response_id": 1}, TYPE, "response_id"),
]


@pytest.mark.parametrize(("event", "code", "param"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_bad_client_event(event: Any, code: ErrorCode, param: str | None) -> None:
    with pytest.raises(DialectError) as caught:
        client_event_beta_to_ga(event)
    error = caught.value
    assert (error.code, error.param) == (code, param), error.message
    assert error.message
    if param is not None:
        assert f"'{param}'" in error.message or param == "type"
    # the caller's error event, in the client's own (beta) dialect
    client_event_id = event.get("event_id") if isinstance(event, dict) else None
    if not isinstance(client_event_id, str):
        client_event_id = None  # only a string event_id can be echoed back
    validate_beta_server({"type": "error", "event_id": "event_gw_1",
                          "error": error.error_object(client_event_id)})


def test_dialect_mismatch_message_says_what_to_do() -> None:
    with pytest.raises(DialectError) as caught:
        client_event_beta_to_ga(session(output_modalities=["audio"]))
    assert "beta" in caught.value.message
    assert "Use 'modalities'" in caught.value.message
    assert caught.value.error_object("client_7")["event_id"] == "client_7"


def test_session_beta_to_ga_prefix() -> None:
    with pytest.raises(DialectError) as caught:
        session_beta_to_ga({"input_audio_format": "mp3"}, param_prefix="")
    assert caught.value.param == "input_audio_format"


@pytest.mark.parametrize(("body", "code", "param"), [
    ("pcm16", TYPE, None),
    ({"input_audio_format": "mp3"}, VALUE, "input_audio_format"),
    ({"type": "realtime"}, MISMATCH, "type"),
    ({"session": {}}, UNKNOWN, "session"),
    ({"client_secret": "ek"}, TYPE, "client_secret"),
    ({"client_secret": {"expires_at": 60}}, UNKNOWN, "client_secret.expires_at"),
    ({"client_secret": {"expires_after": {"seconds": 60}}}, MISSING,
     "client_secret.expires_after.anchor"),
    ({"client_secret": {"expires_after": {"anchor": "now", "seconds": 60}}}, VALUE,
     "client_secret.expires_after.anchor"),
    ({"client_secret": {"expires_after": {"anchor": "created_at", "seconds": 5}}}, VALUE,
     "client_secret.expires_after.seconds"),
])
def test_bad_session_create_request(body: Any, code: ErrorCode, param: str | None) -> None:
    with pytest.raises(DialectError) as caught:
        beta_session_create_request_to_ga(body)
    assert (caught.value.code, caught.value.param) == (code, param), caught.value.message
