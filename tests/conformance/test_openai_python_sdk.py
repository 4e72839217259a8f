"""OpenAI's official Python SDK (``openai``, unchanged) over WebSocket through the gateway to the
local engine: an app's own instructions and client-side tool next to the profile's server
tool, server VAD, push-to-talk with a faithful input buffer, G.711, and nothing but OpenAI's
events. Each assertion is what OpenAI does for the same client code."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from gateway.api.appkeys import METRICS
from gateway.audio.g711 import alaw_encode, ulaw_encode
from tests.conformance.sdk_client import (
    APP_INSTRUCTIONS,
    CLIENT_CONFIRMATION,
    SCHEDULE_TOOL,
    Events,
    answer_tool_call,
    sdk,
    stream_audio,
)
from tests.conformance.support import check_events, speech, transcripts, upstream_tap
from tests.gateway_fixtures import running_gateway

ENV = {"OPENAI_API_KEY": ""}
# Any: the SDK's TypedDicts accept these literals; a module constant would widen them.
PCM: Any = {"type": "audio/pcm", "rate": 24000}
VAD: Any = {"type": "server_vad", "silence_duration_ms": 500}


def _tool_metric(gw: object, tool: str) -> float:
    reg = gw.app[METRICS].registry  # type: ignore[attr-defined]
    return sum(reg.get_sample_value("gateway_tool_calls_total", {"tool": tool, "outcome": o})
               or 0.0 for o in ("ok", "error", "timeout"))


async def test_sdk_client_tool_and_server_tool_in_one_call(local_engine_url: str) -> None:
    """The app's instructions and its own ``schedule_appointment`` are accepted as at OpenAI;
    the call reaches the SDK client (not the gateway's same-named tool), the client's output
    reaches the upstream and is what the agent says; the profile's ``lookup_customer`` runs on
    the gateway in the same call."""
    async with upstream_tap(local_engine_url) as tap, \
            running_gateway(tap.url, env=ENV) as gw:
        client = sdk(gw)
        async with client.realtime.connect(model="gpt-realtime") as conn:
            ev = Events(conn)
            try:
                await ev.next("session.created")
                await conn.session.update(session={
                    "type": "realtime", "instructions": APP_INSTRUCTIONS,
                    "tools": [SCHEDULE_TOOL], "tool_choice": "auto",
                    "audio": {"input": {"format": PCM, "turn_detection": VAD},
                              "output": {"format": PCM}}})
                updated = await ev.next("session.updated")
                assert not ev.of("error"), ev.of("error")
                assert updated["session"]["instructions"] == APP_INSTRUCTIONS
                assert "schedule_appointment" in [t["name"] for t in updated["session"]["tools"]]

                await stream_audio(conn, speech("schedule", 24000).tobytes(), 1920, 0.02)
                call = await ev.next("response.function_call_arguments.done", 25)
                assert call["name"] == "schedule_appointment"
                args = json.loads(call["arguments"])
                output = {"status": "booked", "date": args.get("date", ""),
                          "time": args.get("time", ""), "confirmation": CLIENT_CONFIRMATION}
                await ev.next("response.done")
                await answer_tool_call(conn, call, output)
                said = await ev.next("response.output_audio_transcript.done", 20,
                                     where=lambda e: CLIENT_CONFIRMATION in e["transcript"])
                assert said
                assert _tool_metric(gw, "schedule_appointment") == 0, \
                    "the gateway ran its own schedule_appointment in place of the client's"
                outs = [e["item"] for e in tap.sent_of("conversation.item.create")
                        if e["item"].get("type") == "function_call_output"]
                assert [o["call_id"] for o in outs] == [call["call_id"]]
                assert json.loads(outs[0]["output"]) == output
                await ev.next("response.done")

                await stream_audio(conn, speech("lookup_account", 24000).tobytes(), 1920, 0.02)
                await ev.next("response.output_audio_transcript.done", 30,
                              where=lambda e: "maria" in e["transcript"].lower())
                assert _tool_metric(gw, "lookup_customer") == 1
                check_events(ev.all, "ga")
            finally:
                await ev.close()
        await client.close()


async def test_sdk_push_to_talk_buffer_is_faithful(local_engine_url: str) -> None:
    """turn_detection null: the whole turn (its last < 40 ms too) reaches the upstream before
    the commit, nothing of it leaks into the next turn, ``clear`` discards what came before
    it, and the client's event ids are kept."""
    turn1 = speech("hello", 24000, 0.2, 0.3).tobytes() + bytes(1000)  # ends 20.8 ms into a 40
    noise = (np.random.default_rng(1).normal(0, 800, 24000 // 2)).astype(np.int16).tobytes()
    turn2 = speech("help", 24000, 0.2, 0.3).tobytes()[:-480]
    async with upstream_tap(local_engine_url) as tap, \
            running_gateway(tap.url, env=ENV) as gw:
        client = sdk(gw)
        async with client.realtime.connect(model="gpt-realtime") as conn:
            ev = Events(conn)
            try:
                await ev.next("session.created")
                await conn.session.update(session={
                    "type": "realtime", "instructions": APP_INSTRUCTIONS,
                    "audio": {"input": {"format": PCM, "turn_detection": None}}})
                updated = await ev.next("session.updated")
                assert updated["session"]["audio"]["input"]["turn_detection"] is None
                start = len(tap.sent)
                await stream_audio(conn, turn1, 4800, 0.0)
                await conn.input_audio_buffer.commit(event_id="evt_ptt_commit_1")
                await conn.response.create()
                heard1 = await ev.next(
                    "conversation.item.input_audio_transcription.completed", 20)
                await ev.next("response.done", 20)
                sent1, at_commit = tap.appended_since(start, "input_audio_buffer.commit")
                assert at_commit < len(tap.sent), "no commit reached the upstream"
                assert len(sent1) == len(turn1), \
                    f"upstream got {len(sent1)} of the turn's {len(turn1)} bytes before commit"
                assert sent1 == turn1
                assert "hello" in heard1["transcript"].lower()

                await stream_audio(conn, noise, 4800, 0.0)
                await conn.input_audio_buffer.clear(event_id="evt_ptt_clear")
                await ev.next("input_audio_buffer.cleared")
                await stream_audio(conn, turn2, 4800, 0.0)
                await conn.input_audio_buffer.commit(event_id="evt_ptt_commit_2")
                await conn.response.create()
                heard2 = await ev.next(
                    "conversation.item.input_audio_transcription.completed", 20)
                await ev.next("response.done", 20)
                between, at_clear = tap.appended_since(at_commit + 1, "input_audio_buffer.clear")
                assert at_clear < len(tap.sent), "the clear never reached the upstream"
                assert noise.startswith(between), "turn 1 audio leaked into turn 2"
                after, at_commit2 = tap.appended_since(at_clear + 1, "input_audio_buffer.commit")
                assert at_commit2 < len(tap.sent)
                assert after == turn2, \
                    f"after the clear the upstream got {len(after)} bytes, the client " \
                    f"appended {len(turn2)} (audio from before the clear, or a lost tail)"
                assert "what can you do" in heard2["transcript"].lower()
                ids = [e.get("event_id") for e in tap.sent
                       if e.get("type") in ("input_audio_buffer.commit",
                                            "input_audio_buffer.clear")]
                assert ids == ["evt_ptt_commit_1", "evt_ptt_clear", "evt_ptt_commit_2"], ids
                check_events(ev.all, "ga")
            finally:
                await ev.close()
        await client.close()


def _mulaw_to_linear(b: bytes) -> npt.NDArray[np.int16]:
    """ITU-T G.711 mu-law expansion, written from the standard (not the gateway's table)."""
    u = ~np.frombuffer(b, np.uint8).astype(np.int32) & 0xFF
    mag = (((u & 0x0F) << 3) + 0x84) << ((u >> 4) & 0x07)
    return np.where(u & 0x80, 0x84 - mag, mag - 0x84).astype(np.int16)


def _alaw_to_linear(b: bytes) -> npt.NDArray[np.int16]:
    a = np.frombuffer(b, np.uint8).astype(np.int32) ^ 0x55
    seg = (a >> 4) & 0x07
    mant = a & 0x0F
    mag = np.where(seg == 0, (mant << 4) + 8, ((mant << 4) + 0x108) << np.maximum(seg - 1, 0))
    return np.where(a & 0x80, mag, -mag).astype(np.int16)


G711: dict[str, tuple[Callable[[npt.NDArray[np.int16]], bytes],
                      Callable[[bytes], npt.NDArray[np.int16]]]] = {
    "audio/pcmu": (ulaw_encode, _mulaw_to_linear),
    "audio/pcma": (alaw_encode, _alaw_to_linear),
}


@pytest.mark.parametrize("fmt", sorted(G711))
async def test_sdk_g711_in_and_out(local_engine_url: str, fmt: str) -> None:
    """A WebSocket client speaking G.711 (8 kHz, one byte a sample) both ways, as OpenAI
    offers: heard, understood, and answered in the same format."""
    encode, decode = G711[fmt]
    async with running_gateway(local_engine_url, env=ENV) as gw:
        client = sdk(gw)
        async with client.realtime.connect(model="gpt-realtime") as conn:
            ev = Events(conn)
            try:
                await ev.next("session.created")
                g711: Any = {"type": fmt}
                await conn.session.update(session={
                    "type": "realtime", "audio": {
                        "input": {"format": g711, "turn_detection": VAD},
                        "output": {"format": g711}}})
                updated = await ev.next("session.updated")
                assert not ev.of("error"), ev.of("error")
                assert updated["session"]["audio"]["input"]["format"]["type"] == fmt
                assert updated["session"]["audio"]["output"]["format"]["type"] == fmt
                await stream_audio(conn, encode(speech("hello", 8000)), 320, 0.02)
                heard = await ev.next(
                    "conversation.item.input_audio_transcription.completed", 20)
                assert "hello" in heard["transcript"].lower()
                await ev.next("response.done", 25)
                audio = b"".join(base64.b64decode(e["delta"])
                                 for e in ev.of("response.output_audio.delta"))
                pcm = decode(audio)
                words = transcripts(ev.all)[-1].split()
                # 8 kHz, a byte a sample: about 0.2-0.6 s a word, and speech, not noise.
                assert 0.15 * len(words) < len(audio) / 8000 < 0.8 * len(words) + 1.0, \
                    (len(audio), words)
                assert np.sqrt(np.mean(pcm.astype(np.float64) ** 2)) > 300
                check_events(ev.all, "ga")
            finally:
                await ev.close()
        await client.close()

