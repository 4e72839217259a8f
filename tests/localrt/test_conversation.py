"""A whole spoken conversation through the official SDK client, every event validated."""

from __future__ import annotations

import json

from .helpers import check_lifecycle, connect, session_body, speech, transcript_of


async def test_spoken_conversation_with_tool_round_trip(engine_url: str) -> None:
    async with connect(engine_url) as probe:
        created = await probe.next("session.created")
        assert created["session"]["model"] == "local-offline"
        await probe.conn.session.update(session=session_body())
        updated = await probe.next("session.updated")
        assert updated["session"]["audio"]["input"]["turn_detection"]["type"] == "server_vad"

        # Turn 1: a greeting.
        await probe.append(speech("hello"))
        started = await probe.next("input_audio_buffer.speech_started")
        stopped = await probe.next("input_audio_buffer.speech_stopped")
        assert stopped["item_id"] == started["item_id"]
        heard = await probe.next("conversation.item.input_audio_transcription.completed")
        assert "hello" in heard["transcript"]
        done = await probe.next("response.done")
        assert done["response"]["status"] == "completed"
        assert "Hello" in transcript_of(probe, done["response"]["id"])
        assert probe.of("response.output_audio.delta")

        # Turn 2: a lookup, answered by the client's tool output.
        await probe.append(speech("lookup_account"))
        heard = await probe.next("conversation.item.input_audio_transcription.completed")
        assert "account" in heard["transcript"]
        args = await probe.next("response.function_call_arguments.done")
        assert args["name"] == "lookup_customer"
        assert json.loads(args["arguments"]) == {"account_id": "12345"}
        await probe.next("response.done")
        await probe.conn.conversation.item.create(item={
            "type": "function_call_output", "call_id": args["call_id"],
            "output": json.dumps({"customer": {"name": "Jane Doe", "account_id": "12345"}})})
        await probe.next("conversation.item.done")
        await probe.conn.response.create()
        done = await probe.next("response.done")
        assert "Jane Doe" in transcript_of(probe, done["response"]["id"])

        # Turn 3: out of the agent's domain: the generic model hears it, the agent repeats it.
        await probe.append(speech("weather"))
        heard = await probe.next("conversation.item.input_audio_transcription.completed")
        assert {"weather", "lovely", "today"} <= set(heard["transcript"].split())
        done = await probe.next("response.done")
        assert "weather is lovely" in transcript_of(probe, done["response"]["id"])

    check_lifecycle(probe.events)
