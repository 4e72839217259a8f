"""Phone-leg audio (G.711 µ-law), typed turns, text output, out-of-band responses."""

from __future__ import annotations

import base64
import datetime as dt
import json

from .helpers import check_lifecycle, connect, session_body, speech, transcript_of

PCMU = {"type": "audio/pcmu"}


async def test_pcmu_phone_leg_books_an_appointment(engine_url: str) -> None:
    async with connect(engine_url) as probe:
        await probe.send({"type": "session.update", "session": session_body(format=PCMU)})
        updated = await probe.next("session.updated")
        assert updated["session"]["audio"]["output"]["format"] == PCMU
        # 8 kHz narrowband costs the wideband recogniser accuracy: a plain phrase here.
        await probe.append(speech("schedule", fmt="audio/pcmu"), fmt="audio/pcmu")
        heard = await probe.next("conversation.item.input_audio_transcription.completed")
        assert "appointment" in heard["transcript"]
        args = await probe.next("response.function_call_arguments.done")
        assert args["name"] == "schedule_appointment"
        booked = json.loads(args["arguments"])
        assert booked["time"] == "15:00"
        assert dt.date.fromisoformat(booked["date"]).weekday() == 1  # a Tuesday
        await probe.next("response.done")
        await probe.send({"type": "conversation.item.create", "item": {
            "type": "function_call_output", "call_id": args["call_id"],
            "output": json.dumps({"status": "booked", "date": booked["date"], "time": "15:00",
                                  "name": "Jane Doe"})}})
        await probe.send({"type": "response.create"})
        done = await probe.next("response.done")
        said = transcript_of(probe, done["response"]["id"])
        assert "Jane Doe" in said and "Tuesday" in said and "3 PM" in said
        deltas = [base64.b64decode(e["delta"]) for e in probe.of("response.output_audio.delta")
                  if e["response_id"] == done["response"]["id"]]
        audio = b"".join(deltas)
        assert len(audio) > 8 * 1000  # over a second of 8 kHz µ-law, one byte a sample
        assert len(deltas[0]) == 8 * 100  # 100 ms deltas
    check_lifecycle(probe.events)


async def test_typed_turns_text_output_and_out_of_band(engine_url: str) -> None:
    async with connect(engine_url) as probe:
        await probe.send({"type": "session.update", "session": session_body(
            output_modalities=["text"], turn_detection=None)})
        await probe.next("session.updated")
        await probe.send({"type": "conversation.item.create", "item": {
            "type": "message", "role": "user",
            "content": [{"type": "input_text", "text": "What can you do?"}]}})
        await probe.send({"type": "response.create"})
        text = await probe.next("response.output_text.done")
        assert "look up a customer" in text["text"]
        assert not probe.of("response.output_audio.delta")
        await probe.next("response.done")

        # A filler spoken out of band, as a gateway does while a slow tool runs.
        await probe.send({"type": "response.create", "response": {
            "conversation": "none", "output_modalities": ["audio"],
            "instructions": 'Say "One moment while I look that up."',
            "metadata": {"purpose": "filler"}}})
        done = await probe.next("response.done")
        assert done["response"]["conversation_id"] is None
        assert done["response"]["metadata"] == {"purpose": "filler"}
        assert transcript_of(probe, done["response"]["id"]) == \
            "One moment while I look that up."
        added = {e["item"]["id"] for e in probe.of("conversation.item.added")}
        assert done["response"]["output"][0]["id"] not in added  # not in the conversation

        # tool_choice naming a function forces the call.
        await probe.send({"type": "conversation.item.create", "item": {
            "type": "message", "role": "user",
            "content": [{"type": "input_text", "text": "my account number is 4 4 5 5 6"}]}})
        await probe.send({"type": "response.create", "response": {
            "tool_choice": {"type": "function", "name": "lookup_customer"}}})
        args = await probe.next("response.function_call_arguments.done")
        assert json.loads(args["arguments"]) == {"account_id": "44556"}
        await probe.next("response.done")

        item_id = args["item_id"]
        await probe.send({"type": "conversation.item.delete", "item_id": item_id})
        assert (await probe.next("conversation.item.deleted"))["item_id"] == item_id
    check_lifecycle(probe.events)


async def test_semantic_vad_and_defaults(engine_url: str) -> None:
    async with connect(engine_url) as probe:
        created = (await probe.next("session.created"))["session"]
        assert created["audio"]["input"]["turn_detection"]["type"] == "server_vad"
        await probe.send({"type": "session.update", "session": session_body(
            turn_detection={"type": "semantic_vad", "eagerness": "high"})})
        updated = (await probe.next("session.updated"))["session"]
        assert updated["audio"]["input"]["turn_detection"] == {
            "type": "semantic_vad", "eagerness": "high", "create_response": True,
            "interrupt_response": True}
        await probe.append(speech("goodbye", silence_ms=600))
        done = await probe.next("response.done")
        assert "Goodbye" in transcript_of(probe, done["response"]["id"])
