"""A GPT-Live call whose upstream (the real local engine) is killed and restarted mid-call goes
on: the gateway reconnects, starts a new Live session, replays the conversation as heard, and
the caller's next turn is transcribed and answered."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import threading
import time
from typing import cast

import pytest

from gateway.api.appkeys import CALLS
from gateway.call.session import CallSession
from tests.localrt.helpers import silence, speech
from tests.oracle import validate_live_server_event
from tests.peers import ClientPeer, PcmSourceTrack
from tests.test_e2e_local_engine import speech48
from tests.test_live_gateway import gateway, live_client, live_webrtc, recording, start
from tests.test_upstream_recovery import Feed
from tests.waiting import until


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _engine(port: int) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, "-m", "gateway", "localrt", "--host", "127.0.0.1",
                             "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    out = proc.stdout
    for line in out:
        if "listening on" in line:
            # Keep draining its log so a full pipe never blocks the engine.
            threading.Thread(target=out.read, daemon=True).start()
            return proc
    raise RuntimeError("engine failed to start")


def _deltas(peer: ClientPeer, etype: str) -> list[str]:
    return [str(e["delta"]) for e in peer.all_events if e["type"] == etype]


@pytest.mark.parametrize("stop", ["kill", "terminate"])
async def test_live_engine_restarted_mid_call(stop: str) -> None:
    port = _free_port()
    engine = await asyncio.to_thread(_engine, port)
    try:
        async with gateway(f"ws://127.0.0.1:{port}/v1/realtime") as gw:
            mic = Feed()
            peer = ClientPeer(PcmSourceTrack(mic))
            try:
                body, _ = await live_webrtc(gw, peer)
                await peer.next_event("session.started", 15)
                call = cast(CallSession, gw.app[CALLS].get(body["session"]["id"]))
                assert call is not None
                mic.say(speech48("hello", lead_s=0.5, tail_s=1.5))
                await peer.next_event("session.input_transcript.delta", 30)
                await peer.next_event("session.output_transcript.delta", 30)
                await until(lambda: call.stats.agent_audio_ms > 300, 30, "the first answer")
                first_upstream = call.upstream
                getattr(engine, stop)()  # a crash, or a restart that closes its sessions
                engine.wait()
                killed = time.monotonic()
                engine = await asyncio.to_thread(_engine, port)
                await until(lambda: call.upstream is not first_upstream, 40,
                            "the call reconnected to the restarted engine")
                heard_before = len(_deltas(peer, "session.input_transcript.delta"))
                mic.say(speech48("help", lead_s=0.3, tail_s=1.5))
                await until(lambda: len(_deltas(peer, "session.input_transcript.delta"))
                            > heard_before, 30, "the next turn's transcript")
                # help.wav says "what can you do"
                assert "what can you do" in \
                    _deltas(peer, "session.input_transcript.delta")[-1].lower()
                said_before = len(_deltas(peer, "session.output_transcript.delta"))
                await until(lambda: len(_deltas(peer, "session.output_transcript.delta"))
                            > said_before, 30, "the answer after the reconnect")
                assert time.monotonic() - killed < 90
                assert len(gw.app[CALLS]) == 1 and not call.closing
            finally:
                await peer.close()
            # The client never saw the upstream change: one session, Live events only.
            types = [e["type"] for e in peer.all_events]
            assert types.count("session.started") == 1 and "session.closed" not in types[:-1]
            for ev in peer.all_events:
                validate_live_server_event(ev)
            # The recording is one call across both upstream sessions: both caller turns and
            # an agent line after the reconnect, which is noted.
            _d, lines = await recording(gw)
            caller = [x["text"].lower() for x in lines
                      if x["kind"] == "utterance" and x["speaker"] == "caller"]
            assert any("hello" in t for t in caller) and \
                any("what can you do" in t for t in caller), caller
            kinds = [x["kind"] for x in lines]
            assert "reconnected" in kinds
            after = kinds[kinds.index("reconnected"):]
            assert any(x["kind"] == "utterance" and x["speaker"] == "agent"
                       for x in lines[len(kinds) - len(after):]), lines
    finally:
        engine.kill()
        engine.wait()


async def test_live_websocket_engine_restarted_mid_call() -> None:
    port = _free_port()
    engine = await asyncio.to_thread(_engine, port)
    try:
        async with gateway(f"ws://127.0.0.1:{port}/v1/realtime") as gw:
            async with live_client(gw) as probe:
                session = (await start(probe))["session"]
                call = cast(CallSession, gw.app[CALLS].get(session["id"]))
                assert call is not None
                await probe.append(speech("hello"), realtime=4)
                await probe.next("session.input_transcript.delta")
                await probe.next("session.output_transcript.delta")
                first_upstream = call.upstream
                engine.kill()
                engine.wait()
                engine = await asyncio.to_thread(_engine, port)
                await until(lambda: call.upstream is not first_upstream, 40,
                            "the call reconnected to the restarted engine")
                n = len(probe.of("session.input_transcript.delta"))
                await probe.append(speech("help"), realtime=4)
                await probe.append(silence(1500), realtime=4)
                await until(lambda: len(probe.of("session.input_transcript.delta")) > n, 30,
                            "the next turn's transcript")
    finally:
        engine.kill()
        engine.wait()
