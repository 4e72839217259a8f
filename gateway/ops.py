"""Operational endpoints: /healthz, /readyz, /metrics."""

from __future__ import annotations

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from .appkeys import CALLS, METRICS

routes = web.RouteTableDef()


@routes.get("/healthz")
async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


@routes.get("/readyz")
async def readyz(request: web.Request) -> web.Response:
    calls = request.app[CALLS]
    if calls.draining:
        return web.json_response({"status": "draining"}, status=503)
    if len(calls) >= calls.max_calls:
        return web.json_response({"status": "at_capacity"}, status=503)
    return web.json_response({"status": "ready", "calls": len(calls)})


@routes.get("/metrics")
async def metrics(request: web.Request) -> web.Response:
    body = generate_latest(request.app[METRICS].registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})
