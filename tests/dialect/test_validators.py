"""Negative controls: the validators reject what the translation tests rely on them to reject."""

from __future__ import annotations

import pydantic
import pytest

from .samples import ASSISTANT_DONE, SEG
from .validators import (
    BETA_SERVER_TYPES,
    GA_CLIENT_TYPES,
    validate_beta_client,
    validate_beta_server,
    validate_ga_client,
    validate_ga_server,
)


def test_union_shapes() -> None:
    assert len(BETA_SERVER_TYPES) == 34
    assert len(GA_CLIENT_TYPES) == 11
    assert "transcription_session.update" not in GA_CLIENT_TYPES


def test_beta_rejects_ga_event_name() -> None:
    with pytest.raises(pydantic.ValidationError):
        validate_beta_server({"type": "response.output_audio.delta", "event_id": "e", **SEG,
                              "delta": "AA"})


def test_ga_rejects_beta_event_name() -> None:
    with pytest.raises(pydantic.ValidationError):
        validate_ga_server({"type": "response.audio.delta", "event_id": "e", **SEG,
                            "delta": "AA"})


def test_extra_key_is_caught_at_depth() -> None:
    with pytest.raises(AssertionError, match=r"item\.content\[\]\.output"):
        validate_ga_server({"type": "conversation.item.added", "event_id": "e",
                            "item": {**ASSISTANT_DONE,
                                     "content": [{"type": "output_audio", "output": "x"}]}})


def test_beta_key_in_ga_session_is_caught() -> None:
    with pytest.raises(AssertionError, match="session.modalities"):
        validate_ga_client({"type": "session.update",
                            "session": {"type": "realtime", "modalities": ["text"]}})


def test_ga_key_in_beta_session_is_caught() -> None:
    with pytest.raises(AssertionError, match="session.output_modalities"):
        validate_beta_client({"type": "session.update",
                              "session": {"output_modalities": ["text"]}})


def test_name_on_beta_function_call_done_is_caught() -> None:
    with pytest.raises(AssertionError, match="name"):
        validate_beta_server({"type": "response.function_call_arguments.done",
                              "event_id": "e", "response_id": "r", "item_id": "i",
                              "output_index": 0, "call_id": "c", "arguments": "{}",
                              "name": "f"})


def test_item_reference_input_is_still_checked() -> None:
    with pytest.raises(AssertionError, match="extra"):
        validate_ga_client({"type": "response.create", "response": {
            "input": [{"type": "item_reference", "id": "item_1", "extra": 1}]}})
