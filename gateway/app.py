"""make_app(config) -> web.Application. All state hangs off the app; no module globals."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
from aiohttp import web
from aiohttp.http_exceptions import BadHttpMessage

from gateway.api import (
    admin,
    console,
    demo,
    live,
    openapi,
    ops,
    realtime_http,
    realtime_ws,
    supervise,
    twilio,
)
from gateway.api.appkeys import CALLS, CONFIG, FACTORY, HTTP, METRICS, REGISTRY, TOKENS
from gateway.api.tokens import TokenService
from gateway.call.factory import CallFactory
from gateway.cluster.redis_registry import open_registry
from gateway.cluster.registry import LocalCalls
from gateway.obs.metrics import Metrics

from .allocator import ReleaseSweep
from .config import Config
from .errors import ApiError

log = logging.getLogger("gateway.app")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
CORS_PATHS = ("/v1/",)


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as e:
        request.app[METRICS].http_errors.labels(str(e.status), e.code).inc()
        return e.response()
    except web.HTTPRequestEntityTooLarge:
        err = ApiError(413, "body_too_large", "The request body is over the size limit.")
        return err.response()
    except BadHttpMessage as e:
        # A body part the handler parses lazily (multipart headers) is malformed: the
        # client's fault, found after the request line was accepted.
        return ApiError(400, "invalid_request_body",
                        f"The request body is malformed: {type(e).__name__}.").response()
    except web.HTTPException as e:
        if e.status < 400:
            raise
        code = {404: "not_found", 405: "method_not_allowed"}.get(e.status, "http_error")
        return ApiError(e.status, code, e.reason or "Request failed.").response()
    except (asyncio.CancelledError, ConnectionResetError):
        raise
    except Exception:
        log.exception("unhandled error in %s %s", request.method, request.path)
        return ApiError(500, "internal_error", "The gateway hit an internal error.",
                        type_="server_error").response()


def cors_middleware(origins: tuple[str, ...]) -> Callable[..., Awaitable[web.StreamResponse]]:
    allowed = set(origins)

    @web.middleware
    async def cors(request: web.Request, handler: Handler) -> web.StreamResponse:
        origin = request.headers.get("Origin")
        ok = origin is not None and ("*" in allowed or origin in allowed) and \
            request.path.startswith(CORS_PATHS)
        if request.method == "OPTIONS" and ok:
            resp: web.StreamResponse = web.Response(status=204)
            resp.headers["Access-Control-Allow-Methods"] = "GET, POST, OPTIONS"
            resp.headers["Access-Control-Allow-Headers"] = request.headers.get(
                "Access-Control-Request-Headers", "Authorization, Content-Type")
            resp.headers["Access-Control-Max-Age"] = "600"
        else:
            resp = await handler(request)
        if ok and origin is not None:
            resp.headers["Access-Control-Allow-Origin"] = origin
            resp.headers["Access-Control-Expose-Headers"] = "Location"
            resp.headers["Vary"] = "Origin"
        return resp

    return cors


async def _loop_lag(app: web.Application) -> AsyncIterator[None]:
    """Measure how late the loop runs a timer, every 100 ms."""
    loop = asyncio.get_running_loop()
    hist = app[METRICS].loop_lag
    interval = 0.1
    handle: asyncio.TimerHandle | None = None

    def tick(expected: float) -> None:
        nonlocal handle
        now = loop.time()
        hist.observe(max(0.0, now - expected))
        handle = loop.call_at(now + interval, tick, now + interval)

    handle = loop.call_at(loop.time() + interval, tick, loop.time() + interval)
    yield
    handle.cancel()


async def _resources(app: web.Application) -> AsyncIterator[None]:
    config = app[CONFIG]
    registry = await open_registry(config, app[METRICS])  # [registry] backend
    # Every call holds its upstream WebSocket in this session's pool for the call's life;
    # aiohttp's default pool (100 connections) made call 101 wait for one to close and
    # fail as `upstream_timeout`. Calls are bounded by `server.max_calls`, tool requests
    # by their calls' rounds, so the pool itself needs no second bound.
    http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
    # A closed call's cycles collected, pages back to the kernel (unless the operator says no).
    every = config.server.release_sweep_interval_s
    sweeper = ReleaseSweep(min_interval_s=every) if every > 0 else None
    calls = LocalCalls(config.server.max_calls,
                       on_remove=sweeper.released if sweeper is not None else None)
    app[HTTP] = http
    app[REGISTRY] = registry
    app[CALLS] = calls
    app[TOKENS] = TokenService(config.secrets.token_secret.reveal(), registry,
                               single_use=config.tokens.single_use)
    app[FACTORY] = CallFactory(config, app[METRICS], registry, calls, http)
    for setup in app.get(EXTENSIONS, []):
        setup(app)
    yield
    calls.draining = True
    live = list(calls)
    if live:
        log.info("closing %d live call(s)", len(live))
        await asyncio.gather(*(c.close("server_shutdown") for c in live),
                             return_exceptions=True)
    if sweeper is not None:
        sweeper.close()
    await registry.close()
    app[FACTORY].tools.close()
    await http.close()


EXTENSIONS = web.AppKey("extensions", list)


def make_app(config: Config, *, metrics: Metrics | None = None) -> web.Application:
    app = web.Application(
        client_max_size=config.server.max_body_bytes,
        middlewares=[cors_middleware(config.server.cors_origins), error_middleware],
    )
    app[CONFIG] = config
    app[METRICS] = metrics or Metrics()
    app[EXTENSIONS] = []
    app.cleanup_ctx.append(_resources)
    app.cleanup_ctx.append(_loop_lag)
    app.add_routes(realtime_http.routes)
    app.add_routes(realtime_ws.routes)
    app.add_routes(live.routes)
    app.add_routes(ops.routes)
    app.add_routes(openapi.routes)
    app.add_routes(twilio.routes)
    app.add_routes(supervise.routes)
    demo.setup(app)
    admin.setup(app)
    console.setup(app)  # only when server.console_enabled
    return app

