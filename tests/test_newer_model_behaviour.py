"""Newer model behaviour passes through the gateway intact, against the local engine, with the
openai SDK over WebSocket: a preamble (an audio item, then a function call, in ONE
response), ``semantic_vad`` with noise reduction, and ``idle_timeout_ms`` with
``input_audio_buffer.timeout_triggered``. Every event the client gets validates against the
GA types (tests/oracle.py) with no undeclared key."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
from openai import AsyncOpenAI
from openai.resources.realtime.realtime import AsyncRealtimeConnection

from tests.gateway_fixtures import API_KEY, running_gateway
from tests.oracle import validate_server_event
from tests.test_ws_local_engine import speech24, stream

NO_KEY = {"OPENAI_API_KEY": ""}
LOOKUP: Any = {"type": "function", "name": "lookup_customer", "description": "Find a customer.",
          "parameters": {"type": "object", "properties": {"phone": {"type": "string"}}}}


@contextlib.asynccontextmanager
async def sdk_connection(base: str) -> AsyncIterator[AsyncRealtimeConnection]:
    client = AsyncOpenAI(api_key=API_KEY, websocket_base_url=base.replace("http", "ws") + "/v1")
    try:
        async with client.realtime.connect(model="gpt-realtime") as conn:
            yield conn
    finally:
        await client.close()


async def events_until(conn: AsyncRealtimeConnection, done: Any, timeout_s: float = 40
                       ) -> list[dict[str, Any]]:
    """Raw events, each validated, until ``done(events)`` holds."""
    out: list[dict[str, Any]] = []
    async with asyncio.timeout(timeout_s):
        while not out or not done(out):
            ev = json.loads(await conn.recv_bytes())
            validate_server_event(ev)
            out.append(ev)
    return out


def of(events: list[dict[str, Any]], etype: str) -> list[dict[str, Any]]:
    return [e for e in events if e["type"] == etype]


async def test_a_preamble_and_a_function_call_in_one_response(local_engine_url: str) -> None:
    async with running_gateway(local_engine_url, env=NO_KEY) as gw:
        async with sdk_connection(gw.base) as conn:
            await conn.session.update(session={
                "type": "realtime", "tools": [LOOKUP], "audio": {"input": {
                    "turn_detection": None}},
                "instructions": "Before calling a tool, say a short preamble."})
            await events_until(conn, lambda ev: ev[-1]["type"] == "session.updated")
            await conn.conversation.item.create(item={
                "type": "message", "role": "user", "content": [{
                    "type": "input_text", "text": "Look up the customer with phone number "
                                                  "5 5 5 1 2 3 4"}]})
            await conn.response.create()
            events = await events_until(conn, lambda ev: ev[-1]["type"] == "response.done")
            (done,) = of(events, "response.done")
            output = done["response"]["output"]
            assert [o["type"] for o in output] == ["message", "function_call"]
            assert done["response"]["status"] == "completed"
            preamble, call = output
            assert preamble["content"][0]["transcript"] == "One moment, let me check that."
            assert call["name"] == "lookup_customer"
            # Each item opened and closed in order, the audio belonging to the first.
            added = of(events, "response.output_item.added")
            assert [(e["output_index"], e["item"]["type"]) for e in added] == [
                (0, "message"), (1, "function_call")]
            deltas = of(events, "response.output_audio.delta")
            assert deltas and {d["item_id"] for d in deltas} == {preamble["id"]}
            assert sum(len(base64.b64decode(d["delta"])) for d in deltas) > 24000  # > 0.5 s
            (args,) = of(events, "response.function_call_arguments.done")
            assert args["output_index"] == 1 and "5551234" in args["arguments"]
            # A client tool: the gateway ran nothing; the client answers, the agent speaks.
            await conn.conversation.item.create(item={
                "type": "function_call_output", "call_id": call["call_id"],
                "output": json.dumps({"name": "Jane Doe", "account_id": "12345"})})
            await conn.response.create()
            events = await events_until(conn, lambda ev: ev[-1]["type"] == "response.done")
            said = of(events, "response.output_audio_transcript.done")
            assert said and "Jane Doe" in said[-1]["transcript"]


async def test_semantic_vad_and_noise_reduction_pass_through(local_engine_url: str) -> None:
    async with running_gateway(local_engine_url, env=NO_KEY) as gw:
        async with sdk_connection(gw.base) as conn:
            await conn.session.update(session={
                "type": "realtime", "audio": {"input": {
                    "turn_detection": {"type": "semantic_vad", "eagerness": "high"},
                    "noise_reduction": {"type": "far_field"},
                    "transcription": {"model": "gpt-4o-mini-transcribe"}}}})
            events = await events_until(conn, lambda ev: ev[-1]["type"] == "session.updated")
            a_in = events[-1]["session"]["audio"]["input"]
            assert a_in["turn_detection"]["type"] == "semantic_vad"
            assert a_in["turn_detection"]["eagerness"] == "high"
            assert a_in["noise_reduction"] == {"type": "far_field"}

            async def append(b64: str) -> None:
                await conn.input_audio_buffer.append(audio=b64)

            sender = asyncio.ensure_future(stream(append, speech24("hello")))
            try:
                events = await events_until(conn, lambda ev: ev[-1]["type"] == "response.done")
            finally:
                sender.cancel()
                await asyncio.gather(sender, return_exceptions=True)
            (stopped,) = of(events, "input_audio_buffer.speech_stopped")
            (committed,) = of(events, "input_audio_buffer.committed")
            assert committed["item_id"] == stopped["item_id"]
            heard = of(events, "conversation.item.input_audio_transcription.completed")
            assert "hello" in heard[0]["transcript"].lower()
            assert of(events, "response.output_audio.delta")


async def test_idle_timeout_triggers_a_committed_empty_turn_and_a_response(
        local_engine_url: str) -> None:
    async with running_gateway(local_engine_url, env=NO_KEY) as gw:
        async with sdk_connection(gw.base) as conn:
            await conn.session.update(session={
                "type": "realtime", "audio": {"input": {"turn_detection": {
                    "type": "server_vad", "silence_duration_ms": 500,
                    "idle_timeout_ms": 1500}}}})
            events = await events_until(conn, lambda ev: ev[-1]["type"] == "session.updated")
            assert events[-1]["session"]["audio"]["input"]["turn_detection"][
                "idle_timeout_ms"] == 1500

            async def append(b64: str) -> None:
                await conn.input_audio_buffer.append(audio=b64)

            # The caller speaks once, then stays silent (the microphone keeps sending).
            pcm = speech24("hello") + np.zeros(24000 * 8, np.int16).tobytes()
            sender = asyncio.ensure_future(stream(append, pcm))
            try:
                events = await events_until(
                    conn, lambda ev: len(of(ev, "response.done")) == 2)
            finally:
                sender.cancel()
                await asyncio.gather(sender, return_exceptions=True)
            types = [e["type"] for e in events]
            (fired,) = of(events, "input_audio_buffer.timeout_triggered")
            at = types.index("input_audio_buffer.timeout_triggered")
            first_done = types.index("response.done")
            assert first_done < at  # after the agent's answer ...
            # ... as long after its audio played out as the timeout says.
            assert 1500 <= fired["audio_end_ms"] - fired["audio_start_ms"] <= 1800
            answer_ms = sum(len(base64.b64decode(e["delta"])) for e in
                            of(events[:first_done], "response.output_audio.delta")) / 48
            (stopped,) = of(events, "input_audio_buffer.speech_stopped")
            assert fired["audio_start_ms"] >= stopped["audio_end_ms"] + answer_ms - 1
            # The silent buffer is committed as the item the event named, then a response.
            committed = [e for e in events[at:] if e["type"] == "input_audio_buffer.committed"]
            assert committed and committed[0]["item_id"] == fired["item_id"]
            assert types.index("response.created", at) > types.index(
                "input_audio_buffer.committed", at)
            said = of(events[at:], "response.output_audio_transcript.done")
            assert said and said[0]["transcript"] == "Are you still there?"
