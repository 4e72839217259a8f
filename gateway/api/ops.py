"""Operational endpoints: /healthz, /readyz, /metrics."""

from __future__ import annotations

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from gateway.cluster.metrics_merge import fetch_all

from .appkeys import CALLS, CONFIG, HTTP, METRICS

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
    server = request.app[CONFIG].server
    if server.worker_peers and request.query.get("local") != "1":
        # One scrape covers every worker of this host.
        me = server.worker_index
        peers = {f"w{i}": url for i, url in enumerate(server.worker_peers) if i != me}
        merged = await fetch_all(request.app[HTTP], body.decode(), f"w{me}", peers)
        reg = CollectorRegistry()
        reg.register(merged)
        body = generate_latest(reg)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})
