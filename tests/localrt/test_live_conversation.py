"""GPT-Live through the official SDK client: spoken turns, client and Responses delegation,
barge-in. Every server event is validated against ``openai.types.live``."""

from __future__ import annotations

import json

from gateway.localrt.config import EngineConfig

from .conftest import StartEngine
from .helpers import silence, speech
from .live_helpers import connect_live


async def test_spoken_turn_gives_transcripts_and_audio(engine_url: str) -> None:
    async with connect_live(engine_url) as probe:
        started = await probe.start()
        session = started["session"]
        assert session["status"] == "active" and session["model"] == "local-offline"
        assert session["delegation"]["type"] == "client"
        await probe.append(speech("hello"))
        heard = await probe.next("session.input_transcript.delta")
        assert "hello" in heard["delta"]
        assert 0 <= heard["start_ms"] < heard["end_ms"]
        said = await probe.next("session.output_transcript.delta")
        assert said["delta"].startswith("Hello")
        assert said["end_ms"] > said["start_ms"] >= heard["end_ms"]
        await probe.next("session.output_audio.delta")
        await probe.append(silence(1500))
        await probe.conn.session.close(event_id="bye")
        closed = await probe.next("session.closed")
        assert closed["reason"] == "close_requested" and closed["client_event_id"] == "bye"
        assert closed["usage"]["seconds"] > 1.0
    audio = sum(len(e["delta"]) * 3 // 4 for e in probe.of("session.output_audio.delta"))
    assert audio > 48 * 500  # over half a second of 24 kHz PCM16


async def test_client_delegation_round_trip(engine_url: str) -> None:
    async with connect_live(engine_url) as probe:
        await probe.start(delegation={"type": "client", "acknowledgement_delay_ms": 5000})
        await probe.append(speech("lookup_account"))
        heard = await probe.next("session.input_transcript.delta")
        assert "account" in heard["delta"]
        created = await probe.next("session.delegation.created")
        deleg = created["delegation"]
        assert deleg["target"] == "client" and "response_id" not in deleg
        assert created["offset_ms"] >= heard["end_ms"]
        # The app does the work (it has the caller's words) and answers for the delegation.
        await probe.conn.session.thinking.append(content="Looking up 12345.",
                                                 delegation_id=deleg["id"])
        await probe.next("session.thinking.appended")
        await probe.conn.session.commentary.append(
            content=json.dumps({"customer": {"name": "Jane Doe", "account_id": "12345"}}),
            delegation_id=deleg["id"], event_id="result")
        ack = await probe.next("session.commentary.appended")
        assert ack["client_event_id"] == "result"
        said = await probe.next("session.output_transcript.delta")
        assert "Jane Doe" in said["delta"]
        await probe.next("session.output_audio.delta")
        # The pending acknowledgement was cancelled by the appends: never said.
        assert "One moment" not in probe.said()


async def test_acknowledgement_when_the_app_is_slow(engine_url: str) -> None:
    async with connect_live(engine_url) as probe:
        await probe.start()  # client delegation, acknowledgement after 0 ms
        await probe.append(speech("lookup_account"))
        await probe.next("session.delegation.created")
        said = await probe.next("session.output_transcript.delta")
        assert said["delta"].startswith("One moment")


async def test_responses_delegation_function_call(engine_url: str) -> None:
    tools = [{"type": "function", "name": "lookup_customer", "description": "Find one.",
              "parameters": {"type": "object", "properties": {"account_id": {"type": "string"}}}}]
    async with connect_live(engine_url) as probe:
        started = await probe.start(delegation={
            "type": "responses", "acknowledgement_delay_ms": 5000,
            "responses": {"model": "gpt-5-mini", "tools": tools}})
        assert started["session"]["delegation"]["responses"]["tools"] == tools
        await probe.append(speech("lookup_account"))
        created = await probe.next("session.delegation.created")
        assert created["delegation"]["target"] == "responses"
        call = await probe.next("response.event", lambda e: e["event"]["type"] ==
                                "response.function_call_arguments.done")
        assert call["delegation_id"] == created["delegation"]["id"]
        assert json.loads(call["event"]["arguments"]) == {"account_id": "12345"}
        item = (await probe.next("response.event", lambda e: e["event"]["type"] ==
                                 "response.output_item.done"))["event"]["item"]
        await probe.conn.response.item.create(item={
            "type": "function_call_output", "call_id": item["call_id"],
            "output": json.dumps({"name": "Jane Doe", "status": "active"})})
        await probe.conn.response.create()
        said = await probe.next("session.output_transcript.delta")
        assert "Jane Doe" in said["delta"]


async def test_barge_in_stops_the_agent_and_its_turn_is_heard(start_engine: StartEngine
                                                              ) -> None:
    url = await start_engine(EngineConfig(output_pace=1.0, output_lead_ms=200))
    async with connect_live(url) as probe:
        await probe.start()
        await probe.conn.session.commentary.append(
            content="Here is a long story. It goes on for a while. Then it goes on some more. "
                    "And it still does not end. It keeps going for many sentences.",
            delegation_id=None)
        await probe.next("session.output_audio.delta")
        # The agent talks in real time; the caller speaks over it, in real time too.
        await probe.append(speech("goodbye"), realtime=1.0)
        heard = await probe.next("session.input_transcript.delta")
        assert "goodbye" in heard["delta"]
        said = probe.said()
        assert "many sentences" not in said, "the agent did not yield to the caller"
        reply = await probe.next("session.output_transcript.delta",
                                 lambda e: "Goodbye" in e["delta"])
        assert reply["start_ms"] >= heard["end_ms"]


async def test_mute_sends_silence(engine_url: str) -> None:
    async with connect_live(engine_url) as probe:
        await probe.start()
        await probe.conn.session.input_audio.mute(event_id="m")
        assert (await probe.next("session.input_audio.muted"))["client_event_id"] == "m"
        await probe.append(speech("hello"))
        await probe.conn.session.input_audio.unmute()
        await probe.next("session.input_audio.unmuted")
        await probe.append(speech("goodbye"))
        heard = await probe.next("session.input_transcript.delta")
        assert "goodbye" in heard["delta"]
        assert len(probe.of("session.input_transcript.delta")) == 1
