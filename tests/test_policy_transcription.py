"""The policy's transcription-session shape: what a client may send to a
``session.type: "transcription"`` session, and the locks on the fields it carries."""

from __future__ import annotations

from typing import Any

import pytest
from openai.types.realtime import RealtimeTranscriptionSessionCreateRequest

from gateway.call import policy
from gateway.config import Profile

OPEN = Profile(name="open")
LOCKED = Profile(name="locked", locked=("transcription", "turn_detection", "noise_reduction",
                                        "include"))


def no_tools(name: str) -> dict[str, Any] | None:
    return None


def test_the_base_transcription_session_is_a_ga_transcription_request() -> None:
    s = policy.base_transcription_session(OPEN)
    RealtimeTranscriptionSessionCreateRequest.model_validate(s, strict=True)
    assert policy.session_kind(s) == "transcription"
    assert "model" not in policy.for_client(s, OPEN, no_tools)  # it names no model
    realtime = policy.base_session(OPEN, no_tools)
    assert policy.for_client(realtime, OPEN, no_tools)["model"] == OPEN.model


def test_an_open_profile_takes_every_transcription_field() -> None:
    update = {"type": "transcription", "include": ["item.input_audio_transcription.logprobs"],
              "audio": {"input": {"transcription": {"model": "whisper-1", "language": "de"},
                                  "noise_reduction": {"type": "far_field"},
                                  "turn_detection": {"type": "semantic_vad",
                                                     "eagerness": "low"},
                                  "format": {"type": "audio/pcmu"}}}}
    s = policy.apply_update(policy.base_transcription_session(OPEN), update, OPEN, no_tools)
    assert s["audio"]["input"] == update["audio"]["input"]  # type: ignore[index]
    assert s["include"] == update["include"]
    RealtimeTranscriptionSessionCreateRequest.model_validate(s, strict=True)


@pytest.mark.parametrize(("update", "param"), [
    ({"audio": {"input": {"transcription": {"model": "whisper-1"}}}},
     "session.audio.input.transcription"),
    ({"audio": {"input": {"turn_detection": None}}}, "session.audio.input.turn_detection"),
    ({"audio": {"input": {"noise_reduction": {"type": "near_field"}}}},
     "session.audio.input.noise_reduction"),
    ({"include": ["item.input_audio_transcription.logprobs"]}, "session.include"),
])
def test_locks_hold_on_the_fields_a_transcription_session_carries(
        update: dict[str, Any], param: str) -> None:
    base = policy.base_transcription_session(LOCKED)
    with pytest.raises(policy.PolicyError) as e:
        policy.apply_update(base, {"type": "transcription", **update}, LOCKED, no_tools)
    assert (e.value.code, e.value.param) == ("locked_field", param)
    # Repeating the session's own values is no change, locks or not.
    same = {"type": "transcription", "include": [], "audio": {"input": dict(
        base["audio"]["input"])}}
    assert policy.apply_update(base, same, LOCKED, no_tools) == base


@pytest.mark.parametrize(("update", "param", "code"), [
    ({"type": "realtime"}, "session.type", "invalid_value"),
    ({"instructions": "Talk."}, "session.instructions", "unknown_parameter"),
    ({"model": "gpt-realtime"}, "session.model", "unknown_parameter"),
    ({"audio": {"output": {"voice": "marin"}}}, "session.audio.output", "unknown_parameter"),
    ({"audio": {"input": {"speed": 1.0}}}, "session.audio.input.speed", "unknown_parameter"),
])
def test_a_transcription_session_refuses_a_conversations_fields(
        update: dict[str, Any], param: str, code: str) -> None:
    with pytest.raises(policy.PolicyError) as e:
        policy.apply_update(policy.base_transcription_session(OPEN), update, OPEN, no_tools)
    assert (e.value.param, e.value.code) == (param, code)


def test_a_realtime_session_does_not_become_a_transcription_session() -> None:
    with pytest.raises(policy.PolicyError) as e:
        policy.apply_update(policy.base_session(OPEN, no_tools), {"type": "transcription"},
                            OPEN, no_tools)
    assert e.value.param == "session.type"
