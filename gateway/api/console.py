"""The operator console at ``/console/`` (off unless ``server.console_enabled``).

A page of plain ES modules and CSS (``gateway/static/console/``, no build step) over a small
API under ``/console/api/`` that reuses the admin, supervision and recordings handlers
behind the console's own session (``console_auth``): live calls with levels and transcript
lines pushed by SSE (``console_feed``), listen / coach / take over / hand back / end,
recordings (``console_recordings``) and this instance's capacity. A call another instance
owns is acted on through that owner's admin API, with the admin token added here: the
secret never reaches the page. See ``docs/console.md``.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from prometheus_client import Metric

from gateway.errors import ApiError

from . import admin, console_auth, console_feed, console_recordings, supervise
from . import recordings as rec
from .appkeys import CALLS, CONFIG, HTTP, METRICS, REGISTRY
from .console_auth import guard
from .forwarding import FORWARDED, owner_of

log = logging.getLogger("gateway.console")
STATIC = Path(__file__).parent.parent / "static" / "console"

#: The page loads only its own scripts and styles; media and connections stay same-origin.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; "
    "img-src 'self' data:; media-src 'self' blob:; connect-src 'self'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}


async def index(request: web.Request) -> web.StreamResponse:
    return web.FileResponse(STATIC / "index.html", headers=SECURITY_HEADERS)


async def to_index(request: web.Request) -> web.StreamResponse:
    raise web.HTTPFound("/console/")


async def asset(request: web.Request) -> web.StreamResponse:
    name = request.match_info["name"]
    # A fixed set of names, so a path never reaches the file system.
    if name not in _ASSETS:
        raise ApiError(404, "not_found", "No such console file.")
    return web.FileResponse(STATIC / name, headers={
        **SECURITY_HEADERS, "Content-Type": _ASSETS[name]})


_ASSETS = {p.name: ("text/css" if p.suffix == ".css" else "text/javascript")
           for p in STATIC.glob("*") if p.suffix in (".js", ".css")}


# -- live calls -------------------------------------------------------------------------------


async def feed(request: web.Request) -> web.StreamResponse:
    s = console_auth.current(request)
    store = request.app[console_auth.SESSIONS]
    return await console_feed.stream(request, lambda: store.get(s.sid, touch=False) is not None)


async def calls(request: web.Request) -> web.Response:
    return web.json_response({"object": "list", "ts": time.time() * 1000,
                              "data": request.app[console_feed.FEED].snapshot()})


async def _remote(request: web.Request, admin_path: str) -> web.Response | None:
    """The same action on the owner's admin API when another instance holds the call."""
    call_id = request.match_info["call_id"]
    if request.app[CALLS].get(call_id) is not None:
        return None
    owner = await owner_of(request, call_id=call_id)
    base = (await request.app[REGISTRY].instances()).get(owner) if owner else None
    if not base:
        return None
    cfg = request.app[CONFIG]
    headers = {"Authorization": f"Bearer {cfg.secrets.admin_token.reveal()}",
               FORWARDED: cfg.server.instance_id}
    if request.content_type:
        headers["Content-Type"] = request.content_type
    query = request.rel_url.query_string
    url = f"{base}{admin_path}" + (f"?{query}" if query else "")
    try:
        async with request.app[HTTP].request(
                request.method, url, data=await request.read(), headers=headers,
                timeout=aiohttp.ClientTimeout(total=cfg.registry.forward_timeout_s)) as r:
            body = await r.read()
            out = web.Response(status=r.status, body=body,
                               content_type=r.content_type or "application/json")
            if "Location" in r.headers:
                out.headers["Location"] = r.headers["Location"].replace("/admin/",
                                                                          "/console/api/", 1)
            return out
    except (TimeoutError, aiohttp.ClientError, OSError) as e:
        raise ApiError(502, "owner_unreachable", "The instance holding this call did not "
                       "answer; retry shortly.", type_="server_error") from e


def _relay(admin_suffix: str, handler: Any) -> Any:
    async def route(request: web.Request) -> web.StreamResponse:
        path = f"/admin/calls/{request.match_info['call_id']}{admin_suffix}"
        if (fwd := await _remote(request, path)) is not None:
            return fwd
        resp: web.StreamResponse = await handler(request)
        loc = resp.headers.get("Location")
        if loc:
            resp.headers["Location"] = loc.replace("/admin/", "/console/api/", 1)
        return resp
    return route


# -- recordings -------------------------------------------------------------------------------


def _with_id(handler: Any) -> Any:
    async def route(request: web.Request) -> web.StreamResponse:
        console_recordings.call_id_of(request)  # not an id: 404, before anything else
        resp: web.StreamResponse = await handler(request)
        return resp
    return route


async def delete_recording(request: web.Request) -> web.StreamResponse:
    call_id = console_recordings.call_id_of(request)
    resp = await rec._delete(request)
    request.app[console_recordings.PEAKS].pop(call_id, None)
    return resp


# -- capacity ---------------------------------------------------------------------------------


def _total(metric: Any, suffix: str = "_total") -> float:
    return float(sum(s.value for m in metric.collect() for s in m.samples
                     if s.name.endswith(suffix)))


def _buckets(metric: Any) -> list[tuple[float, float]]:
    fams: list[Metric] = list(metric.collect())
    return [(float(s.labels["le"]), s.value) for m in fams for s in m.samples
            if s.name.endswith("_bucket")]


class Capacity:
    """Rates over the time since the previous look (at least 1 s apart)."""

    def __init__(self, app: web.Application) -> None:
        self.prev = self._read(app)  # the first look covers the time since start
        self.last: dict[str, Any] = {}

    @staticmethod
    def _read(app: web.Application) -> dict[str, Any]:
        m = app[METRICS]
        now: dict[str, Any] = {
            "t": time.monotonic(), "cpu": time.process_time(),
            "lag_sum": _total(m.loop_lag, "_sum"), "lag_n": _total(m.loop_lag, "_count"),
            "lag_buckets": _buckets(m.loop_lag),
            "errors": {"http": _total(m.http_errors), "upstream": _total(m.upstream_errors),
                       "client": _total(m.client_errors),
                       "setup": _total(m.call_setup_failures),
                       "recording": _total(m.recording_errors)}}
        return now

    def sample(self, app: web.Application) -> dict[str, Any]:
        prev = self.prev
        if self.last and time.monotonic() - prev["t"] < 1.0:
            return self.last
        now = self._read(app)
        self.prev = now
        dt = max(1e-6, now["t"] - prev["t"])
        n_calls = len(app[CALLS])
        cpu = (now["cpu"] - prev["cpu"]) / dt
        lag_n = now["lag_n"] - prev["lag_n"]
        self.last = {
            "object": "console.capacity", "instance": app[CONFIG].server.instance_id,
            "interval_s": round(dt, 2), "calls": n_calls,
            "max_calls": app[CONFIG].server.max_calls,
            "cpu_cores": round(cpu, 4),
            "cpu_per_call": round(cpu / n_calls, 5) if n_calls else None,
            "loop_lag_mean_ms": round((now["lag_sum"] - prev["lag_sum"]) / lag_n * 1000, 2)
            if lag_n else None,
            "loop_lag_p95_ms": _p95_ms(now["lag_buckets"], prev["lag_buckets"]),
            "errors_per_min": {k: round((v - prev["errors"][k]) * 60 / dt, 2)
                               for k, v in now["errors"].items()},
            "grafana_url": app[CONFIG].server.grafana_url or None,
        }
        return self.last


def _p95_ms(now: list[tuple[float, float]], prev: list[tuple[float, float]]) -> float | None:
    """The upper bound of the bucket holding the 95th percentile (cumulative buckets)."""
    diff = [(le, n - p) for (le, n), (_, p) in zip(now, prev, strict=False)]
    total = diff[-1][1] if diff else 0
    if total <= 0:
        return None
    le = next(le for le, n in diff if n >= 0.95 * total)
    return None if le == float("inf") else round(le * 1000, 1)


CAPACITY = web.AppKey("console_capacity", Capacity)


async def capacity(request: web.Request) -> web.Response:
    return web.json_response(request.app[CAPACITY].sample(request.app))


# -- wiring -----------------------------------------------------------------------------------


def setup(app: web.Application) -> None:
    """Mount the console when ``server.console_enabled``; otherwise nothing exists."""
    if not app[CONFIG].server.console_enabled:
        return
    console_auth.setup(app)
    console_feed.setup(app)
    console_recordings.setup(app)
    app[CAPACITY] = Capacity(app)
    r = app.router
    r.add_get("/console", to_index)
    r.add_get("/console/", index)
    r.add_get("/console/assets/{name}", asset)
    api = "/console/api"
    r.add_get(f"{api}/feed", guard()(feed))
    r.add_get(f"{api}/calls", guard()(calls))
    r.add_get(f"{api}/capacity", guard()(capacity))
    c = f"{api}/calls/{{call_id}}"
    r.add_delete(c, guard("end_call")(_relay("", admin.end_call)))
    r.add_post(f"{c}/listen", guard("listen")(_relay("/listen", supervise.listen)))
    r.add_delete(f"{c}/listeners/{{listener_id}}", guard("stop_listening")(
        _relay_listener()))
    r.add_post(f"{c}/coach", guard("coach")(_relay("/coach", supervise.coach)))
    r.add_post(f"{c}/takeover", guard("takeover")(_relay("/takeover", supervise.takeover)))
    r.add_post(f"{c}/handback", guard("handback")(_relay("/handback", supervise.handback)))
    g = f"{api}/recordings"
    r.add_get(g, guard()(console_recordings.search))
    r.add_get(f"{g}/{{id}}", guard("view_recording")(console_recordings.details))
    r.add_delete(f"{g}/{{id}}", guard("delete_recording")(delete_recording))
    r.add_get(f"{g}/{{id}}/audio", guard()(_with_id(rec._audio)))
    r.add_get(f"{g}/{{id}}/transcript", guard()(_with_id(rec._transcript)))
    r.add_get(f"{g}/{{id}}/peaks", guard()(console_recordings.peaks))
    r.add_post(f"{g}/{{id}}/verify", guard("verify_recording")(console_recordings.verify))


def _relay_listener() -> Any:
    async def route(request: web.Request) -> web.StreamResponse:
        lid = request.match_info["listener_id"]
        return await _relay(f"/listeners/{lid}", supervise.end_listener)(request)  # type: ignore[no-any-return]
    return route


__all__ = ["setup"]
