"""Server programs over WebSocket holding a spoken turn with the local engine through the
gateway: the openai SDK's GA client, and a beta-era client with plain websockets."""

from __future__ import annotations

import asyncio
import base64
import json
import wave

import numpy as np
import websockets
from openai import AsyncOpenAI

from tests.gateway_fixtures import API_KEY, running_gateway
from tests.test_e2e_local_engine import SPEECH


def speech24(name: str) -> bytes:
    with wave.open(str(SPEECH / f"{name}.wav")) as w:
        x = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
        rate = w.getframerate()
    t = np.arange(int(len(x) * 24000 / rate)) / 24000
    y = np.interp(t, np.arange(len(x)) / rate, x).astype(np.int16)
    return np.concatenate([y, np.zeros(24000 * 2, np.int16)]).tobytes()


async def stream(send: object, pcm: bytes) -> None:
    """40 ms appends at twice real time (the engine keeps up; keeps the test short)."""
    for i in range(0, len(pcm), 1920):
        await send(base64.b64encode(pcm[i:i + 1920]).decode())  # type: ignore[operator]
        await asyncio.sleep(0.02)


async def test_openai_sdk_holds_a_spoken_turn(local_engine_url: str) -> None:
    async with running_gateway(local_engine_url, env={"OPENAI_API_KEY": ""}) as gw:
        client = AsyncOpenAI(api_key=API_KEY,
                             websocket_base_url=gw.base.replace("http", "ws") + "/v1")
        async with client.realtime.connect(model="gpt-realtime") as conn:
            assert (await conn.recv()).type == "session.created"

            async def append(b64: str) -> None:
                await conn.input_audio_buffer.append(audio=b64)

            sender = asyncio.ensure_future(stream(append, speech24("hello")))
            heard, caller, agent = 0, "", ""
            try:
                async with asyncio.timeout(30):
                    async for ev in conn:
                        if ev.type == "conversation.item.input_audio_transcription.completed":
                            caller = ev.transcript
                        elif ev.type == "response.output_audio.delta":
                            heard += len(base64.b64decode(ev.delta))
                        elif ev.type == "response.output_audio_transcript.done":
                            agent = ev.transcript
                        elif ev.type == "response.done":
                            break
            finally:
                sender.cancel()
                await asyncio.gather(sender, return_exceptions=True)
            assert "hello" in caller.lower()
            assert agent and heard > 24000 * 2 * 0.5  # at least half a second of speech
        await client.close()


async def test_beta_websocket_client_holds_a_spoken_turn(local_engine_url: str) -> None:
    async with running_gateway(local_engine_url, env={"OPENAI_API_KEY": ""}) as gw:
        url = gw.base.replace("http", "ws") + "/v1/realtime?model=gpt-4o-realtime-preview"
        async with websockets.connect(url, additional_headers={
                "Authorization": f"Bearer {API_KEY}", "OpenAI-Beta": "realtime=v1"}) as ws:
            assert json.loads(await ws.recv())["type"] == "session.created"
            await ws.send(json.dumps({"type": "session.update", "session": {
                "modalities": ["text", "audio"], "input_audio_format": "pcm16",
                "turn_detection": {"type": "server_vad", "silence_duration_ms": 500}}}))

            async def append(b64: str) -> None:
                await ws.send(json.dumps({"type": "input_audio_buffer.append", "audio": b64}))

            sender = asyncio.ensure_future(stream(append, speech24("help")))
            types: list[str] = []
            try:
                async with asyncio.timeout(30):
                    while "response.done" not in types:
                        types.append(json.loads(await ws.recv())["type"])
            finally:
                sender.cancel()
                await asyncio.gather(sender, return_exceptions=True)
            assert "response.audio.delta" in types
            assert "response.audio_transcript.done" in types
            assert "conversation.item.input_audio_transcription.completed" in types
            assert not [t for t in types if t.startswith(("response.output_audio",
                                                         "response.output_text"))]
