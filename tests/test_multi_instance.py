"""Many gateway instances behaving as one, on a real Redis server (the Debian package).

Each test starts its instances in this process (and one as a real process, to ``kill -9``)
with the redis registry, one token secret, one recordings directory and their own key
prefix on one Redis server started for this module on a free port.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import IO, Any

import aiohttp
import pytest
import redis.asyncio as aioredis
from aiohttp import web

from gateway import config as config_mod
from gateway.api.appkeys import CALLS, METRICS, REGISTRY
from gateway.app import make_app
from gateway.cluster.redis_registry import LostCallReporter, RedisRegistry, RegistryStartError
from gateway.cluster.redis_registry import open_registry as open_reg
from tests.fake_upstream import running_fake
from tests.gateway_fixtures import ADMIN, API_KEY, Gateway, free_port
from tests.peers import ClientPeer, PcmSourceTrack, tone
from tests.waiting import until

HEARTBEAT_S = 0.5
REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
HAVE_REDIS = os.path.exists(REDIS_SERVER)
KEY = {"Authorization": f"Bearer {API_KEY}"}
ADMIN_H = {"Authorization": f"Bearer {ADMIN}"}


def fixed_port() -> int:
    """A free port below the kernel's ephemeral range: while the server on it is stopped,
    no client socket (the gateways keep reconnecting to it) can be given it as its own."""
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    rng = random.Random()
    for _ in range(200):
        port = rng.randrange(max(1024, low - 12000), low)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    return free_port()


class RedisServer:
    """``redis-server`` on a free loopback port, no persistence; stop and start at will."""

    def __init__(self) -> None:
        self.port = fixed_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self._out: IO[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        out = self._out = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--enable-debug-command", "local"],
            stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and self.proc.poll() is None:
            with contextlib.suppress(OSError), socket.create_connection(
                    ("127.0.0.1", self.port), 0.2) as s:
                s.sendall(b"PING\r\n")
                if s.recv(16).startswith(b"+PONG"):
                    return
            time.sleep(0.02)
        out.seek(0)
        said = out.read().decode(errors="replace")[-2000:]
        self.stop()
        raise RuntimeError(f"redis-server did not start on port {self.port}: {said}")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(5)
            self.proc = None
        if self._out is not None:
            self._out.close()
            self._out = None


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    if not HAVE_REDIS:
        pytest.skip("redis-server is not installed (apt-get install -y redis-server)")
    server = RedisServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    d = Path(tempfile.mkdtemp(prefix="gw-shared-rec-"))
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


def instance_env(upstream_url: str, redis_url: str, iid: str, prefix: str,
                 recordings: Path) -> dict[str, str]:
    return {"GATEWAY_API_KEYS": API_KEY, "GATEWAY_TOKEN_SECRET": "test-secret",
            "GATEWAY_ADMIN_TOKEN": ADMIN, "GATEWAY_UPSTREAM_URL": upstream_url,
            "OPENAI_API_KEY": "sk-upstream-secret-never-shown",
            "GATEWAY_UPSTREAM_CONNECT_TIMEOUT_S": "3",
            "GATEWAY_SERVER_INSTANCE_ID": iid, "GATEWAY_RECORDINGS_DIR": str(recordings),
            "GATEWAY_REGISTRY_BACKEND": "redis", "GATEWAY_REGISTRY_URL": redis_url,
            "GATEWAY_REGISTRY_HEARTBEAT_S": str(HEARTBEAT_S),
            "GATEWAY_REGISTRY_KEY_PREFIX": prefix}


@contextlib.asynccontextmanager
async def instance(upstream_url: str, redis_url: str, iid: str, prefix: str,
                   recordings: Path, **env: str) -> AsyncIterator[Gateway]:
    """One gateway instance in this process, on a known port (its internal URL)."""
    port = free_port()
    e = instance_env(upstream_url, redis_url, iid, prefix, recordings)
    e["GATEWAY_SERVER_INTERNAL_URL"] = f"http://127.0.0.1:{port}"
    e.update(env)
    app = make_app(config_mod.load(None, e))
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", port)
        await site.start()
        async with aiohttp.ClientSession() as http:
            yield Gateway(f"http://127.0.0.1:{port}", app, http, recordings)
    finally:
        await runner.cleanup()


@contextlib.asynccontextmanager
async def instance_process(upstream_url: str, redis_url: str, iid: str, prefix: str,
                           recordings: Path
                           ) -> AsyncIterator[tuple[str, asyncio.subprocess.Process]]:
    """``python -m gateway serve`` as its own process (so it can die by ``kill -9``)."""
    port = free_port()
    env = dict(os.environ, **instance_env(upstream_url, redis_url, iid, prefix, recordings),
               GATEWAY_HOST="127.0.0.1", GATEWAY_PORT=str(port))
    env.pop("GATEWAY_SERVER_INTERNAL_URL", None)  # the default: http://<host>:<port>
    log = tempfile.TemporaryFile()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway", "serve", env=env, stdout=log,
        stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as http:
            deadline = time.monotonic() + 30
            while True:
                if proc.returncode is not None or time.monotonic() > deadline:
                    log.seek(0)
                    raise AssertionError("the gateway process did not start:\n"
                                         + log.read().decode(errors="replace")[-3000:])
                with contextlib.suppress(aiohttp.ClientError):
                    async with http.get(f"{base}/healthz") as r:
                        if r.status == 200:
                            break
                await asyncio.sleep(0.1)
        yield base, proc
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()
        log.close()


def new_prefix() -> str:
    return f"t{uuid.uuid4().hex[:8]}:"


async def post_offer(http: aiohttp.ClientSession, base: str, offer: str,
                     token: str) -> tuple[int, str, str | None]:
    async with http.post(f"{base}/v1/realtime/calls", data=offer, headers={
            "Authorization": f"Bearer {token}", "Content-Type": "application/sdp"}) as r:
        return r.status, await r.text(), r.headers.get("Location")


async def admin_calls(gw: Gateway) -> list[dict[str, Any]]:
    async with gw.http.get(f"{gw.base}/admin/calls", headers=ADMIN_H) as r:
        assert r.status == 200
        return list((await r.json())["data"])


def reporter(gw: Gateway) -> LostCallReporter:
    reg = gw.app[REGISTRY]
    assert isinstance(reg, RedisRegistry)
    rep = reg._on_lost
    assert isinstance(rep, LostCallReporter)
    return rep


def lost_count(*gws: Gateway) -> float:
    return sum(g.app[METRICS].registry.get_sample_value(
        "gateway_calls_total", {"transport": "webrtc", "outcome": "instance_lost"}) or 0.0
        for g in gws)


# -- tokens -----------------------------------------------------------------------------------


async def test_token_minted_on_a_is_spent_once_on_any_instance(
        redis_server: RedisServer, shared_dir: Path) -> None:
    p = new_prefix()
    async with running_fake() as (_fake, url), \
            instance(url, redis_server.url, "gw-a", p, shared_dir) as a, \
            instance(url, redis_server.url, "gw-b", p, shared_dir) as b, \
            instance(url, redis_server.url, "gw-c", p, shared_dir) as c:
        token = await a.mint()
        peer = ClientPeer(PcmSourceTrack(tone(300, -25)))
        again = ClientPeer(None)
        try:
            await peer.connect(b.http, f"{b.base}/v1/realtime/calls", token)
            assert peer.location is not None and "/rtc_gw-b" in peer.location
            offer = await again.offer()
            for other in (c, a, b):  # spent: refused everywhere, the owner included
                status, body, _ = await post_offer(other.http, other.base, offer, token)
                assert status == 401 and "token_already_used" in body, (other.base, body)
        finally:
            await peer.close()
            await again.close()

        # Two instances racing for one token: exactly one wins.
        token = await b.mint()
        p1, p2 = ClientPeer(None), ClientPeer(None)
        try:
            results = await asyncio.gather(
                post_offer(a.http, a.base, await p1.offer(), token),
                post_offer(c.http, c.base, await p2.offer(), token))
            assert sorted(r[0] for r in results) == [201, 401], results
            location = next(r[2] for r in results if r[0] == 201)
            assert location is not None
            async with b.http.post(f"{b.base}{location}/hangup", headers=KEY) as r:
                assert r.status == 200  # forwarded from b to whichever won
        finally:
            await p1.close()
            await p2.close()
        await until(lambda: not (len(a.app[CALLS]) or len(b.app[CALLS]) or len(c.app[CALLS])),
                    5, "every call ended")


# -- forwarding and the shared admin view -----------------------------------------------------


async def test_call_on_b_is_listed_and_hung_up_through_a(
        redis_server: RedisServer, shared_dir: Path) -> None:
    p = new_prefix()
    async with running_fake() as (_fake, url), \
            instance(url, redis_server.url, "gw-a", p, shared_dir) as a, \
            instance(url, redis_server.url, "gw-b", p, shared_dir) as b:
        peers = [ClientPeer(PcmSourceTrack(tone(300, -25))) for _ in range(3)]
        try:
            await peers[0].connect(b.http, f"{b.base}/v1/realtime/calls", await a.mint())
            await peers[1].connect(a.http, f"{a.base}/v1/realtime/calls", await b.mint())
            await peers[2].connect(b.http, f"{b.base}/v1/realtime/calls", await b.mint())
            ids = [pe.location.rsplit("/", 1)[1] for pe in peers]  # type: ignore[union-attr]
            on_b, on_a, on_b2 = ids
            assert b.app[CALLS].get(on_b) is not None and a.app[CALLS].get(on_b) is None

            # Every instance lists every call, with its owner.
            for gw in (a, b):
                listed = {c["call_id"]: c["instance_id"] for c in await admin_calls(gw)}
                assert listed == {on_b: "gw-b", on_a: "gw-a", on_b2: "gw-b"}

            await asyncio.sleep(1.0)  # some audio, so the recording has content

            # Hang-up of b's call through a: forwarded to b, which ends it.
            async with a.http.post(f"{a.base}/v1/realtime/calls/{on_b}/hangup",
                                   headers=KEY) as r:
                assert r.status == 200, await r.text()
                assert await r.json() == {}
            assert b.app[CALLS].get(on_b) is None
            # Bad credentials are refused by the first instance, never forwarded.
            async with a.http.post(f"{a.base}/v1/realtime/calls/{on_b2}/hangup",
                                   headers={"Authorization": "Bearer sk-wrong"}) as r:
                assert r.status == 401
            # The admin's end-call, through a, for b's other call.
            async with a.http.delete(f"{a.base}/admin/calls/{on_b2}", headers=ADMIN_H) as r:
                assert r.status == 200, await r.text()
                assert (await r.json()) == {"id": on_b2, "ended": True}
            assert len(b.app[CALLS]) == 0
            # Unknown call: a 404 from whichever instance is asked.
            async with b.http.post(f"{b.base}/v1/realtime/calls/rtc_nope/hangup",
                                   headers=KEY) as r:
                assert r.status == 404
                assert (await r.json())["error"]["code"] == "call_not_found"
            assert [c["call_id"] for c in await admin_calls(b)] == [on_a]

            # b's recordings, written to the shared directory, are served by a.
            await until(lambda: len(list(shared_dir.rglob("metadata.json"))) >= 2, 10,
                        "b's recordings were finalized")
            async with a.http.get(f"{a.base}/admin/recordings", headers=ADMIN_H) as r:
                assert r.status == 200
                listed_recs = {m["id"]: m for m in (await r.json())["data"]}
            assert {on_b, on_b2} <= set(listed_recs)
            assert listed_recs[on_b]["end_reason"] == "hangup"
            async with a.http.get(f"{a.base}/admin/recordings/{on_b}/audio",
                                  headers=ADMIN_H) as r:
                assert r.status == 200
                assert len(await r.read()) > 44 + 48000  # a header and some audio
        finally:
            for pe in peers:
                await pe.close()


async def test_resume_token_used_on_another_instance_reaches_the_owner(
        redis_server: RedisServer, shared_dir: Path) -> None:
    p = new_prefix()
    async with running_fake() as (_fake, url), \
            instance(url, redis_server.url, "gw-a", p, shared_dir) as a, \
            instance(url, redis_server.url, "gw-b", p, shared_dir) as b:
        first = ClientPeer(PcmSourceTrack(tone(300, -25)))
        second = ClientPeer(PcmSourceTrack(tone(500, -25)))
        try:
            await first.connect(b.http, f"{b.base}/v1/realtime/calls?gateway_events=true",
                                await a.mint())
            created = await first.next_event("gateway.call.created")
            call_id, resume = created["call_id"], created["resume_token"]
            # The caller comes back through a (another load-balancer pick): same call on b.
            await second.connect(a.http, f"{a.base}/v1/realtime/calls?gateway_events=true", resume)
            assert second.location == f"/v1/realtime/calls/{call_id}"
            resumed = await second.next_event("gateway.call.resumed")
            assert resumed["call_id"] == call_id and resumed["resume_token"] != resume
            assert b.app[CALLS].get(call_id) is not None and len(a.app[CALLS]) == 0
            # The rotated token is routable too; the old one is not, on either instance.
            reg = a.app[REGISTRY]
            assert await reg.get_resume(resumed["resume_token"]) == (call_id, "gw-b")
            assert await reg.get_resume(resume) is None
            spare = ClientPeer(None)
            try:
                offer = await spare.offer()
                for gw in (a, b):
                    status, body, _ = await post_offer(gw.http, gw.base, offer, resume)
                    assert status == 404 and "call_not_found" in body
            finally:
                await spare.close()
        finally:
            await first.close()
            await second.close()


async def test_unreachable_owner_is_a_502(redis_server: RedisServer, shared_dir: Path) -> None:
    p = new_prefix()
    async with running_fake() as (_fake, url), \
            instance(url, redis_server.url, "gw-a", p, shared_dir) as a:
        # An instance that beats but does not answer (its port is closed).
        r = aioredis.Redis.from_url(redis_server.url, decode_responses=True)
        try:
            await r.set(f"{p}instance:gw-ghost",
                        f'{{"url": "http://127.0.0.1:{free_port()}", "started_at": 0}}',
                        px=60_000)
            await r.sadd(f"{p}instances", "gw-ghost")
            await r.hset(f"{p}calls", "rtc_gw-ghost1", '{"call_id": "rtc_gw-ghost1", '
                         '"instance_id": "gw-ghost", "transport": "webrtc", '
                         '"profile": "default", "started_at": 0, "dialect": "ga"}')
            await r.sadd(f"{p}icalls:gw-ghost", "rtc_gw-ghost1")
            async with a.http.post(f"{a.base}/v1/realtime/calls/rtc_gw-ghost1/hangup",
                                   headers=KEY) as resp:
                assert resp.status == 502
                body = await resp.json()
            assert body["error"]["code"] == "owner_unreachable"
            assert set(body["error"]) == {"type", "code", "message", "param"}
            # A forwarded request is answered where it lands, never forwarded again.
            async with a.http.post(f"{a.base}/v1/realtime/calls/rtc_gw-ghost1/hangup",
                                   headers={**KEY, "X-Gateway-Forwarded": "gw-x"}) as resp:
                assert resp.status == 404
        finally:
            await r.aclose()


# -- an instance dies -------------------------------------------------------------------------


async def test_killed_instance_calls_are_reported_lost_and_recordings_recovered(
        redis_server: RedisServer, shared_dir: Path) -> None:
    p = new_prefix()
    async with running_fake() as (fake, url), \
            instance(url, redis_server.url, "gw-a", p, shared_dir) as a, \
            instance(url, redis_server.url, "gw-b", p, shared_dir) as b, \
            instance_process(url, redis_server.url, "gw-c", p, shared_dir) as (c_base, proc):
        peer = ClientPeer(PcmSourceTrack(tone(300, -25)))
        try:
            await peer.connect(a.http, f"{c_base}/v1/realtime/calls", await a.mint())
            call_id = peer.location.rsplit("/", 1)[1]  # type: ignore[union-attr]
            assert call_id.startswith("rtc_gw-c")
            await until(lambda: fake.conns and len(fake.conn.audio) >= 48 * 1000, 10,
                        "media flows through c")
            assert [c["instance_id"] for c in await admin_calls(b)] == ["gw-c"]
            assert "gw-c" in await a.app[REGISTRY].instances()

            proc.send_signal(signal.SIGKILL)
            killed = time.monotonic()
            await proc.wait()
            await until(lambda: any(r[0] == "gw-c" for r in reporter(a).reports
                                    + reporter(b).reports), 10, "c's death was noticed")
            noticed = time.monotonic() - killed
            print(f"\nfailover: instance death noticed {noticed:.2f} s after kill -9 "
                  f"(heartbeat {HEARTBEAT_S} s, key TTL {HEARTBEAT_S * 3} s)")
            assert noticed < HEARTBEAT_S * 3 + 2 * HEARTBEAT_S + 1.0

            await until(lambda: any(r[2] for r in reporter(a).reports + reporter(b).reports),
                        10, "the survivor recovered c's recording")
            reports = [r for r in reporter(a).reports + reporter(b).reports if r[0] == "gw-c"]
            assert len(reports) == 1  # one survivor reports it, once
            assert reports[0][1] == [call_id] and reports[0][2] == [call_id]
            assert lost_count(a, b) == 1
            assert await admin_calls(a) == [] and await admin_calls(b) == []
            assert "gw-c" not in await a.app[REGISTRY].instances()
            async with a.http.post(f"{a.base}/v1/realtime/calls/{call_id}/hangup",
                                   headers=KEY) as r:
                assert r.status == 404  # gone with its instance
            async with b.http.get(f"{b.base}/admin/recordings/{call_id}",
                                  headers=ADMIN_H) as r:
                assert r.status == 200, await r.text()
                meta = await r.json()
            assert meta["end_reason"] == "gateway_crash"
            assert meta["instance"] == "gw-c"
        finally:
            await peer.close()


# -- Redis trouble ----------------------------------------------------------------------------


async def test_redis_unreachable_at_start_is_a_clear_error(shared_dir: Path) -> None:
    e = instance_env("ws://127.0.0.1:9/v1/realtime",
                     f"redis://user:hunter2-secret@127.0.0.1:{free_port()}/0", "gw-a", "x:",
                     shared_dir)
    cfg = config_mod.load(None, e)
    assert "hunter2" not in repr(cfg)
    with pytest.raises(RegistryStartError) as info:
        await open_reg(cfg, make_app(cfg)[METRICS])
    msg = str(info.value)
    assert "cannot reach Redis" in msg and "***" in msg and "hunter2" not in msg
    with pytest.raises(ValueError, match="registry.backend"):
        config_mod.load(None, dict(e, GATEWAY_REGISTRY_BACKEND="etcd"))
    assert config_mod.load(None, {}).registry.backend == "memory"


async def test_redis_outage_keeps_live_calls_and_refuses_new_ones(shared_dir: Path) -> None:
    if not HAVE_REDIS:
        pytest.skip("redis-server is not installed")
    own = RedisServer()
    own.start()
    p = new_prefix()
    try:
        async with asyncio.timeout(60), running_fake() as (fake, url), \
                instance(url, own.url, "gw-a", p, shared_dir) as a, \
                instance(url, own.url, "gw-b", p, shared_dir) as b:
            peer = ClientPeer(PcmSourceTrack(tone(300, -25)))
            try:
                await peer.connect(a.http, f"{a.base}/v1/realtime/calls", await b.mint())
                call_id = peer.location.rsplit("/", 1)[1]  # type: ignore[union-attr]
                spare_token = await a.mint()
                own.stop()  # Redis dies mid-call
                heard = len(fake.conn.audio)
                await asyncio.sleep(HEARTBEAT_S * 4)  # beats fail meanwhile
                assert len(fake.conn.audio) > heard + 48 * HEARTBEAT_S * 1000  # media goes on
                assert a.app[CALLS].get(call_id) is not None
                async with a.http.post(f"{a.base}/v1/realtime/client_secrets", json={},
                                       headers=KEY) as r:
                    assert r.status == 503
                    assert (await r.json())["error"]["code"] == "registry_unavailable"
                    assert r.headers["Retry-After"]
                spare = ClientPeer(None)
                try:
                    status, body, _ = await post_offer(b.http, b.base, await spare.offer(),
                                                       spare_token)
                finally:
                    await spare.close()
                assert status == 503 and "registry_unavailable" in body

                own.start()  # back, empty (no persistence): the heartbeats re-share the call
                beats = a.app[REGISTRY].beats  # type: ignore[attr-defined]
                await until(lambda: a.app[REGISTRY].beats > beats + 1,  # type: ignore[attr-defined]
                            10, "a's heartbeat resumed")
                assert [c["call_id"] for c in await admin_calls(b)] == [call_id]
                assert a.app[CALLS].get(call_id) is not None
                assert lost_count(a, b) == 0
                token = await b.mint()  # new calls are taken again
                assert token.startswith("ek_")
            finally:
                await peer.close()
    finally:
        own.stop()


async def test_slow_redis_does_not_stall_media(redis_server: RedisServer,
                                               shared_dir: Path) -> None:
    p = new_prefix()
    async with running_fake() as (fake, url), \
            instance(url, redis_server.url, "gw-a", p, shared_dir) as a:
        peer = ClientPeer(PcmSourceTrack(tone(300, -25)))
        side = aioredis.Redis.from_url(redis_server.url)
        try:
            await peer.connect(a.http, f"{a.base}/v1/realtime/calls", await a.mint())
            await until(lambda: len(fake.conn.audio) > 48 * 500, 10, "media flows")
            # Redis stops answering for 3 s (it blocks, as a swapping or overloaded one does).
            sleeper = asyncio.ensure_future(
                side.execute_command("DEBUG", "SLEEP", "3"))  # type: ignore[no-untyped-call]
            await asyncio.sleep(0.1)
            loop = asyncio.get_running_loop()
            heard, t0 = len(fake.conn.audio), loop.time()
            async with a.http.post(f"{a.base}/v1/realtime/client_secrets", json={},
                                   headers=KEY) as r:
                status = r.status
            refused_after = loop.time() - t0
            await sleeper
            went_up = (len(fake.conn.audio) - heard) / 48  # ms of caller audio upstream
            print(f"\nslow redis: mint refused after {refused_after:.2f} s; "
                  f"{went_up:.0f} ms of caller audio went upstream during the 3 s stall")
            assert status == 503 and refused_after < 2.5, (status, refused_after)
            assert went_up > 2000, went_up  # audio kept flowing while Redis was stuck
            assert a.app[CALLS].get(peer.location.rsplit("/", 1)[1]) is not None  # type: ignore[union-attr]
            await a.mint()  # and tokens work again
        finally:
            await side.aclose()
            await peer.close()
