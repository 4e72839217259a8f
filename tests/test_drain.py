"""SIGTERM with a live call: the gateway drains instead of dropping the call."""

from __future__ import annotations

import asyncio
import signal
import sys

import aiohttp

from tests.fake_upstream import running_fake
from tests.gateway_fixtures import API_KEY, free_port, process_env
from tests.peers import ClientPeer, PcmSourceTrack, tone
from tests.waiting import until_ready


async def test_sigterm_drains_live_call_then_exits_zero() -> None:
    async with running_fake() as (fake, url):
        port = free_port()
        env = process_env(url, port, GATEWAY_SERVER_DRAIN_TIMEOUT_S="1.5",
                          GATEWAY_RECORDING_ENABLED="false")
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "gateway", "serve", env=env,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
        base = f"http://127.0.0.1:{port}"
        peer = ClientPeer(PcmSourceTrack(tone(300, -30)))
        try:
            async with aiohttp.ClientSession() as http:
                await until_ready([base], proc, what="the gateway is ready")
                auth = {"Authorization": f"Bearer {API_KEY}"}
                async with http.post(f"{base}/v1/realtime/client_secrets", json={},
                                     headers=auth) as r:
                    token = (await r.json())["value"]
                async with http.post(f"{base}/v1/realtime/client_secrets", json={},
                                     headers=auth) as r:
                    token2 = (await r.json())["value"]
                await peer.connect(http, f"{base}/v1/realtime/calls", token)
                await peer.next_event("session.created")
                proc.send_signal(signal.SIGTERM)
                await asyncio.sleep(0.3)
                async with http.get(f"{base}/readyz") as r:
                    assert r.status == 503
                other = ClientPeer(None)
                offer = await other.offer()
                await other.close()
                async with http.post(f"{base}/v1/realtime/calls", data=offer, headers={
                        "Authorization": f"Bearer {token2}",
                        "Content-Type": "application/sdp"}) as r:
                    assert r.status == 503
                    assert r.headers["Retry-After"]
                    assert (await r.json())["error"]["code"] == "server_draining"
                # The live call goes on during the drain window...
                assert proc.returncode is None
                peer.send({"type": "session.update", "session": {
                    "type": "realtime", "audio": {"output": {"voice": "ash"}}}})
                await peer.next_event("session.updated")
                # ...then hears a goodbye, and the process exits cleanly.
                async with asyncio.timeout(15):
                    rc = await proc.wait()
                assert rc == 0, (await proc.stderr.read()).decode()[-2000:]  # type: ignore[union-attr]
                purposes = [e["response"]["metadata"]["gateway"] for e in fake.created]
                assert purposes == ["drain"]
        finally:
            await peer.close()
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
