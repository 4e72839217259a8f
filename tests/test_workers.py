"""``serve --workers 2``: one port, two processes, calls spread, any worker reaches any call."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import signal
import sys

import aiohttp
import pytest
import websockets

from gateway.cluster.workers import internal_port
from tests.fake_upstream import running_fake
from tests.gateway_fixtures import ADMIN, API_KEY, free_port, process_env
from tests.waiting import until_ready


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis-server")
async def test_two_workers_share_one_port_and_their_calls(tmp_path: object) -> None:
    async with running_fake() as (fake, url):
        port = free_port()
        env = process_env(url, port, GATEWAY_ADMIN_TOKEN=ADMIN,
                          GATEWAY_RECORDINGS_DIR=str(tmp_path),
                          GATEWAY_SERVER_DRAIN_TIMEOUT_S="1")
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "gateway", "serve", "--workers", "2", env=env,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
        base = f"http://127.0.0.1:{port}"
        admin = {"Authorization": f"Bearer {ADMIN}"}
        sockets = []
        try:
            async with aiohttp.ClientSession() as http:
                # Both workers up (each also answers on its own internal port). On a busy
                # machine starting Python processes takes long: a generous deadline, but
                # failing at once if the supervisor died.
                workers = [f"http://127.0.0.1:{internal_port(port, i)}" for i in range(2)]
                await until_ready(workers, proc, what="both workers ready")
                ws_url = f"ws://127.0.0.1:{port}/v1/realtime?model=gpt-realtime"
                for _ in range(12):  # P(all on one worker) = 2 / 2**12
                    ws = await websockets.connect(ws_url, additional_headers={
                        "Authorization": f"Bearer {API_KEY}"}, open_timeout=60)
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

                async with asyncio.timeout(60):  # a deadline, not a pace: busy machines
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
                    async with asyncio.timeout(60):
                        await proc.wait()
                except TimeoutError:
                    proc.kill()
                    await proc.wait()
        assert proc.returncode == 0
