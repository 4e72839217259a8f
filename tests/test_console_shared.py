"""The console with shared infrastructure: calls on another instance (a real Redis registry)
and recordings served from S3 (moto's server) once the local copy is gone."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from gateway.api.appkeys import CALLS, S3_UPLOADER
from tests import s3_fixtures
from tests.fake_upstream import running_fake
from tests.peers import ClientPeer, PcmSourceTrack, tone
from tests.test_console import console, live_call, sse_events
from tests.test_multi_instance import (  # noqa: F401 (fixtures)
    RedisServer,
    instance,
    new_prefix,
    redis_server,
    shared_dir,
)
from tests.waiting import until

ON_MI = {"GATEWAY_SERVER_CONSOLE_ENABLED": "true"}


async def test_calls_on_another_instance_are_listed_and_acted_on_through_their_owner(
        redis_server: RedisServer, shared_dir: Path) -> None:  # noqa: F811 (fixtures)
    p = new_prefix()
    async with running_fake() as (fake, url), \
            instance(url, redis_server.url, "gw-a", p, shared_dir, **ON_MI) as a, \
            instance(url, redis_server.url, "gw-b", p, shared_dir, **ON_MI) as b:
        peer = ClientPeer(PcmSourceTrack(tone(300, -25)))
        try:
            await peer.connect(b.http, f"{b.base}/v1/realtime/calls", await b.mint())
            assert peer.location is not None
            on_b = peer.location.rsplit("/", 1)[1]
            async with console(a) as c:
                async with c.request("GET", "/feed") as r:
                    async with asyncio.timeout(10):
                        async for event, data in sse_events(r):
                            rows = [x for x in data.get("calls", []) if x["id"] == on_b]
                            if event == "calls" and rows:
                                break
                assert rows[0]["instance"] == "gw-b" and rows[0]["local"] is False
                async with c.request("POST", f"/calls/{on_b}/coach",
                                     json={"text": "relayed"}) as r:
                    assert r.status == 200, await r.text()
                await until(lambda: any(e["type"] == "conversation.item.create"
                                        for e in fake.conn.received), 5, "coach on b")
                async with c.request("DELETE", f"/calls/{on_b}") as r:
                    assert r.status == 200, await r.text()
                await until(lambda: b.app[CALLS].get(on_b) is None, 5, "ended on b")
        finally:
            await peer.close()


async def test_recordings_from_s3_search_peaks_range_verify(
        monkeypatch: pytest.MonkeyPatch) -> None:
    s3_fixtures.set_credentials(monkeypatch)
    bucket = "console-recordings"
    with s3_fixtures.moto_server() as s3_url:
        async with s3_fixtures.s3_client(s3_url) as s3:
            await s3.create_bucket(Bucket=bucket)
        async with live_call(s3_fixtures.gw_env(s3_url, bucket)) as (fake, gw, caller, call_id), \
                console(gw) as c:
            await fake.transcribe("the parcel never arrived")
            await asyncio.sleep(1.0)  # some audio in the recording
            async with c.request("DELETE", f"/calls/{call_id}") as r:
                assert r.status == 200
            uploader = gw.app[S3_UPLOADER]
            await until(lambda: uploader.uploaded == 1, 15, "uploaded")
            assert not list(gw.recordings.rglob("metadata.json"))  # served from S3 only
            async with c.request("GET", "/recordings?q=PARCEL") as r:
                assert [x["id"] for x in (await r.json())["data"]] == [call_id]
            async with c.request("GET", "/recordings?q=refund") as r:
                assert (await r.json())["data"] == []
            async with c.request("GET", f"/recordings/{call_id}/peaks") as r:
                assert r.status == 200, await r.text()
                assert max((await r.json())["caller"]) > 0.05
            async with c.request("GET", f"/recordings/{call_id}/audio",
                                 headers={"Range": "bytes=44-99"}) as r:
                assert r.status == 206 and len(await r.read()) == 56
            async with c.request("POST", f"/recordings/{call_id}/verify") as r:
                v = await r.json()
                assert v["ok"] is True and v["where"] == "s3", v

