"""The operator console's API: sign-in, sessions, CSRF, the live feed, recordings, capacity.

Real gateway, real fake upstream, a real aiortc caller. The page itself is driven in
Chromium by tests/test_console_browser.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import numpy as np
import pytest
from yarl import URL

from gateway.api.appkeys import CALLS
from gateway.api.console_auth import SESSIONS
from gateway.api.console_feed import FEED
from gateway.call.session import CallSession
from tests.fake_upstream import FakeUpstream, running_fake
from tests.gateway_fixtures import ADMIN, Gateway, running_gateway
from tests.peers import ClientPeer, PcmSourceTrack, tone
from tests.waiting import until

ON = {"GATEWAY_CONSOLE_ENABLED": "true"}


class Console:
    """A signed-in browser, as far as HTTP goes: its own cookie jar, Origin and CSRF header."""

    def __init__(self, gw: Gateway, http: aiohttp.ClientSession) -> None:
        self.gw = gw
        self.http = http
        self.csrf = ""

    async def sign_in(self, token: str = ADMIN) -> aiohttp.ClientResponse:
        r = await self.http.post(f"{self.gw.base}/console/api/session", json={"token": token},
                                 headers={"Origin": self.gw.base})
        if r.status == 200:
            self.csrf = (await r.json())["csrf_token"]
        return r

    def request(self, method: str, path: str, **kw: Any) -> Any:
        headers = {"Origin": self.gw.base, "X-CSRF-Token": self.csrf, **kw.pop("headers", {})}
        return self.http.request(method, f"{self.gw.base}/console/api{path}", headers=headers,
                                 **kw)


@contextlib.asynccontextmanager
async def console(gw: Gateway) -> AsyncIterator[Console]:
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        c = Console(gw, http)
        r = await c.sign_in()
        assert r.status == 200, await r.text()
        yield c


@contextlib.asynccontextmanager
async def live_call(env: dict[str, str] | None = None
                    ) -> AsyncIterator[tuple[FakeUpstream, Gateway, ClientPeer, str]]:
    async with running_fake() as (fake, url), running_gateway(url, {**ON, **(env or {})}) as gw:
        caller = ClientPeer(PcmSourceTrack(tone(440.0, -20.0)))
        try:
            await caller.connect(gw.http, f"{gw.base}/v1/realtime/calls", await gw.mint())
            await caller.next_event("session.created")
            assert caller.location is not None
            yield fake, gw, caller, caller.location.rsplit("/", 1)[1]
        finally:
            await caller.close()


async def sse_events(resp: aiohttp.ClientResponse) -> AsyncIterator[tuple[str, dict[str, Any]]]:
    event = ""
    async for raw in resp.content:
        line = raw.decode().rstrip("\n")
        if line.startswith("event: "):
            event = line[7:]
        elif line.startswith("data: "):
            yield event, json.loads(line[6:])


async def test_console_is_off_unless_enabled() -> None:
    async with running_fake() as (_, url), running_gateway(url) as gw:
        for path in ("/console/", "/console/api/session", "/console/api/calls"):
            async with gw.http.get(gw.base + path) as r:
                assert r.status == 404


async def test_no_admin_data_without_a_session() -> None:
    async with running_fake() as (_, url), running_gateway(url, ON) as gw:
        async with gw.http.get(f"{gw.base}/console/") as r:  # the page itself is public
            page = await r.text()
            assert r.status == 200 and ADMIN not in page
            assert "script-src 'self'" in r.headers["Content-Security-Policy"]
        for method, path in (("GET", "/calls"), ("GET", "/feed"), ("GET", "/capacity"),
                             ("GET", "/recordings"), ("GET", "/recordings/x/audio"),
                             ("DELETE", "/calls/x"), ("POST", "/recordings/x/verify"),
                             ("GET", "/session")):
            async with gw.http.request(method, f"{gw.base}/console/api{path}",
                                       headers={"Origin": gw.base}) as r:
                body = await r.json()
                assert r.status == 401, (path, body)
                assert body["error"]["code"] == "console_session_required"
        # The admin bearer token alone opens no console route: the console wants its session.
        async with gw.http.get(f"{gw.base}/console/api/calls",
                               headers={"Authorization": f"Bearer {ADMIN}"}) as r:
            assert r.status == 401


async def test_sign_in_sets_a_strict_http_only_cookie_and_never_echoes_the_token(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="gateway.audit")
    async with running_fake() as (_, url), running_gateway(url, ON) as gw:
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
            c = Console(gw, http)
            r = await c.sign_in("wrong")
            assert r.status == 401
            assert (await r.json())["error"]["code"] == "invalid_admin_token"
            r = await c.sign_in()
            body = await r.text()
            assert r.status == 200 and ADMIN not in body
            cookies = r.headers.getall("Set-Cookie")
            session = next(h for h in cookies if h.startswith("gw_console="))
            csrf = next(h for h in cookies if h.startswith("gw_console_csrf="))
            for attr in ("HttpOnly", "SameSite=Strict", "Path=/console", "Max-Age=3600"):
                assert attr.lower() in session.lower(), session
            assert "httponly" not in csrf.lower()  # the page echoes it (double submit)
            assert "secure" not in session.lower()  # plain http here; Secure under https
            async with c.request("GET", "/session") as r2:
                assert r2.status == 200 and (await r2.json())["who"].startswith("console:")
            # Sign-out ends the session server-side: the old cookie is worthless.
            sid = http.cookie_jar.filter_cookies(URL(gw.base + "/console/"))["gw_console"].value
            async with c.request("DELETE", "/session") as r2:
                assert r2.status == 200
            async with gw.http.get(f"{gw.base}/console/api/calls",
                                   cookies={"gw_console": sid}) as r2:
                assert r2.status == 401
    log = "\n".join(r.getMessage() for r in caplog.records)
    assert "action=sign_in " in log and "action=sign_out" in log and "sign_in_failed" in log
    assert ADMIN not in log and sid not in log


async def test_sign_in_from_another_origin_or_guessing_is_refused() -> None:
    async with running_fake() as (_, url), running_gateway(url, ON) as gw:
        async with gw.http.post(f"{gw.base}/console/api/session", json={"token": ADMIN},
                                headers={"Origin": "https://evil.example"}) as r:
            assert r.status == 403
        async with gw.http.post(f"{gw.base}/console/api/session", json={"token": ADMIN}) as r:
            assert r.status == 403  # no Origin, no Sec-Fetch-Site: not from a page of ours
        statuses = []
        for _ in range(12):
            async with gw.http.post(f"{gw.base}/console/api/session", json={"token": "guess"},
                                    headers={"Origin": gw.base}) as r:
                statuses.append(r.status)
        assert statuses[:10] == [401] * 10 and statuses[10:] == [429, 429]


async def test_csrf_and_origin_are_checked_on_every_write() -> None:
    async with live_call() as (fake, gw, _, call_id), console(gw) as c:
        coach = f"/calls/{call_id}/coach"
        cases = [{"X-CSRF-Token": ""}, {"X-CSRF-Token": "forged"},
                 {"Origin": "https://evil.example"}]
        for headers in cases:
            async with c.request("POST", coach, json={"text": "hi"}, headers=headers) as r:
                assert r.status == 403, headers
                assert (await r.json())["error"]["code"] == "csrf_failed"
        # The header must match the cookie too: a token from another session does not pass.
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http2:
            other = Console(gw, http2)
            await other.sign_in()
            other.csrf = c.csrf
            async with other.request("POST", coach, json={"text": "hi"}) as r:
                assert r.status == 403
            async with other.request("DELETE", f"/calls/{call_id}") as r:
                assert r.status == 403
        assert not [e for e in fake.conn.received if e["type"] == "conversation.item.create"]
        async with c.request("POST", coach, json={"text": "offer the discount"}) as r:
            assert r.status == 200, await r.text()
        await until(lambda: [e for e in fake.conn.received
                             if e["type"] == "conversation.item.create"], 5, "coach upstream")


async def test_sessions_expire_idle_and_absolute_and_the_store_is_bounded() -> None:
    async with running_fake() as (_, url), running_gateway(url, ON) as gw:
        store = gw.app[SESSIONS]
        now = [1000.0]
        store.clock = lambda: now[0]
        async with console(gw) as c:
            async with c.request("GET", "/calls") as r:
                assert r.status == 200
            now[0] += store.idle_s + 1
            async with c.request("GET", "/calls") as r:
                assert r.status == 401
                assert (await r.json())["error"]["code"] == "console_session_expired"
        async with console(gw) as c:  # active, but past its lifetime
            for _ in range(int(store.ttl_s // (store.idle_s / 2)) + 1):
                now[0] += store.idle_s / 2
                async with c.request("GET", "/calls") as r:
                    if r.status == 401:
                        break
            assert r.status == 401
        for _ in range(store.max_sessions + 20):
            store.create("127.0.0.1")
        assert len(store) == store.max_sessions


async def test_a_recording_id_that_is_not_one_is_a_404() -> None:
    async with running_fake() as (_, url), running_gateway(url, ON) as gw, console(gw) as c:
        (gw.recordings / "secret.txt").write_text("not for you")
        for bad in ("..%2F..%2Fetc%2Fpasswd", "..%2Fsecret.txt", "%2e%2e", "a%00b",
                    "x" * 200, "no_such_call", "..", "caf%C3%A9"):
            for suffix in ("", "/audio", "/transcript", "/peaks"):
                async with c.request("GET", f"/recordings/{bad}{suffix}") as r:
                    assert r.status == 404, (bad, suffix, r.status)
                    assert (await r.json())["error"]["code"] in ("recording_not_found",
                                                                  "not_found")
            async with c.request("POST", f"/recordings/{bad}/verify") as r:
                assert r.status == 404


async def test_feed_pushes_calls_levels_and_lines_and_costs_nothing_unwatched() -> None:
    async with live_call() as (fake, gw, _, call_id), console(gw) as c:
        call = gw.app[CALLS].get(call_id)
        assert isinstance(call, CallSession)
        feed = gw.app[FEED]
        hooks = call.hooks
        before = (len(hooks.caller_text), len(hooks.agent_text), len(hooks.notes))
        per_frame = (list(hooks.caller_audio), list(hooks.agent_audio))
        assert feed._task is None
        async with c.request("GET", "/calls") as r:  # a one-off look hooks nothing
            assert [x["id"] for x in (await r.json())["data"]] == [call_id]
        assert (len(hooks.caller_text), len(hooks.agent_text), len(hooks.notes)) == before
        levels: list[float] = []
        lines: list[dict[str, Any]] = []
        async with c.request("GET", "/feed") as r:
            assert r.status == 200
            assert r.headers["Content-Type"].startswith("text/event-stream")
            async with asyncio.timeout(15):
                async for event, data in sse_events(r):
                    if event == "calls":
                        row = next(x for x in data["calls"] if x["id"] == call_id)
                        assert row["transport"] == "webrtc" and row["local"] is True
                        levels.append(row["level_in"])
                        if len(levels) == 2:
                            await fake.transcribe("<b>hello</b> from the caller")
                    elif event == "line":
                        lines.append(data)
                        break
            # Watching adds transcript-rate hooks only, never a per-frame one.
            assert len(hooks.caller_text) == before[0] + 1
            assert (hooks.caller_audio, hooks.agent_audio) == per_frame
        assert lines[0]["text"] == "<b>hello</b> from the caller"
        assert lines[0]["speaker"] == "caller" and lines[0]["call_id"] == call_id
        assert max(levels) > -30, levels  # the caller's -20 dBFS tone
        # The last subscriber gone: the sampler stops and the hooks come off.
        await until(lambda: feed._task is None, 5, "sampler stopped")
        assert (len(hooks.caller_text), len(hooks.agent_text), len(hooks.notes)) == before


async def test_a_slow_subscriber_is_dropped_not_waited_for() -> None:
    async with running_fake() as (_, url), running_gateway(url, ON) as gw:
        feed = gw.app[FEED]
        slow = feed.subscribe()
        fast = feed.subscribe()
        for i in range(100):
            feed.publish("line", {"i": i})
            while not fast.queue.empty():
                fast.queue.get_nowait()
        assert slow.dropped and slow not in feed.subscribers
        assert slow.queue.get_nowait() is None  # its stream ends with "dropped"
        assert not fast.dropped and fast in feed.subscribers
        await feed.unsubscribe(fast)
        await feed.unsubscribe(slow)
        assert feed._task is None


async def test_recordings_search_peaks_range_verify_delete() -> None:
    async with live_call() as (fake, gw, caller, call_id), console(gw) as c:
        t = np.arange(24000 * 2) / 24000
        fake.say((8000 * np.sin(2 * np.pi * 1000 * t)).astype(np.int16), "a tone for you",
                 speed=4.0)
        await fake.transcribe("I would like a refund")
        await caller.next_event("response.done")
        async with c.request("DELETE", f"/calls/{call_id}") as r:
            assert r.status == 200, await r.text()
        await until(lambda: list(gw.recordings.rglob("metadata.json")), 10, "recording closed")

        async def ids(query: str) -> list[str]:
            async with c.request("GET", f"/recordings?{query}") as r:
                assert r.status == 200, await r.text()
                return [x["id"] for x in (await r.json())["data"]]

        assert await ids("q=REFUND") == [call_id]
        assert await ids("q=nothing+like+this") == []
        assert await ids("end_reason=admin_ended") == [call_id]
        assert await ids("end_reason=client_lost") == []
        assert await ids("profile=default") == [call_id]
        assert await ids("from=2000-01-01T00:00:00Z&to=2000-01-02T00:00:00Z") == []
        async with c.request("GET", "/recordings?from=yesterday") as r:
            assert r.status == 400
        async with c.request("GET", f"/recordings/{call_id}") as r:
            meta = await r.json()
            assert meta["end_reason"] == "admin_ended" and "status" in meta["retention"]
        async with c.request("GET", f"/recordings/{call_id}/peaks") as r:
            peaks = await r.json()
            assert len(peaks["caller"]) == len(peaks["agent"]) > 10
            assert max(peaks["caller"]) > 0.05 and max(peaks["agent"]) > 0.1
        async with c.request("GET", f"/recordings/{call_id}/audio",
                             headers={"Range": "bytes=44-1067"}) as r:
            assert r.status == 206 and len(await r.read()) == 1024
        async with c.request("POST", f"/recordings/{call_id}/verify") as r:
            v = await r.json()
            assert v["ok"] is True and v["problems"] == []
        wav = next(gw.recordings.rglob("audio.wav"))
        data = bytearray(wav.read_bytes())
        data[100] ^= 0xFF
        wav.write_bytes(bytes(data))
        async with c.request("POST", f"/recordings/{call_id}/verify") as r:
            v = await r.json()
            assert v["ok"] is False and "audio.wav" in v["problems"][0]
        async with c.request("DELETE", f"/recordings/{call_id}") as r:
            assert r.status == 200
        async with c.request("GET", f"/recordings/{call_id}/peaks") as r:
            assert r.status == 404


async def test_capacity_reads_the_gateways_own_metrics() -> None:
    async with live_call({"GATEWAY_SERVER_GRAFANA_URL": "https://grafana.example/d/gw"}) as (
            _, gw, _, _), console(gw) as c:
        async with c.request("GET", "/capacity") as r:
            cap = await r.json()
        assert cap["calls"] == 1 and cap["grafana_url"] == "https://grafana.example/d/gw"
        assert cap["cpu_per_call"] is not None and cap["cpu_per_call"] > 0
        assert set(cap["errors_per_min"]) >= {"http", "upstream", "client"}


async def test_cookies_are_secure_behind_https_and_the_public_origin_is_accepted() -> None:
    env = {**ON, "GATEWAY_PUBLIC_URL": "https://console.example"}
    async with running_fake() as (_, url), running_gateway(url, env) as gw:
        async with gw.http.post(f"{gw.base}/console/api/session", json={"token": ADMIN},
                                headers={"Origin": "https://console.example"}) as r:
            assert r.status == 200
            for header in r.headers.getall("Set-Cookie"):
                assert "; secure" in header.lower(), header
        async with gw.http.post(f"{gw.base}/console/api/session", json={"token": ADMIN},
                                headers={"Origin": "http://console.example"}) as r:
            assert r.status == 403  # the scheme is part of the origin
