"""``serve --workers 2``: one port, two processes, calls spread, any worker reaches any call."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import sys

import aiohttp
import pytest
import websockets

from gateway.cluster.workers import internal_port
from tests.fake_upstream import running_fake
from tests.gateway_fixtures import ADMIN, API_KEY
from tests.test_drain import free_port


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis-server")
async def test_two_workers_share_one_port_and_their_calls(tmp_path: object) -> None:
    async with running_fake() as (fake, url):
        port = free_port()
        env = dict(os.environ, GATEWAY_API_KEYS=API_KEY, GATEWAY_TOKEN_SECRET="s",
                   GATEWAY_ADMIN_TOKEN=ADMIN, GATEWAY_UPSTREAM_URL=url, OPENAI_API_KEY="sk-x",
                   GATEWAY_PORT=str(port), GATEWAY_RECORDINGS_DIR=str(tmp_path),
                   GATEWAY_SERVER_DRAIN_TIMEOUT_S="1")
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "gateway", "serve", "--workers", "2", env=env,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
        base = f"http://127.0.0.1:{port}"
        admin = {"Authorization": f"Bearer {ADMIN}"}
        sockets = []
        try:
            async with aiohttp.ClientSession() as http:
                async def ready(url: str) -> bool:
                    try:
                        async with http.get(f"{url}/readyz") as r:
                            return r.status == 200
                    except aiohttp.ClientConnectionError:
                        return False

                # Both workers up (each also answers on its own internal port).
                workers = [f"http://127.0.0.1:{internal_port(port, i)}" for i in range(2)]
                async with asyncio.timeout(30):
                    while not all([await ready(w) for w in workers]):  # noqa: ASYNC110
                        await asyncio.sleep(0.2)
                ws_url = f"ws://127.0.0.1:{port}/v1/realtime?model=gpt-realtime"
                for _ in range(12):  # P(all on one worker) = 2 / 2**12
                    ws = await websockets.connect(ws_url, additional_headers={
                        "Authorization": f"Bearer {API_KEY}"})
                    await ws.recv()  # session.created
                    sockets.append(ws)
                async with http.get(f"{base}/admin/calls", headers=admin) as r:
                    calls = (await r.json())["data"]
                assert len(calls) == 12
                owners = {c["instance_id"] for c in calls}
                assert owners == {"w0", "w1"}, owners  # the kernel spread them
                # Ending each call works whichever worker the request lands on.
                for c in calls:
                    async with http.delete(f"{base}/admin/calls/{c['call_id']}",
                                           headers=admin) as r:
                        assert r.status == 200, await r.text()

                async def listed() -> int:
                    async with http.get(f"{base}/admin/calls", headers=admin) as r:
                        return len((await r.json())["data"])

                async with asyncio.timeout(10):
                    while await listed():  # noqa: ASYNC110 - state in another process
                        await asyncio.sleep(0.1)
                # One scrape covers both workers.
                async with http.get(f"{base}/metrics") as r:
                    text = await r.text()
                assert 'worker="w0"' in text and 'worker="w1"' in text
                assert text.count("# TYPE gateway_active_calls gauge") == 1
        finally:
            for ws in sockets:
                with contextlib.suppress(Exception):
                    await ws.close()
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    async with asyncio.timeout(20):
                        await proc.wait()
                except TimeoutError:
                    proc.kill()
                    await proc.wait()
        assert proc.returncode == 0
