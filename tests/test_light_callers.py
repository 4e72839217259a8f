"""The calls bench's light callers (bench/light_media.py): a call set up by aiortc, its media
on one clock per process, against the real gateway and the bench's own echo upstream."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any, cast

from aiohttp import web

from bench import echo_upstream
from bench.clients import Caller, open_call, opus_loop, tone_frame
from gateway.api.appkeys import CALLS
from gateway.legs.media_clock import MediaClock
from tests.gateway_fixtures import API_KEY, running_gateway
from tests.waiting import until


@contextlib.asynccontextmanager
async def echo() -> AsyncIterator[tuple[web.Application, str]]:
    """The bench's echo upstream, in this process: (its app, its Realtime URL)."""
    app = echo_upstream.make_app()
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield app, f"ws://127.0.0.1:{port}/v1/realtime"
    finally:
        await runner.cleanup()


def aiortc_media_tasks() -> list[str]:
    """Running tasks of aiortc's RTP machinery (its senders' and receivers' loops)."""
    names = []
    for t in asyncio.all_tasks():
        name = getattr(t.get_coro(), "__qualname__", "")
        if name.startswith(("RTCRtpSender.", "RTCRtpReceiver.")):
            names.append(name)
    return names


async def test_a_light_caller_talks_to_the_gateway_both_ways_with_audio() -> None:
    pcm = tone_frame(400.0, -20.0)
    clock = MediaClock()
    # The gateway on its owned datapath even under `make test-aiortc`: its own aiortc tasks
    # would otherwise be counted below as the caller's.
    async with echo() as (up, url), \
            running_gateway(url, env={"GATEWAY_MEDIA_DATAPATH": "owned"}) as gw:
        caller: Caller = await open_call(gw.http, gw.base, API_KEY, pcm, opus_loop(pcm), 20.0,
                                         light=clock)
        try:
            light = caller.light
            assert light is not None
            await until(lambda: light.running, 10, "the light datapath started at connect")
            assert len(clock) == 1
            # Two seconds of the echoed tone heard, decoded and loud, and what was sent went
            # upstream (the echo counts what the gateway appended).
            await until(lambda: caller.heard.loud >= 100, 15, "two seconds of echoed tone")
            stats = up[echo_upstream.STATS]
            await until(lambda: stats.audio_bytes_in >= 48 * 1000, 5, "caller audio upstream")
            assert light.sent >= 100 and caller.heard.received >= 100
            assert caller.heard.undecodable == 0 and light.srtp_errors == 0
            assert caller.heard.loud >= 0.9 * caller.heard.received
            # No aiortc sender or receiver loop runs for the call: its media is the clock's.
            assert aiortc_media_tasks() == []
            # RTCP both ways: the gateway has a round trip from our report block on its
            # stream, we have one from its block on ours, and neither side lost a packet.
            (call,) = gw.app[CALLS]._calls.values()
            dp = cast(Any, call).leg._datapath
            await until(lambda: dp.tx.rtt_s is not None, 10, "the gateway's RTT from our RR")
            await until(lambda: light.tx is not None and light.tx.rtt_s is not None, 10,
                        "our RTT from the gateway's report")
            assert dp.rx.received >= 100 and dp.rx.lost == 0 and dp.srtp_errors == 0
            assert light.rtp_stats()["rtp_lost"] == 0
            assert light.rtp_stats()["rtp_received"] == caller.heard.received
        finally:
            await caller.close()
        assert len(clock) == 0
        await until(lambda: not gw.app[CALLS]._calls, 10, "the call ended")
