"""End to end with real parts only: an aiortc caller, the gateway, the offline local engine.

The caller speaks recorded phrases; the engine hears them (VAD + ASR), calls the demo tool
the gateway runs against its SQLite database, and speaks the answer back over RTP.
"""

from __future__ import annotations

import time
import wave
from pathlib import Path

import numpy as np

from gateway.api.appkeys import METRICS
from tests.gateway_fixtures import running_gateway
from tests.peers import ClientPeer, PcmSourceTrack, from_pcm

SPEECH = Path(__file__).parent / "fixtures" / "speech"


def speech48(name: str, lead_s: float = 1.0, tail_s: float = 6.0) -> np.ndarray:
    with wave.open(str(SPEECH / f"{name}.wav")) as w:
        rate = w.getframerate()
        x = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
    assert 48000 % rate == 0
    up = np.repeat(x, 48000 // rate)  # crude but fine for ASR after the gateway's filters
    return np.concatenate([np.zeros(int(48000 * lead_s), np.int16), up,
                           np.zeros(int(48000 * tail_s), np.int16)])


async def test_spoken_lookup_runs_the_tool_and_the_answer_is_heard(local_engine_url: str
                                                                     ) -> None:
    async with running_gateway(local_engine_url, env={"OPENAI_API_KEY": ""}) as gw:
        peer = ClientPeer(PcmSourceTrack(from_pcm(speech48("lookup_account"))))
        try:
            await peer.connect(gw.http, f"{gw.base}/v1/realtime/calls", await gw.mint())
            created = await peer.next_event("session.created")
            assert created["session"]["model"] == "gpt-realtime"  # not "local-offline"
            said = await peer.next_event(
                "conversation.item.input_audio_transcription.completed", timeout_s=20)
            assert "one two three four five" in said["transcript"].lower()
            call = await peer.next_event("response.function_call_arguments.done", timeout_s=20)
            assert call["name"] == "lookup_customer"
            # The gateway ran the tool and the engine spoke the result.
            deadline = time.monotonic() + 25
            while time.monotonic() < deadline:
                done = await peer.next_event("response.output_audio_transcript.done",
                                             timeout_s=deadline - time.monotonic())
                if "maria" in done["transcript"].lower():
                    break
            else:
                raise AssertionError("the answer never named the customer")
            stopped = await peer.next_event("output_audio_buffer.stopped", timeout_s=20)
            assert stopped["response_id"]
            heard = peer.received_audio()
            assert np.count_nonzero(np.abs(heard) > 1000) > 48000 * 0.5  # speech was heard
            reg = gw.app[METRICS].registry
            assert reg.get_sample_value("gateway_tool_calls_total",
                                        {"tool": "lookup_customer", "outcome": "ok"}) == 1
            assert (reg.get_sample_value("gateway_turn_latency_seconds_count",
                                         {"transport": "webrtc"}) or 0) >= 1
        finally:
            await peer.close()
