"""Serving with a graceful drain.

On SIGTERM/SIGINT the gateway keeps listening but stops taking calls (``/readyz`` 503, new
calls 503 + ``Retry-After``), lets live calls finish for up to ``drain_timeout_s``, then says
a short goodbye on the calls still up, ends them (recordings are finalized by each call's
close) and exits 0.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import resource
import signal
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError, LineTooLong
from aiohttp.web_request import BaseRequest

from gateway.api.appkeys import CALLS

from . import allocator
from .config import Config
from .errors import ApiError
from .upstream.client import gateway_event_id

log = logging.getLogger("gateway.lifecycle")
GOODBYE = "Say a short goodbye: the line is about to close for maintenance."
GOODBYE_S = 4.0


async def drain(app: web.Application, timeout_s: float) -> None:
    calls = app[CALLS]
    calls.draining = True
    log.info("draining: %d live call(s), up to %.0f s", len(calls), timeout_s)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while len(calls) and loop.time() < deadline:
        waits = [asyncio.ensure_future(c.closed.wait()) for c in calls]  # type: ignore[attr-defined]
        _, pending = await asyncio.wait(waits, timeout=deadline - loop.time(),
                                        return_when=asyncio.FIRST_COMPLETED)
        for w in pending:
            w.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
    live = list(calls)
    if not live:
        return
    for call in live:
        up = getattr(call, "upstream", None)
        if up is not None:
            if getattr(call, "active_response", None) is not None:
                up.send({"type": "response.cancel", "event_id": gateway_event_id()})
            up.send({"type": "response.create", "event_id": gateway_event_id(), "response": {
                "instructions": GOODBYE, "metadata": {"gateway": "drain"}}})
    await asyncio.sleep(GOODBYE_S)
    await asyncio.gather(*(c.close("server_shutdown") for c in live), return_exceptions=True)


#: Young-generation threshold: every call allocates thousands of short-lived, acyclic objects
#: a second (RTP packets, frames, events) that reference counting frees at once; with
#: CPython's default (700) the cycle collector runs hundreds of times a second for nothing.
GC_THRESHOLDS = (20_000, 20, 20)


def tune_gc() -> None:
    """Move everything alive after start-up (modules, config, the app) out of the
    collector's way and collect young objects less often."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


#: File descriptors a live call may hold: its ICE sockets (one per host candidate, IPv4 and
#: IPv6), the upstream WebSocket, the client's WebSocket or signalling connection, and the
#: recording's lock, WAV, transcript and Opus files.
FDS_PER_CALL = 8
#: Listening sockets, the loop's own descriptors, log files, metrics and console clients.
FDS_BASE = 256


def raise_open_files(max_calls: int) -> tuple[int, int]:
    """Raise the soft limit on open files to the hard limit (as Go's runtime does), and warn
    when even that cannot hold ``max_calls`` calls: with Debian's default soft limit of 1024
    a gateway would otherwise refuse calls with ``EMFILE`` at ~100-140 calls, below its own
    ``server.max_calls``. An unlimited soft limit is left as it is. Returns the (soft, hard)
    limits now in force (``resource.RLIM_INFINITY`` for unlimited)."""
    unlimited = resource.RLIM_INFINITY
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != unlimited and (hard == unlimited or soft < hard):
        target = hard if hard != unlimited else max(soft, 1 << 20)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError) as exc:
            log.warning("could not raise the open-files limit from %d: %s", soft, exc)
    need = FDS_BASE + FDS_PER_CALL * max_calls
    if soft != unlimited and soft < need:
        log.warning("open-files limit %d is below the ~%d that server.max_calls = %d needs; "
                    "calls beyond ~%d will fail (raise `ulimit -n` or LimitNOFILE)", soft,
                    need, max_calls, max(0, (soft - FDS_BASE) // FDS_PER_CALL))
    return soft, hard


class _RequestHandler(web.RequestHandler):
    """aiohttp's connection handler, answering requests it cannot parse (a header line over
    8 KiB, too many headers, garbage) in OpenAI's JSON error shape, logged at info: a bad
    client is not the gateway's error."""

    def handle_error(self, request: BaseRequest, status: int = 500,
                     exc: BaseException | None = None,
                     message: str | None = None) -> web.StreamResponse:
        if status >= 500 or not isinstance(exc, HttpProcessingError):
            return super().handle_error(request, status, exc, message)
        too_long = isinstance(exc, LineTooLong) or "too many headers" in str(exc).lower()
        err = (ApiError(431, "request_headers_too_large",
                        "A request line or header is over the size limit.")
               if too_long else
               ApiError(400, "invalid_http_request", "The request is not valid HTTP."))
        log.info("refused an unparsable HTTP request from %s: %s", request.remote,
                 type(exc).__name__)
        if request.writer.output_size > 0:
            raise ConnectionError("response already started")
        resp = err.response()
        resp.force_close()
        return resp


class _Server(web.Server):
    def __call__(self) -> web.RequestHandler:
        return _RequestHandler(self, loop=self._loop, **self._kwargs)


class GatewayRunner(web.AppRunner):
    """``web.AppRunner`` whose connections are :class:`_RequestHandler`s, with the
    ``[server]`` connection timeouts: ``keepalive_timeout_s`` closes a connection idle that
    long, and (aiohttp arms the same deadline when a connection opens) one that has not sent
    a whole request head by then: idle and slowloris sockets are not held for ever."""

    def __init__(self, app: web.Application, config: Config, **kwargs: Any) -> None:
        kwargs.setdefault("keepalive_timeout", config.server.keepalive_timeout_s)
        super().__init__(app, **kwargs)

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        if type(server) is not web.Server or not hasattr(server, "_kwargs"):
            raise RuntimeError("aiohttp's Server changed shape: cannot install the handler")
        server.__class__ = _Server  # no attributes of its own: the object stays valid
        return server


def make_runner(app: web.Application, config: Config, **kwargs: Any) -> web.AppRunner:
    return GatewayRunner(app, config, **kwargs)


async def serve(app: web.Application, config: Config) -> int:
    raise_open_files(config.server.max_calls)
    runner = make_runner(app, config, handle_signals=False, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, config.server.host, config.server.port,
                       reuse_port=config.server.reuse_port or None)
    await site.start()
    if config.server.worker_index >= 0:
        # The worker's own address, for requests forwarded by the other workers.
        from gateway.cluster.workers import internal_port

        internal = web.TCPSite(runner, "127.0.0.1",
                               internal_port(config.server.port, config.server.worker_index))
        await internal.start()
    if config.server.gc_tuned:
        tune_gc()
    if config.server.malloc_mmap_threshold_bytes > 0:
        allocator.pin_mmap_threshold(config.server.malloc_mmap_threshold_bytes)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    log.info("gateway listening on http://%s:%d", config.server.host, config.server.port)
    try:
        await stop.wait()
        await drain(app, config.server.drain_timeout_s)
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        await runner.cleanup()
    log.info("gateway stopped")
    return 0
