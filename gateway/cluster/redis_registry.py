"""The Redis backend of the registry: what many gateway instances share.

Keys (all under ``registry.key_prefix``, ``gw:`` by default)::

    token:<jti>        the session a token was minted with; PX = its lifetime; spent by GETDEL
    calls              hash: call id -> CallInfo (JSON), every live call of every instance
    icalls:<instance>  set: the call ids an instance owns
    resume:<token>     [call id, owner instance]; expires with the owner's heartbeat
    instance:<id>      {"url", "started_at"}: the heartbeat, expires after 3 periods
    instances          set: instances that have beaten and not been reaped
    reap:<instance>    lock: the one survivor that reports a dead instance's calls lost

Each instance keeps its own calls and resume tokens in memory too and re-asserts them on
every heartbeat, so a Redis restart or a write lost to a blip heals within one period. An
instance whose heartbeat key expired is dead: one survivor (whoever takes its ``reap:`` lock)
removes its calls, reports them lost (``gateway_calls_total{outcome="instance_lost"}`` and a
log line) and repairs the recordings it left in the shared recordings root.

Token operations and lookups raise a 503 :class:`ApiError` when Redis cannot be reached;
writes about this instance's own calls only log (the next heartbeat retries them), so a Redis
outage never ends a live call.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import time
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import RedisError

from gateway.config import Config
from gateway.errors import ApiError
from gateway.obs.metrics import Metrics

from .registry import CallInfo, MemoryRegistry, Registry

log = logging.getLogger("gateway.registry")

#: A heartbeat key lives this many periods: one or two missed beats are not a death.
TTL_PERIODS = 3
#: How long the survivor that reports a dead instance holds its claim (longer than the
#: window in which another survivor may still find the dead instance listed).
REAP_LOCK_S = 60

OnLost = Callable[[str, list[CallInfo]], Coroutine[Any, Any, None]]


class RegistryStartError(RuntimeError):
    """Redis could not be reached when the gateway started."""


def redact_url(url: str) -> str:
    """The URL with any password replaced by ``***`` (safe to log)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable url>"
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


def internal_url(config: Config, *, resolve: bool = True) -> str:
    """How the other instances reach this one: ``server.internal_url``, else host and port
    (a wildcard host is replaced by this machine's address, as a pod's hostname resolves to
    its pod IP)."""
    if config.server.internal_url:
        return config.server.internal_url.rstrip("/")
    host = config.server.host
    if host in ("", "0.0.0.0", "::") and resolve:
        try:
            host = socket.gethostbyname(socket.gethostname())
        except OSError:
            host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{config.server.port}"


def _unavailable() -> ApiError:
    return ApiError(503, "registry_unavailable", "The gateway's shared state is unavailable; "
                    "retry shortly.", type_="server_error", headers={"Retry-After": "2"})


@contextlib.contextmanager
def _or_503() -> Iterator[None]:
    try:
        yield
    except (RedisError, OSError) as e:
        log.warning("registry unavailable: %s", type(e).__name__)
        raise _unavailable() from e


def _info(raw: str | bytes) -> CallInfo:
    return CallInfo(**json.loads(raw))


def _str(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


class RedisRegistry:
    """:class:`~gateway.cluster.registry.Registry` on Redis, with this instance's heartbeat."""

    def __init__(self, client: aioredis.Redis, *, instance_id: str, url: str,
                 heartbeat_s: float = 2.0, prefix: str = "gw:",
                 on_lost: OnLost | None = None, display_url: str = "") -> None:
        self._r = client
        self.instance_id = instance_id
        self.url = url
        self.heartbeat_s = heartbeat_s
        self.ttl_s = heartbeat_s * TTL_PERIODS
        self._p = prefix
        self._on_lost = on_lost
        self.display_url = display_url
        self.started_at = time.time()
        self._mine: dict[str, CallInfo] = {}
        self._resume_of: dict[str, str] = {}  # call id -> its current resume token
        self._loop_task: asyncio.Task[None] | None = None
        self._reports: set[asyncio.Task[None]] = set()
        self._failing = False
        self._closing = False
        self.beats = 0

    # -- keys -----------------------------------------------------------------------------

    def _k(self, *parts: str) -> str:
        return self._p + ":".join(parts)

    # -- lifecycle ------------------------------------------------------------------------

    @classmethod
    async def connect(cls, url: str, *, instance_id: str, internal: str,
                      heartbeat_s: float = 2.0, prefix: str = "gw:",
                      on_lost: OnLost | None = None) -> RedisRegistry:
        """Connect, check Redis answers (a clear error if not), then start beating."""
        timeout = max(0.5, min(2.0, heartbeat_s))
        shown = redact_url(url)
        try:
            client = aioredis.Redis.from_url(
                url, decode_responses=True, socket_timeout=timeout,
                socket_connect_timeout=timeout,
                retry=Retry(ExponentialWithJitterBackoff(base=0.05, cap=0.25), 1))
        except ValueError as e:
            raise RegistryStartError(f"registry.url is not a Redis URL: {shown}") from e
        try:
            await client.ping()
        except (RedisError, OSError) as e:
            await client.aclose()
            raise RegistryStartError(
                f"cannot reach Redis at {shown} ({type(e).__name__}: {_reason(e)}); the "
                "redis registry backend needs it at start") from e
        reg = cls(client, instance_id=instance_id, url=internal, heartbeat_s=heartbeat_s,
                  prefix=prefix, on_lost=on_lost, display_url=shown)
        try:
            await reg.start()
        except BaseException:
            await client.aclose()
            raise
        return reg

    async def start(self) -> None:
        # Calls filed under our id now are from a previous life of this instance id.
        await self._reap(self.instance_id, force=True)
        await self.beat()
        self._loop_task = asyncio.create_task(self._run(), name="registry-heartbeat")
        log.info("registry: redis at %s, instance %s at %s, heartbeat %.1f s",
                 self.display_url, self.instance_id, self.url, self.heartbeat_s)

    async def _run(self) -> None:
        # Stopped by ``_closing`` as well as by cancellation: a cancel that lands while a
        # Redis call times out can surface as a TimeoutError (an OSError) and be lost.
        while not self._closing:
            await asyncio.sleep(self.heartbeat_s)
            if self._closing:
                return
            try:
                await self.beat()
                await self.reap_dead()
                if self._failing:
                    log.warning("registry: redis is back")
                    self._failing = False
            except (RedisError, OSError) as e:
                if not self._failing:
                    log.warning("registry: heartbeat failed (%s: %s); live calls go on, "
                                "retrying every %.1f s", type(e).__name__, _reason(e),
                                self.heartbeat_s)
                self._failing = True
            except Exception:
                log.exception("registry: heartbeat failed")

    async def close(self) -> None:
        self._closing = True
        if self._loop_task is not None:
            self._loop_task.cancel()
            await asyncio.wait([self._loop_task], timeout=self.heartbeat_s + 5)
        for t in list(self._reports):
            t.cancel()
        await asyncio.gather(*self._reports, return_exceptions=True)
        try:  # a clean exit: leave nothing for a survivor to report
            async with self._r.pipeline(transaction=True) as pipe:
                if self._mine:
                    pipe.hdel(self._k("calls"), *self._mine)
                for token in self._resume_of.values():
                    pipe.delete(self._k("resume", token))
                pipe.delete(self._k("icalls", self.instance_id))
                pipe.delete(self._k("instance", self.instance_id))
                pipe.srem(self._k("instances"), self.instance_id)
                await pipe.execute()
        except (RedisError, OSError) as e:
            log.warning("registry: could not deregister (%s)", type(e).__name__)
        self._mine.clear()
        self._resume_of.clear()
        await self._r.aclose()

    # -- heartbeat and reaping ------------------------------------------------------------

    async def beat(self) -> None:
        """Refresh this instance's key and re-assert its calls and resume tokens."""
        me = self.instance_id
        ttl_ms = int(self.ttl_s * 1000)
        members = {_str(c) for c in await self._r.smembers(self._k("icalls", me))}
        mine = dict(self._mine)
        async with self._r.pipeline(transaction=True) as pipe:
            pipe.set(self._k("instance", me),
                     json.dumps({"url": self.url, "started_at": self.started_at}), px=ttl_ms)
            pipe.sadd(self._k("instances"), me)
            pipe.delete(self._k("reap", me))  # taken for dead by mistake: come back whole
            missing = [c for c in mine if c not in members]
            extra = [c for c in members if c not in mine]
            if missing:
                pipe.hset(self._k("calls"), mapping={
                    c: json.dumps(mine[c].to_json()) for c in missing})
                pipe.sadd(self._k("icalls", me), *missing)
            if extra:
                pipe.hdel(self._k("calls"), *extra)
                pipe.srem(self._k("icalls", me), *extra)
            for call_id, token in list(self._resume_of.items()):
                pipe.set(self._k("resume", token), json.dumps([call_id, me]), px=ttl_ms)
            await pipe.execute()
        self.beats += 1

    async def reap_dead(self) -> None:
        """Report the calls of every instance whose heartbeat expired (one survivor does)."""
        known = sorted(_str(i) for i in await self._r.smembers(self._k("instances")))
        others = [i for i in known if i != self.instance_id]
        if not others:
            return
        alive = await self._r.mget([self._k("instance", i) for i in others])
        for iid, beat in zip(others, alive, strict=True):
            if beat is None:
                await self._reap(iid)

    async def _reap(self, iid: str, *, force: bool = False) -> None:
        claimed = await self._r.set(self._k("reap", iid), self.instance_id, nx=True,
                                    ex=REAP_LOCK_S)
        if not claimed:
            return
        ids = sorted(_str(i) for i in await self._r.smembers(self._k("icalls", iid)))
        raws = await self._r.hmget(self._k("calls"), ids) if ids else []
        async with self._r.pipeline(transaction=True) as pipe:
            if ids:
                pipe.hdel(self._k("calls"), *ids)
            pipe.delete(self._k("icalls", iid))
            if force:  # our own leftovers: the claim must not outlive this start
                pipe.delete(self._k("reap", iid))
            else:  # the claim stays until it expires: no other survivor reports it again
                pipe.srem(self._k("instances"), iid)
            await pipe.execute()
        lost = [_info(r) for r in raws if r]
        if force and not lost:
            return
        if iid == self.instance_id:
            log.warning("registry: %d call(s) of a previous run of instance %s were lost",
                        len(lost), iid)
        else:
            log.warning("registry: instance %s stopped its heartbeat; %d call(s) lost: %s",
                        iid, len(lost), ", ".join(c.call_id for c in lost[:20]))
        if self._on_lost is not None:
            task = asyncio.create_task(self._on_lost(iid, lost), name=f"instance-lost:{iid}")
            self._reports.add(task)
            task.add_done_callback(self._reports.discard)

    # -- tokens ---------------------------------------------------------------------------

    async def put_token(self, jti: str, record: dict[str, Any], ttl_s: float) -> None:
        with _or_503():
            await self._r.set(self._k("token", jti), json.dumps(record),
                              px=max(1, int(ttl_s * 1000)))

    async def take_token(self, jti: str, *, consume: bool) -> dict[str, Any] | None:
        key = self._k("token", jti)
        with _or_503():
            raw = await (self._r.getdel(key) if consume else self._r.get(key))
        if raw is None:
            return None
        record: dict[str, Any] = json.loads(raw)
        return record

    # -- calls ----------------------------------------------------------------------------

    async def add_call(self, info: CallInfo) -> None:
        self._mine[info.call_id] = info
        try:
            async with self._r.pipeline(transaction=True) as pipe:
                pipe.hset(self._k("calls"), info.call_id, json.dumps(info.to_json()))
                pipe.sadd(self._k("icalls", info.instance_id), info.call_id)
                await pipe.execute()
        except (RedisError, OSError) as e:
            log.warning("registry: call %s not yet shared (%s); the heartbeat retries",
                        info.call_id, type(e).__name__)

    async def remove_call(self, call_id: str) -> None:
        info = self._mine.pop(call_id, None)
        token = self._resume_of.pop(call_id, None)
        try:
            async with self._r.pipeline(transaction=True) as pipe:
                pipe.hdel(self._k("calls"), call_id)
                pipe.srem(self._k("icalls", info.instance_id if info else self.instance_id),
                          call_id)
                if token is not None:
                    pipe.delete(self._k("resume", token))
                await pipe.execute()
        except (RedisError, OSError) as e:
            log.warning("registry: call %s not yet removed (%s); the heartbeat retries",
                        call_id, type(e).__name__)

    async def get_call(self, call_id: str) -> CallInfo | None:
        if call_id in self._mine:
            return self._mine[call_id]
        with _or_503():
            raw = await self._r.hget(self._k("calls"), call_id)
        return _info(raw) if raw else None

    async def list_calls(self) -> list[CallInfo]:
        with _or_503():
            raws = await self._r.hvals(self._k("calls"))
        return sorted((_info(r) for r in raws), key=lambda c: (c.started_at, c.call_id))

    # -- resume tokens --------------------------------------------------------------------

    async def put_resume(self, token: str, call_id: str, instance_id: str) -> None:
        old = self._resume_of.get(call_id)
        self._resume_of[call_id] = token
        try:
            async with self._r.pipeline(transaction=True) as pipe:
                if old is not None and old != token:
                    pipe.delete(self._k("resume", old))
                pipe.set(self._k("resume", token), json.dumps([call_id, instance_id]),
                         px=int(self.ttl_s * 1000))
                await pipe.execute()
        except (RedisError, OSError) as e:
            log.warning("registry: resume token of %s not yet shared (%s)", call_id,
                        type(e).__name__)

    async def get_resume(self, token: str) -> tuple[str, str] | None:
        with _or_503():
            raw = await self._r.get(self._k("resume", token))
        if raw is None:
            return None
        call_id, owner = json.loads(raw)
        return str(call_id), str(owner)

    # -- instances ------------------------------------------------------------------------

    async def instances(self) -> dict[str, str]:
        with _or_503():
            known = sorted(_str(i) for i in await self._r.smembers(self._k("instances")))
            beats = await self._r.mget([self._k("instance", i) for i in known]) if known else []
        return {i: str(json.loads(b)["url"]) for i, b in zip(known, beats, strict=True) if b}


def _reason(e: BaseException) -> str:
    """An exception's message, without anything that could hold a credential."""
    text = str(e).split("\n")[0][:200]
    return "(details withheld)" if "@" in text or "password" in text.lower() else text


class LostCallReporter:
    """What a survivor does for a dead instance: count its calls lost, repair recordings."""

    def __init__(self, metrics: Metrics, recordings_root: Path | None) -> None:
        self.metrics = metrics
        self.root = recordings_root
        #: (instance id, lost call ids, repaired recording ids), newest last.
        self.reports: list[tuple[str, list[str], list[str]]] = []

    async def __call__(self, instance_id: str, calls: list[CallInfo]) -> None:
        for c in calls:
            self.metrics.calls_total.labels(c.transport, "instance_lost").inc()
        repaired: list[str] = []
        if self.root is not None and self.root.is_dir():
            from gateway.recording.recover import recover

            try:
                repaired = await asyncio.to_thread(recover, self.root)
            except Exception:
                log.exception("registry: recovering recordings of instance %s failed",
                              instance_id)
            if repaired:
                log.warning("registry: repaired %d recording(s) left by instance %s: %s",
                            len(repaired), instance_id, ", ".join(repaired[:20]))
        self.reports.append((instance_id, [c.call_id for c in calls], repaired))


async def open_registry(config: Config, metrics: Metrics) -> Registry:
    """The registry ``[registry] backend`` selects, started (Redis: connected and beating)."""
    reg_cfg = config.registry
    server = config.server
    if reg_cfg.backend == "memory":
        return MemoryRegistry(server.instance_id, internal_url(config, resolve=False))
    root = Path(config.recording.dir) if config.recording.enabled else None
    try:
        return await RedisRegistry.connect(
            reg_cfg.url, instance_id=server.instance_id, internal=internal_url(config),
            heartbeat_s=reg_cfg.heartbeat_s, prefix=reg_cfg.key_prefix,
            on_lost=LostCallReporter(metrics, root))
    except RegistryStartError as e:
        log.error("registry: %s", e)
        raise


__all__ = ["LostCallReporter", "RedisRegistry", "RegistryStartError", "internal_url",
           "open_registry", "redact_url"]
