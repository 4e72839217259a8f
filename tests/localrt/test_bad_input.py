"""Each bad input earns an ``error`` echoing the client's event_id; the session goes on."""

from __future__ import annotations

import base64
import json

import pytest

from .helpers import Probe, check_lifecycle, connect, session_body


async def _works(probe: Probe) -> None:
    """The session still answers: a typed turn, answered in text."""
    await probe.send({"type": "conversation.item.create", "item": {
        "type": "message", "role": "user",
        "content": [{"type": "input_text", "text": "hello"}]}})
    await probe.send({"type": "response.create",
                      "response": {"output_modalities": ["text"]}})
    text = await probe.next("response.output_text.done")
    assert text["text"].startswith("Hello")
    await probe.next("response.done")


async def test_events_before_session_update_are_refused(engine_url: str) -> None:
    async with connect(engine_url) as probe:
        await probe.next("session.created")
        await probe.send({"type": "input_audio_buffer.append", "audio": "AAAA",
                          "event_id": "early"})
        err = await probe.next("error")
        assert err["error"]["event_id"] == "early"
        assert err["error"]["code"] == "session_not_configured"
        await probe.send({"type": "session.update", "session": session_body()})
        await probe.next("session.updated")
        await _works(probe)


BAD_EVENTS = [
    ("invalid base64", {"type": "input_audio_buffer.append", "audio": "not base64!"},
     "invalid_value", "audio"),
    ("odd byte count", {"type": "input_audio_buffer.append",
                        "audio": base64.b64encode(b"\x00\x01\x02").decode()},
     "invalid_value", "audio"),
    ("over 15 MiB", {"type": "input_audio_buffer.append",
                     "audio": base64.b64encode(bytes(15 * 1024 * 1024 + 2)).decode()},
     "invalid_value", "audio"),
    ("wrong audio format", {"type": "session.update", "session": {
        "type": "realtime", "audio": {"input": {"format": {"type": "audio/wav"}}}}},
     "invalid_value", "session.audio.input.format.type"),
    ("pcm at 16 kHz", {"type": "session.update", "session": {
        "type": "realtime", "audio": {"input": {"format": {"type": "audio/pcm",
                                                           "rate": 16000}}}}},
     "invalid_value", "session.audio.input.format.rate"),
    ("unknown event", {"type": "input_audio_buffer.frobnicate"}, "invalid_value", "type"),
    ("beta event name", {"type": "transcription_session.update", "session": {}},
     "invalid_value", "type"),
    ("unknown session field", {"type": "session.update",
                               "session": {"type": "realtime", "voice": "alloy"}},
     "unknown_parameter", "session.voice"),
    ("session without type", {"type": "session.update", "session": {"instructions": "x"}},
     "missing_required_parameter", "session.type"),
    ("threshold out of range", {"type": "session.update", "session": {
        "type": "realtime", "audio": {"input": {"turn_detection": {
            "type": "server_vad", "threshold": 3}}}}},
     "invalid_value", "session.audio.input.turn_detection.threshold"),
    ("truncate unknown item", {"type": "conversation.item.truncate", "item_id": "item_x",
                               "content_index": 0, "audio_end_ms": 10},
     "invalid_value", "item_id"),
    ("output for no call", {"type": "conversation.item.create", "item": {
        "type": "function_call_output", "call_id": "call_nope", "output": "{}"}},
     "invalid_value", "item.call_id"),
    ("audio_end_ms not an int", {"type": "conversation.item.truncate", "item_id": "item_x",
                                 "content_index": 0, "audio_end_ms": "10"},
     "invalid_type", "audio_end_ms"),
]


@pytest.mark.parametrize(("event", "code", "param"), [b[1:] for b in BAD_EVENTS],
                         ids=[b[0] for b in BAD_EVENTS])
async def test_bad_event_is_an_error_and_the_session_goes_on(
        engine_url: str, event: dict[str, object], code: str, param: str) -> None:
    async with connect(engine_url) as probe:
        await probe.send({"type": "session.update", "session": session_body()})
        before = (await probe.next("session.updated"))["session"]
        await probe.send({**event, "event_id": "evt_bad"})
        err = await probe.next("error")
        assert err["error"]["event_id"] == "evt_bad"
        assert (err["error"]["code"], err["error"]["param"]) == (code, param), err
        if event["type"] == "session.update":  # a refused update changes nothing
            await probe.send({"type": "session.update", "session": {"type": "realtime"}})
            assert (await probe.next("session.updated"))["session"] == before
        await _works(probe)
    check_lifecycle(probe.events)


async def test_frames_that_are_not_events(engine_url: str) -> None:
    async with connect(engine_url) as probe:
        await probe.send({"type": "session.update", "session": session_body()})
        await probe.next("session.updated")
        await probe.conn.send_raw("{not json")
        assert (await probe.next("error"))["error"]["code"] == "invalid_json"
        await probe.conn.send_raw(json.dumps([1, 2]))
        assert (await probe.next("error"))["error"]["code"] == "invalid_json"
        await probe.conn.send_raw(b"\x00\x01")
        assert (await probe.next("error"))["error"]["code"] == "invalid_type"
        await probe.send({"event_id": "no_type"})
        err = await probe.next("error")
        assert (err["error"]["code"], err["error"]["event_id"]) == (
            "missing_required_parameter", "no_type")
        await _works(probe)
