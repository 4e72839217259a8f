"""The engine as the gateway starts it: a subprocess that says where it listens."""

from __future__ import annotations

import asyncio
import re
import signal
import sys
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parents[2]


async def test_subprocess_announces_serves_and_stops_on_sigterm() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway.localrt", "--host", "127.0.0.1", "--port", "0",
        "--log-level", "WARNING", cwd=ROOT, stdout=asyncio.subprocess.PIPE)
    try:
        assert proc.stdout is not None
        async with asyncio.timeout(60):
            line = (await proc.stdout.readline()).decode()
        m = re.fullmatch(r"localrt listening on (http://127\.0\.0\.1:(\d+))\n", line)
        assert m, line
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{m.group(1)}/healthz") as resp:
                assert (resp.status, await resp.text()) == (200, "ok")
            ws_url = f"ws://127.0.0.1:{m.group(2)}/v1/realtime?model=gpt-realtime"
            async with http.ws_connect(ws_url, headers={"Authorization": "Bearer x"}) as ws:
                first = await ws.receive_json(timeout=10)
                assert first["type"] == "session.created"
                assert first["session"]["model"] == "local-offline"
        proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(20):
            assert await proc.wait() == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
