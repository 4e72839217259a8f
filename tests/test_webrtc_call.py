"""A real aiortc client peer through the gateway to a scripted, GA-validated upstream."""

from __future__ import annotations

import asyncio
import time

import numpy as np

from gateway.api.appkeys import CALLS
from tests.fake_upstream import REAL_MODEL, running_fake
from tests.gateway_fixtures import running_gateway
from tests.peers import ClientPeer, PcmSourceTrack, dominant_freq, rms_dbfs, tone
from tests.waiting import until


async def test_tone_reaches_upstream_and_agent_audio_reaches_client() -> None:
    async with running_fake() as (fake, url), running_gateway(url) as gw:
        token = await gw.mint({"type": "realtime", "model": "gpt-realtime"})
        peer = ClientPeer(PcmSourceTrack(tone(440.0, -20.0)))
        try:
            await peer.connect(gw.http, f"{gw.base}/v1/realtime/calls", token)
            assert peer.location and peer.location.startswith("/v1/realtime/calls/rtc_")
            created = await peer.next_event("session.created")
            # The upstream's model and key never reach the client.
            assert created["session"]["model"] == "gpt-realtime"
            assert REAL_MODEL not in str(peer.all_events)
            assert "Bearer sk-upstream-secret-never-shown" == fake.conn.headers["Authorization"]

            # Caller -> upstream: 1.5 s of a 440 Hz tone at -20 dBFS, through Opus.
            await until(lambda: len(fake.conn.audio) >= 48 * 2500,
                        10, '2.5 s of caller audio reached the upstream')
            pcm = np.frombuffer(bytes(fake.conn.audio), dtype="<i2")[-24000:]
            assert abs(dominant_freq(pcm, 24000) - 440.0) < 5
            assert abs(rms_dbfs(pcm) - (-20.0)) < 1.5
            appends = [e for e in fake.conn.received if e["type"] == "input_audio_buffer.append"]
            sizes = {len(e["audio"]) for e in appends[1:-1]}
            assert sizes == {len(__import__("base64").b64encode(bytes(40 * 48)))}  # 40 ms each

            # Upstream -> caller: a 1 kHz tone, heard by the client over RTP.
            t = np.arange(24000) / 24000
            fake.say((8000 * np.sin(2 * np.pi * 1000 * t)).astype(np.int16), "a tone")
            started = time.monotonic()
            await peer.next_event("output_audio_buffer.started")
            done = await peer.next_event("response.done")
            assert done["response"]["status"] == "completed"
            await peer.next_event("output_audio_buffer.stopped", timeout_s=5)
            heard = peer.received_audio(since=started)
            loud = heard[np.abs(heard) > 2000]
            assert len(loud) > 48000 * 0.5  # most of the second was heard
            seg = heard[np.argmax(np.abs(heard) > 2000):][:48000]
            assert abs(dominant_freq(seg, 48000) - 1000.0) < 10
            # Audio deltas go over RTP, never over the data channel (as with OpenAI's WebRTC).
            assert not [e for e in peer.all_events if e["type"] == "response.output_audio.delta"]
            assert any(e["type"] == "response.output_audio_transcript.delta"
                       for e in peer.all_events)
        finally:
            await peer.close()
        # The client closing its peer ends the call.
        await until(lambda: not gw.app[CALLS], 10, 'the call ended')


LOCKED_INSTRUCTIONS = """
[profiles.locked]
model = "gpt-realtime"
locked = ["instructions"]
"""


async def test_client_events_flow_upstream_after_policy() -> None:
    async with running_fake() as (fake, url), running_gateway(url, toml=LOCKED_INSTRUCTIONS) as gw:
        token = await gw.mint()
        peer = ClientPeer(PcmSourceTrack(tone(300.0, -30.0)))
        try:
            await peer.connect(gw.http, f"{gw.base}/v1/realtime/calls", token)
            await peer.next_event("session.created")
            peer.send({"type": "session.update", "event_id": "c1",
                       "session": {"type": "realtime", "audio": {"output": {"voice": "cedar"}}}})
            upd = await peer.next_event("session.updated")
            assert upd["session"]["audio"]["output"]["voice"] == "cedar"
            assert upd["session"]["model"] == "gpt-realtime"
            # instructions are locked by this profile: refused, with the field named.
            peer.send({"type": "session.update", "event_id": "c2",
                       "session": {"type": "realtime", "instructions": "be rude"}})
            err = await peer.next_event("error")
            assert err["error"]["param"] == "session.instructions"
            assert err["error"]["event_id"] == "c2"
            assert "locked" in err["error"]["message"]
            peer.send({"type": "conversation.item.create", "item": {
                "type": "message", "role": "user",
                "content": [{"type": "input_text", "text": "hello"}]}})
            await until(lambda: any(e["type"] == "conversation.item.create"
                                    for e in fake.conn.received),
                        5, "the item reached the upstream")
            assert not any(e.get("session", {}).get("instructions") == "be rude"
                           for e in fake.conn.received)
        finally:
            await peer.close()


async def test_barge_in_stops_audio_and_truncates() -> None:
    async with running_fake() as (fake, url), running_gateway(url) as gw:
        peer = ClientPeer(PcmSourceTrack(tone(200.0, -40.0)))
        try:
            await peer.connect(gw.http, f"{gw.base}/v1/realtime/calls", await gw.mint())
            await peer.next_event("session.created")
            t = np.arange(24000 * 5) / 24000
            fake.say((8000 * np.sin(2 * np.pi * 800 * t)).astype(np.int16), "long answer",
                     speed=2.0)
            await peer.next_event("output_audio_buffer.started")
            peer.received.clear()
            await asyncio.sleep(1.0)
            await fake.speech_started()
            cleared = await peer.next_event("output_audio_buffer.cleared")
            cut_at = time.monotonic()
            assert cleared["response_id"]
            trunc = await peer.next_event("conversation.item.truncated")
            done = await peer.next_event("response.done")
            assert done["response"]["status"] == "cancelled"
            await asyncio.sleep(0.6)  # in-flight packets arrive
            # What the upstream is told was heard matches what the client received, to
            # within a couple of frames (5 ms blocks carrying the 800 Hz tone).
            heard = peer.received_audio().astype(np.float64)
            blocks = heard[: len(heard) // 240 * 240].reshape(-1, 240)
            heard_ms = float(np.count_nonzero(np.sqrt((blocks ** 2).mean(axis=1)) > 2000)) * 5
            assert trunc["audio_end_ms"] >= 500
            assert abs(trunc["audio_end_ms"] - heard_ms) <= 60, (trunc, heard_ms)
            after = peer.received_audio(since=cut_at + 0.25)
            assert len(after) > 0 and np.abs(after).max() < 500  # silence after the cut
        finally:
            await peer.close()
