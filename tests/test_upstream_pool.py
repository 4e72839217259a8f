"""More than a hundred calls at once, each with its own upstream WebSocket.

aiohttp's default connector pools at most 100 connections; a call holds its upstream
WebSocket for its whole life, so with that default the 101st call waited for another call to
end and failed at set-up as ``upstream_timeout`` (found by ``bench.calls --calls 120``).
"""

from __future__ import annotations

import asyncio
import json
from contextlib import AsyncExitStack

import websockets

from gateway.api.appkeys import CALLS
from tests.fake_upstream import running_fake
from tests.gateway_fixtures import API_KEY, running_gateway
from tests.waiting import until

CALLS_AT_ONCE = 110


async def test_more_than_a_hundred_calls_each_reach_the_upstream() -> None:
    async with running_fake() as (fake, url), running_gateway(url) as gw:
        ws_url = gw.base.replace("http", "ws") + "/v1/realtime?model=gpt-realtime"
        async with AsyncExitStack() as stack:

            async def one() -> str:
                ws = await stack.enter_async_context(websockets.connect(
                    ws_url, additional_headers={"Authorization": f"Bearer {API_KEY}"}))
                first = json.loads(await ws.recv())
                return str(first["type"]) if first["type"] != "error" else str(first["error"])

            async with asyncio.timeout(30):
                firsts = await asyncio.gather(*(one() for _ in range(CALLS_AT_ONCE)))
            assert firsts == ["session.created"] * CALLS_AT_ONCE
            assert len(gw.app[CALLS]) == CALLS_AT_ONCE
            assert len(fake.conns) == CALLS_AT_ONCE
        await until(lambda: not gw.app[CALLS], 10, "every call ended")
