"""The upstream drops mid-call: the call goes on, with its conversation re-seeded."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import time

import numpy as np
import numpy.typing as npt

from gateway.api.appkeys import CALLS
from tests.fake_upstream import running_fake
from tests.gateway_fixtures import running_gateway
from tests.peers import FRAME, ClientPeer, PcmSourceTrack, tone
from tests.test_e2e_local_engine import speech48
from tests.waiting import until


class Feed:
    """A microphone the test talks into while the call runs."""

    def __init__(self) -> None:
        self.buf = np.zeros(0, np.int16)

    def say(self, pcm48: npt.NDArray[np.int16]) -> None:
        self.buf = np.concatenate([self.buf, pcm48])

    def __call__(self, i: int) -> npt.NDArray[np.int16]:
        out = self.buf[:FRAME]
        self.buf = self.buf[FRAME:]
        return out if len(out) == FRAME else np.zeros(FRAME, np.int16)


async def test_dropped_upstream_reconnects_and_reseeds() -> None:
    async with running_fake() as (fake, url), running_gateway(url) as gw:
        peer = ClientPeer(PcmSourceTrack(tone(300, -30)))
        try:
            await peer.connect(gw.http, f"{gw.base}/v1/realtime/calls", await gw.mint())
            await peer.next_event("session.created")
            await fake.transcribe("what are your opening hours")
            t = np.arange(4800) / 24000
            fake.say((5000 * np.sin(2 * np.pi * 500 * t)).astype(np.int16), "nine to five")
            await peer.next_event("output_audio_buffer.stopped")
            first = fake.conn
            await first.ws.close()  # the upstream goes away mid-call
            await until(lambda: len(fake.conns) >= 2 and any(
                e["type"] == "conversation.item.create" for e in fake.conns[1].received),
                10, "the conversation was re-seeded upstream")
            await asyncio.sleep(0.2)
            seeded = [e["item"] for e in fake.conns[1].received
                      if e["type"] == "conversation.item.create"]
            assert [(i["role"], i["content"][0]["text"]) for i in seeded] == [
                ("user", "what are your opening hours"), ("assistant", "nine to five")]
            assert len(gw.app[CALLS]) == 1
            fake.say((5000 * np.sin(2 * np.pi * 900 * t)).astype(np.int16), "still here")
            done = await peer.next_event("response.done", timeout_s=5)
            assert done["response"]["status"] == "completed"
        finally:
            await peer.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _engine(port: int) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, "-m", "gateway", "localrt", "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    for line in proc.stdout:
        if "listening on" in line:
            return proc
    raise RuntimeError("engine failed to start")


async def test_local_engine_restarted_mid_call() -> None:
    port = _free_port()
    engine = await asyncio.to_thread(_engine, port)
    try:
        async with running_gateway(f"ws://127.0.0.1:{port}/v1/realtime",
                                   env={"OPENAI_API_KEY": ""}) as gw:
            mic = Feed()
            peer = ClientPeer(PcmSourceTrack(mic))
            try:
                await peer.connect(gw.http, f"{gw.base}/v1/realtime/calls", await gw.mint())
                mic.say(speech48("hello", lead_s=0.5, tail_s=1.5))
                await peer.next_event("output_audio_buffer.stopped", timeout_s=25)
                call = gw.app[CALLS].get(peer.location.rsplit("/", 1)[1])  # type: ignore[union-attr]
                first_upstream = call.upstream  # type: ignore[union-attr]
                engine.kill()
                engine.wait()
                killed = time.monotonic()
                engine = await asyncio.to_thread(_engine, port)
                await until(lambda: call.upstream is not first_upstream,  # type: ignore[union-attr]
                            40, "the call reconnected to the restarted engine")
                await asyncio.sleep(1.0)
                mic.say(speech48("help", lead_s=0.3, tail_s=1.5))
                await peer.next_event("output_audio_buffer.stopped", timeout_s=30)
                assert time.monotonic() - killed < 60
                assert len(gw.app[CALLS]) == 1
                texts = [e["transcript"] for e in peer.all_events
                         if e["type"] == "conversation.item.input_audio_transcription.completed"]
                assert len(texts) == 2, texts
            finally:
                await peer.close()
    finally:
        engine.kill()
        engine.wait()
