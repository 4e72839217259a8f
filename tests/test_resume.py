"""A caller whose peer dies mid-call comes back with a new peer and the call goes on."""

from __future__ import annotations

import asyncio
import json
import sys
import time

import numpy as np

from gateway.api.appkeys import CALLS, METRICS
from tests.fake_upstream import running_fake
from tests.gateway_fixtures import running_gateway
from tests.peers import ClientPeer, PcmSourceTrack, tone
from tests.waiting import until

ENV = {"GATEWAY_MEDIA_DEAD_PEER_S": "1.0", "GATEWAY_MEDIA_RESUME_GRACE_S": "6"}


async def start_doomed_peer(calls_url: str, token: str
                            ) -> tuple[asyncio.subprocess.Process, dict[str, str]]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.peer_process", calls_url, token,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    assert proc.stdout is not None
    async with asyncio.timeout(15):
        line = await proc.stdout.readline()
    if not line:
        err = await proc.stderr.read()  # type: ignore[union-attr]
        raise AssertionError(f"the peer process died: {err.decode()[-1500:]}")
    return proc, json.loads(line)


async def test_killed_peer_resumes_and_hears_the_agent() -> None:
    async with running_fake() as (fake, url), running_gateway(url, env=ENV) as gw:
        calls_url = f"{gw.base}/v1/realtime/calls"
        proc, created = await start_doomed_peer(calls_url, await gw.mint())
        call_id, resume = created["call_id"], created["resume_token"]
        assert resume.startswith("rs_")
        # Media is flowing before the peer dies.
        await until(lambda: len(fake.conn.audio) >= 48 * 200, 10, "caller media upstream")
        proc.kill()  # no goodbye: RTP just stops, as when a laptop lid closes
        await proc.wait()
        call = gw.app[CALLS].get(call_id)
        assert call is not None
        await until(lambda: call.suspended, 5, 'the gateway held the call')
        dropped_at = time.monotonic()
        peer = ClientPeer(PcmSourceTrack(tone(300, -25)))
        try:
            await peer.connect(gw.http, calls_url, resume)
            assert peer.location == f"/v1/realtime/calls/{call_id}"
            resumed = await peer.next_event("gateway.call.resumed")
            assert resumed["resume_token"] != resume  # rotated
            await peer.next_event("session.created")
            t = np.arange(12000) / 24000
            fake.say((8000 * np.sin(2 * np.pi * 1000 * t)).astype(np.int16), "welcome back")
            await peer.next_event("output_audio_buffer.stopped")
            heard = peer.received_audio(since=dropped_at)
            assert np.count_nonzero(np.abs(heard) > 2000) > 48000 * 0.3
            assert len(fake.conns) == 1  # the same upstream session, conversation intact
            assert len(gw.app[CALLS]) == 1
            # The old token is spent.
            again = ClientPeer(None)
            try:
                offer = await again.offer()
                async with gw.http.post(calls_url, data=offer, headers={
                        "Authorization": f"Bearer {resume}",
                        "Content-Type": "application/sdp"}) as r:
                    assert r.status == 404
            finally:
                await again.close()
        finally:
            await peer.close()


async def test_grace_period_ends_the_call_as_client_lost() -> None:
    env = dict(ENV, GATEWAY_MEDIA_RESUME_GRACE_S="1.0")
    async with running_fake() as (fake, url), running_gateway(url, env=env) as gw:
        proc, created = await start_doomed_peer(f"{gw.base}/v1/realtime/calls",
                                                await gw.mint())
        await until(lambda: len(fake.conn.audio) >= 48 * 200,
                    10, 'caller media reached the upstream')
        proc.kill()
        await proc.wait()
        await until(lambda: not gw.app[CALLS], 8, 'the call ended')
        reg = gw.app[METRICS].registry
        assert reg.get_sample_value("gateway_calls_total",
                                    {"transport": "webrtc", "outcome": "client_lost"}) == 1
