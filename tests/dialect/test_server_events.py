"""GA server events -> beta: every GA type, every output validated with the beta types."""

from __future__ import annotations

import copy

import pytest

from gateway.upstream.dialect import (
    DROPPED_SERVER_EVENT_TYPES,
    GA_SERVER_EVENT_TYPES,
    DialectError,
    ga_param_to_beta,
    server_event_ga_to_beta,
)

from .samples import (
    ASSISTANT_DONE,
    DROPPED_SAMPLES,
    EXPECTED_BETA_TYPES,
    FUNCTION_CALL,
    GA_SERVER_SAMPLES,
    TRANSCRIPTION_SAMPLES,
    USER_AUDIO_ITEM,
    Json,
)
from .validators import (
    BETA_SERVER_TYPES,
    GA_SERVER_TYPES,
    validate_beta_server,
    validate_ga_server,
)

IDS = [name for name, _ in GA_SERVER_SAMPLES]
EVENTS = [event for _, event in GA_SERVER_SAMPLES]
FUNCTION_TOOL = EVENTS[IDS.index("session.created")]["session"]["tools"][0]


def one(event: Json) -> Json:
    out = server_event_ga_to_beta(event)
    assert len(out) == 1, out
    return out[0]


def test_samples_cover_every_ga_server_event_type() -> None:
    assert {e["type"] for e in EVENTS} == GA_SERVER_TYPES
    assert GA_SERVER_EVENT_TYPES == GA_SERVER_TYPES


def test_outputs_cover_every_beta_server_event_type() -> None:
    produced = {o["type"] for e in EVENTS for o in server_event_ga_to_beta(e)}
    assert produced == BETA_SERVER_TYPES | {"transcription_session.created"}


@pytest.mark.parametrize("event", EVENTS, ids=IDS)
def test_sample_is_valid_ga(event: Json) -> None:
    validate_ga_server(event)


@pytest.mark.parametrize(("name", "event"), GA_SERVER_SAMPLES, ids=IDS)
def test_translation_is_valid_beta(name: str, event: Json) -> None:
    before = copy.deepcopy(event)
    out = server_event_ga_to_beta(event)
    assert event == before, "the input was mutated"
    if name in DROPPED_SAMPLES:
        expected: tuple[str, ...] = ()
    elif name in TRANSCRIPTION_SAMPLES:
        expected = (TRANSCRIPTION_SAMPLES[name],)
    else:
        expected = EXPECTED_BETA_TYPES.get(event["type"], (event["type"],))
    assert tuple(o["type"] for o in out) == expected
    for beta in out:
        validate_beta_server(beta)
        if "event_id" in event:
            assert beta["event_id"] == event["event_id"]


def test_dropped_types_are_the_ga_only_ones() -> None:
    assert DROPPED_SERVER_EVENT_TYPES == {t for t, out in EXPECTED_BETA_TYPES.items()
                                          if not out}


def test_unknown_server_event_is_dropped() -> None:
    assert server_event_ga_to_beta({"type": "response.reasoning.delta", "event_id": "e"}) == []


@pytest.mark.parametrize("bad", [{"event_id": "e"}, {"type": 5}, ["error"]])
def test_server_event_without_type_raises(bad: object) -> None:
    with pytest.raises(DialectError):
        server_event_ga_to_beta(bad)  # type: ignore[arg-type]


# -- goldens -------------------------------------------------------------------------

def test_audio_delta_renamed_and_payload_shared() -> None:
    event = dict(GA_SERVER_SAMPLES[IDS.index("response.output_audio.delta")][1])
    assert one(event) == {"type": "response.audio.delta", "event_id": event["event_id"],
                          "response_id": "resp_001", "item_id": "item_001",
                          "output_index": 0, "content_index": 0, "delta": "AAAA"}


def test_function_call_arguments_done_loses_name() -> None:
    event = GA_SERVER_SAMPLES[IDS.index("response.function_call_arguments.done")][1]
    beta = one(event)
    assert "name" not in beta
    assert beta == {"type": "response.function_call_arguments.done",
                    "event_id": event["event_id"], "response_id": "resp_001",
                    "item_id": "item_fc", "output_index": 1, "call_id": "call_1",
                    "arguments": "{\"city\":\"Paris\"}"}


def test_item_added_becomes_created_and_done_is_dropped() -> None:
    added = {"type": "conversation.item.added", "event_id": "e1", "item": ASSISTANT_DONE,
             "previous_item_id": "item_user"}
    assert one(added) == {
        "type": "conversation.item.created", "event_id": "e1", "previous_item_id": "item_user",
        "item": {"id": "item_001", "object": "realtime.item", "type": "message",
                 "status": "completed", "role": "assistant",
                 "content": [{"type": "audio", "transcript": "Hello there."}]}}
    assert server_event_ga_to_beta({**added, "type": "conversation.item.done"}) == []


def test_user_item_keeps_input_content_and_null_transcript() -> None:
    beta = one({"type": "conversation.item.added", "event_id": "e", "item": USER_AUDIO_ITEM})
    assert beta["item"]["content"] == [{"type": "input_audio", "transcript": None}]


def test_image_parts_are_dropped_from_user_items() -> None:
    event = GA_SERVER_SAMPLES[IDS.index("conversation.item.added/image")][1]
    assert one(event)["item"]["content"] == [{"type": "input_text", "text": "what is this?"}]


def test_session_created_golden() -> None:
    event = GA_SERVER_SAMPLES[IDS.index("session.created")][1]
    assert one(event) == {"type": "session.created", "event_id": event["event_id"], "session": {
        "id": "sess_001", "object": "realtime.session", "model": "gpt-realtime",
        "expires_at": 1_760_000_000, "modalities": ["text", "audio"],
        "instructions": "Be brief.", "voice": "marin", "speed": 1.0,
        "input_audio_format": "pcm16", "output_audio_format": "pcm16",
        "input_audio_transcription": {"model": "whisper-1", "language": "en"},
        "input_audio_noise_reduction": None,
        "turn_detection": {"type": "server_vad", "threshold": 0.5, "prefix_padding_ms": 300,
                           "silence_duration_ms": 500, "create_response": True,
                           "interrupt_response": True},
        "tools": [FUNCTION_TOOL], "tool_choice": "auto", "max_response_output_tokens": "inf",
        "tracing": None}}


def test_phone_session_drops_what_beta_cannot_say() -> None:
    session = one(GA_SERVER_SAMPLES[IDS.index("session.created/phone")][1])["session"]
    assert "model" not in session  # not in the closed beta model enum
    assert session["modalities"] == ["text"]
    assert session["input_audio_format"] == "g711_ulaw"
    assert session["output_audio_format"] == "g711_alaw"
    assert session["voice"] == "voice_abc"
    assert session["input_audio_noise_reduction"] == {"type": "far_field"}
    assert session["turn_detection"] == {"type": "semantic_vad", "eagerness": "high"}
    assert [t["name"] for t in session["tools"]] == ["get_weather"]  # MCP tool dropped
    assert session["tool_choice"] == "required"


def test_transcription_session_golden() -> None:
    event = GA_SERVER_SAMPLES[IDS.index("session.updated/transcription")][1]
    assert one(event)["session"] == {
        "id": "sess_003", "object": "realtime.transcription_session",
        "input_audio_format": "g711_ulaw",
        "input_audio_transcription": {"model": "gpt-4o-transcribe", "language": "en",
                                      "prompt": "names"},
        "input_audio_noise_reduction": {"type": "near_field"},
        "turn_detection": {"type": "server_vad", "threshold": 0.4, "prefix_padding_ms": 200,
                           "silence_duration_ms": 400},
        "include": ["item.input_audio_transcription.logprobs"]}


def test_response_done_golden() -> None:
    beta = one(GA_SERVER_SAMPLES[IDS.index("response.done")][1])["response"]
    assert beta["modalities"] == ["text", "audio"]
    assert beta["output_audio_format"] == "g711_ulaw"
    assert beta["voice"] == "marin"
    assert [i["type"] for i in beta["output"]] == ["message", "function_call"]  # no mcp_call
    assert beta["output"][1] == FUNCTION_CALL
    assert beta["usage"]["input_token_details"] == {"audio_tokens": 60, "cached_tokens": 10,
                                                    "text_tokens": 20}
    assert beta["metadata"] == {"topic": "weather"}
    for gone in ("output_modalities", "audio"):
        assert gone not in beta


def test_response_failed_keeps_status_details() -> None:
    beta = one(GA_SERVER_SAMPLES[IDS.index("response.done/failed")][1])["response"]
    assert beta["status_details"]["error"]["message"] == "upstream fell over"


def test_content_parts_keep_beta_types() -> None:
    event = GA_SERVER_SAMPLES[IDS.index("response.content_part.added")][1]
    assert one(event)["part"] == {"type": "audio", "transcript": ""}
    # defensive: a part typed the way GA types item content still comes out as beta
    renamed = {**event, "part": {"type": "output_text", "text": "x"}}
    assert one(renamed)["part"] == {"type": "text", "text": "x"}


def test_transcription_completed_drops_languages() -> None:
    beta = one(GA_SERVER_SAMPLES[IDS.index("transcription.completed")][1])
    assert "languages" not in beta
    assert beta["usage"]["type"] == "tokens"


def test_error_param_rewritten_to_beta_field() -> None:
    beta = one(GA_SERVER_SAMPLES[IDS.index("error")][1])
    assert beta["error"]["param"] == "session.input_audio_format"
    assert beta["error"]["event_id"] == "client_1"


@pytest.mark.parametrize(("ga", "beta"), [
    ("session.audio.input.format", "session.input_audio_format"),
    ("session.audio.input.format.type", "session.input_audio_format.type"),
    ("session.audio.input.turn_detection.threshold", "session.turn_detection.threshold"),
    ("session.audio.output.voice", "session.voice"),
    ("session.output_modalities[0]", "session.modalities[0]"),
    ("session.max_output_tokens", "session.max_response_output_tokens"),
    ("response.audio.output.voice", "response.voice"),
    ("response.max_output_tokens", "response.max_response_output_tokens"),
    ("session.instructions", "session.instructions"),
    ("session.audio.input.formats", "session.audio.input.formats"),  # not a path prefix
    ("item_id", "item_id"),
])
def test_ga_param_to_beta(ga: str, beta: str) -> None:
    assert ga_param_to_beta(ga) == beta
