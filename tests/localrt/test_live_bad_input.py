"""Bad GPT-Live input answered as Live answers it: an ``error`` event (validated against
``openai.types.live.ErrorEvent``) echoing the command's id, and the session goes on."""

from __future__ import annotations

import json
from typing import Any

import pytest

from .helpers import Event, speech
from .live_helpers import LIVE_SESSION, LiveProbe, connect_live


async def _error(probe: LiveProbe, event: Event) -> dict[str, Any]:
    await probe.send(event)
    err = await probe.next("error")
    return dict(err["error"])


async def test_events_before_session_started_are_refused(engine_url: str) -> None:
    async with connect_live(engine_url) as probe:
        err = await _error(probe, {"type": "session.input_audio.mute", "event_id": "early"})
        assert err["code"] == "session_not_started" and err["client_event_id"] == "early"
        assert probe.of("error")[0]["client_event_id"] == "early"
        started = await probe.start()  # the session still starts
        assert started["session"]["id"].startswith("sess_")
        err = await _error(probe, {"type": "session.start", "session": LIVE_SESSION})
        assert err["type"] == "invalid_request_error"


@pytest.mark.parametrize(("session", "param"), [
    ({**LIVE_SESSION, "voice": "marin"}, "session.voice"),
    ({**LIVE_SESSION, "audio": {"format": {"type": "audio/pcm", "rate": 24000,
                                           "channels": 1}}}, "session.audio.format.channels"),
    ({**LIVE_SESSION, "delegation": {"type": "client", "tools": []}},
     "session.delegation.tools"),
    ({**LIVE_SESSION, "input": [{"role": "user", "content": [{"text": "hi", "lang": "en"}]}]},
     "session.input[0].content[0].lang"),
])
async def test_unknown_fields_in_session_start(engine_url: str, session: Event,
                                               param: str) -> None:
    async with connect_live(engine_url) as probe:
        err = await _error(probe, {"type": "session.start", "event_id": "s1",
                                   "session": session})
        assert (err["code"], err["param"]) == ("unknown_parameter", param)
        await probe.start()


async def test_invalid_values_in_session_start(engine_url: str) -> None:
    async with connect_live(engine_url) as probe:
        no_model = {k: v for k, v in LIVE_SESSION.items() if k != "model"}
        err = await _error(probe, {"type": "session.start", "session": no_model})
        assert (err["code"], err["param"]) == ("missing_required_parameter", "session.model")
        bad_rate = {**LIVE_SESSION, "audio": {"format": {"type": "audio/pcm", "rate": 44100}}}
        err = await _error(probe, {"type": "session.start", "session": bad_rate})
        assert (err["code"], err["param"]) == ("invalid_value", "session.audio.format.rate")


async def test_bad_commands_in_a_started_session(engine_url: str) -> None:
    async with connect_live(engine_url) as probe:
        await probe.start()
        cases: list[tuple[Event, str, str | None]] = [
            ({"type": "session.input_audio.append", "audio": "AAAA", "rate": 1},
             "unknown_parameter", "rate"),
            ({"type": "session.input_audio.append", "audio": "%%%"}, "invalid_value", "audio"),
            ({"type": "session.commentary.append", "content": "hi"},
             "missing_required_parameter", "delegation_id"),
            ({"type": "session.commentary.append", "content": "hi", "delegation_id": "nope"},
             "invalid_value", "delegation_id"),
            ({"type": "session.update", "session": {"instructions": "x"}},
             "unknown_parameter", "session.instructions"),
            ({"type": "session.update", "session": {"delegation": {
                "type": "responses", "responses": {"model": "m"}}}},
             "invalid_value", "session.delegation.type"),
            ({"type": "response.create"}, "invalid_request", "type"),
            ({"type": "input_audio_buffer.commit"}, "invalid_value", "type"),
        ]
        for i, (event, code, param) in enumerate(cases):
            err = await _error(probe, {**event, "event_id": f"e{i}"})
            assert (err["code"], err["param"], err["client_event_id"]) == (code, param, f"e{i}")
        await probe.send({"type": "session.update", "event_id": "u",
                          "session": {"delegation": {"type": "client",
                                                     "acknowledgement_delay_ms": 250}}})
        updated = await probe.next("session.updated")
        assert updated["session"]["delegation"]["acknowledgement_delay_ms"] == 250
        # Invalid JSON and binary frames: errors without a command id.
        await probe.conn.send_raw("{nope")
        assert (await probe.next("error"))["error"]["code"] == "invalid_json"
        # The session still works.
        await probe.append(speech("hello"))
        assert "hello" in (await probe.next("session.input_transcript.delta"))["delta"]


async def test_commands_after_close_are_refused(engine_url: str) -> None:
    async with connect_live(engine_url) as probe:
        await probe.start()
        # Both frames reach the engine before it acts on the first.
        await probe.conn.send_raw(json.dumps({"type": "session.close"}))
        await probe.conn.send_raw(json.dumps({"type": "session.input_audio.mute",
                                              "event_id": "late"}))
        closed = await probe.next("session.closed")
        assert closed["reason"] == "close_requested"
        err = await probe.next("error")
        assert (err["error"]["code"], err["client_event_id"]) == ("session_closed", "late")
        await probe.wait_closed()
