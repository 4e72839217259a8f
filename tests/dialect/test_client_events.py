"""Beta client events -> GA: every beta type, every output validated with the GA types."""

from __future__ import annotations

import copy

import pytest

from gateway.upstream.dialect import BETA_CLIENT_EVENT_TYPES, client_event_beta_to_ga

from .samples import BETA_CLIENT_SAMPLES, EXPECTED_GA_TYPES, GET_WEATHER, Json
from .validators import BETA_CLIENT_TYPES, GA_CLIENT_TYPES, validate_beta_client, validate_ga_client

IDS = [name for name, _ in BETA_CLIENT_SAMPLES]
EVENTS = [event for _, event in BETA_CLIENT_SAMPLES]


def sample(name: str) -> Json:
    return EVENTS[IDS.index(name)]


def one(event: Json) -> Json:
    out = client_event_beta_to_ga(event)
    assert len(out) == 1, out
    return out[0]


def test_samples_cover_every_beta_client_event_type() -> None:
    assert {e["type"] for e in EVENTS} == BETA_CLIENT_TYPES == BETA_CLIENT_EVENT_TYPES


def test_outputs_cover_every_ga_client_event_type() -> None:
    assert {o["type"] for e in EVENTS for o in client_event_beta_to_ga(e)} == GA_CLIENT_TYPES


@pytest.mark.parametrize("event", EVENTS, ids=IDS)
def test_sample_is_valid_beta(event: Json) -> None:
    validate_beta_client(event)


@pytest.mark.parametrize("event", EVENTS, ids=IDS)
def test_translation_is_valid_ga(event: Json) -> None:
    before = copy.deepcopy(event)
    out = client_event_beta_to_ga(event)
    assert event == before, "the input was mutated"
    assert tuple(o["type"] for o in out) == EXPECTED_GA_TYPES.get(event["type"],
                                                                  (event["type"],))
    for ga in out:
        validate_ga_client(ga)
        assert ga.get("event_id") == event.get("event_id")


@pytest.mark.parametrize("event", EVENTS, ids=IDS)
def test_output_does_not_alias_mutable_input(event: Json) -> None:
    """Policy code may edit what it gets; the client's event must not change with it."""
    before = copy.deepcopy(event)
    for ga in client_event_beta_to_ga(event):
        _scribble(ga)
    assert event == before


def _scribble(value: object) -> None:
    if isinstance(value, dict):
        for v in list(value.values()):
            _scribble(v)
        value["scribbled"] = True
    elif isinstance(value, list):
        for v in value:
            _scribble(v)
        value.append("scribbled")


# -- goldens -------------------------------------------------------------------------

def test_session_update_golden() -> None:
    event = sample("session.update")
    assert one(event) == {"type": "session.update", "event_id": event["event_id"], "session": {
        "type": "realtime", "output_modalities": ["audio"],
        "instructions": "You are a helpful agent.", "tools": [GET_WEATHER],
        "tool_choice": "auto", "max_output_tokens": "inf",
        "audio": {
            "input": {"format": {"type": "audio/pcmu"}, "transcription": {"model": "whisper-1"},
                      "turn_detection": {"type": "server_vad", "threshold": 0.5,
                                         "prefix_padding_ms": 300, "silence_duration_ms": 500,
                                         "create_response": True, "interrupt_response": True}},
            "output": {"voice": "alloy", "format": {"type": "audio/pcmu"}}}}}


def test_js_client_defaults_keep_nulls_that_mean_off() -> None:
    session = one(sample("session.update/js-defaults"))["session"]
    assert session["audio"]["input"] == {"format": {"type": "audio/pcm", "rate": 24000},
                                         "transcription": None, "turn_detection": None}
    assert session["max_output_tokens"] == 4096
    assert session["tools"] == []
    assert "temperature" not in session


def test_full_session_golden() -> None:
    session = one(sample("session.update/full"))["session"]
    assert session == {
        "type": "realtime", "model": "gpt-4o-realtime-preview-2024-12-17",
        "output_modalities": ["text"], "instructions": "Be terse.",
        "tools": [GET_WEATHER], "tool_choice": "required", "max_output_tokens": 512,
        "tracing": {"workflow_name": "support", "group_id": "g1", "metadata": {"k": "v"}},
        "audio": {
            "input": {"format": {"type": "audio/pcm", "rate": 24000},
                      "transcription": {"model": "gpt-4o-transcribe", "language": "de",
                                        "prompt": "Namen"},
                      "noise_reduction": {"type": "far_field"},
                      "turn_detection": {"type": "semantic_vad", "eagerness": "low",
                                         "create_response": False,
                                         "interrupt_response": False}},
            "output": {"voice": "ash", "speed": 1.2, "format": {"type": "audio/pcma"}}}}


def test_transcription_session_update_golden() -> None:
    event = sample("transcription_session.update")
    assert one(event) == {"type": "session.update", "event_id": event["event_id"], "session": {
        "type": "transcription",
        "include": ["item.input_audio_transcription.logprobs"],
        "audio": {"input": {
            "format": {"type": "audio/pcmu"},
            "transcription": {"model": "gpt-4o-mini-transcribe", "language": "en"},
            "noise_reduction": {"type": "near_field"},
            "turn_detection": {"type": "server_vad", "threshold": 0.6,
                               "silence_duration_ms": 300}}}}}


def test_append_is_passed_through() -> None:
    event = sample("input_audio_buffer.append")
    ga = one(event)
    assert ga == event
    assert ga is not event
    assert ga["audio"] is event["audio"]  # the payload is shared, not re-encoded


def test_assistant_item_content_renamed() -> None:
    item = one(sample("conversation.item.create/assistant"))["item"]
    assert item == {"type": "message", "role": "assistant", "object": "realtime.item",
                    "content": [{"type": "output_text", "text": "Earlier answer."}]}


def test_previous_item_id_root_kept() -> None:
    assert one(sample("conversation.item.create/user-text"))["previous_item_id"] == "root"


def test_response_create_params_golden() -> None:
    event = sample("response.create/params")
    assert one(event)["response"] == {
        "output_modalities": ["audio"], "instructions": "Answer in one sentence.",
        "max_output_tokens": 200, "tool_choice": "none", "tools": [GET_WEATHER],
        "conversation": "auto", "metadata": {"topic": "weather"},
        "audio": {"output": {"voice": "sage", "format": {"type": "audio/pcm", "rate": 24000}}}}


def test_response_input_references_become_items() -> None:
    response = one(sample("response.create/out-of-band"))["response"]
    assert response["input"] == [
        {"type": "item_reference", "id": "item_user"},
        {"type": "message", "role": "user",
         "content": [{"type": "input_text", "text": "Summarise that."}]},
        {"type": "item_reference", "id": "item_c1"},
        {"type": "message", "role": "user", "content": [{"type": "input_text",
                                                         "text": "and this"}]},
    ]


def test_message_split_around_reference_keeps_id_on_first_piece() -> None:
    event = {"type": "response.create", "response": {"input": [
        {"id": "item_x", "type": "message", "role": "user",
         "content": [{"type": "input_text", "text": "a"},
                     {"type": "item_reference", "id": "item_y"},
                     {"type": "input_text", "text": "b"}]}]}}
    items = one(event)["response"]["input"]
    assert [i.get("id") for i in items] == ["item_x", "item_y", None]
    validate_ga_client(one(event))


@pytest.mark.parametrize("choice", [
    {"type": "function", "function": {"name": "get_weather"}},
    {"type": "function", "name": "get_weather"},
])
def test_forced_function_tool_choice_both_beta_spellings(choice: Json) -> None:
    ga = one({"type": "session.update", "session": {"tool_choice": choice}})
    assert ga["session"]["tool_choice"] == {"type": "function", "name": "get_weather"}
    validate_ga_client(ga)


@pytest.mark.parametrize(("modalities", "expected"), [
    (["text", "audio"], ["audio"]), (["audio", "text"], ["audio"]), (["audio"], ["audio"]),
    (["text"], ["text"]),
])
def test_modalities(modalities: list[str], expected: list[str]) -> None:
    ga = one({"type": "session.update", "session": {"modalities": modalities}})
    assert ga["session"]["output_modalities"] == expected


def test_turn_detection_without_type_is_server_vad() -> None:
    ga = one({"type": "session.update", "session": {"turn_detection": {"threshold": 0.7}}})
    assert ga["session"]["audio"]["input"]["turn_detection"] == {"type": "server_vad",
                                                                 "threshold": 0.7}
    validate_ga_client(ga)


def test_session_objects_echoed_back_are_accepted() -> None:
    """Some clients send session.created's object back in session.update."""
    echoed = {"id": "sess_1", "object": "realtime.session", "expires_at": 0,
              "voice": "alloy", "temperature": 0.8}
    ga = one({"type": "session.update", "session": echoed})
    assert ga["session"] == {"type": "realtime", "audio": {"output": {"voice": "alloy"}}}
