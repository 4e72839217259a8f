"""The admin API (behind ``GATEWAY_ADMIN_TOKEN``): live calls, and the recordings API."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
from collections.abc import AsyncIterator
from pathlib import Path

from aiohttp import web

from gateway.errors import ApiError
from gateway.recording.recover import recover
from gateway.recording.s3 import S3Uploader
from gateway.recording.store import RecordingStore

from . import recordings as recordings_api
from .appkeys import CALLS, CONFIG, FACTORY, METRICS, REGISTRY, S3_UPLOADER
from .forwarding import forward_to_owner

log = logging.getLogger("gateway.admin")
audit = logging.getLogger("gateway.audit")
routes = web.RouteTableDef()


def _check(request: web.Request) -> str:
    token = request.app[CONFIG].secrets.admin_token.reveal()
    if not token:
        raise ApiError(503, "admin_api_disabled", "The admin API is disabled "
                       "(set GATEWAY_ADMIN_TOKEN).", type_="server_error")
    scheme, _, got = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(
            hashlib.sha256(got.strip().encode()).digest(),
            hashlib.sha256(token.encode()).digest()):
        raise ApiError(401, "invalid_admin_token", "A valid admin token is required.")
    return f"admin:{request.remote}"


@routes.get("/admin/calls")
async def list_calls(request: web.Request) -> web.Response:
    _check(request)
    calls = await request.app[REGISTRY].list_calls()
    return web.json_response({"object": "list", "data": [c.to_json() for c in calls]})


@routes.delete("/admin/calls/{call_id}")
async def end_call(request: web.Request) -> web.Response:
    who = _check(request)
    call_id = request.match_info["call_id"]
    call = request.app[CALLS].get(call_id)
    if call is None:
        if (fwd := await forward_to_owner(request, call_id=call_id)) is not None:
            return fwd
        raise ApiError(404, "call_not_found", "No live call with that id.")
    audit.info("end_call call_id=%s by=%s", call_id, who)
    await call.close("admin_ended")
    return web.json_response({"id": call_id, "ended": True})


async def _recordings_ctx(app: web.Application) -> AsyncIterator[None]:
    """Repair calls a crash left unfinished, then purge by retention once a day."""
    cfg = app[CONFIG]
    root = Path(cfg.recording.dir)
    if cfg.recording.enabled:
        try:
            await asyncio.to_thread(root.mkdir, parents=True, exist_ok=True)
            repaired = await asyncio.to_thread(recover, root)
            if repaired:
                log.warning("repaired %d recording(s) left by a crash: %s", len(repaired),
                            ", ".join(repaired[:10]))
        except OSError:
            log.exception("recording recovery failed")
    uploader: S3Uploader | None = None
    if cfg.recording.enabled and cfg.recording.s3_bucket:
        # Optional S3 storage: one worker; finished calls a previous run left are queued.
        uploader = S3Uploader(cfg.recording, root, on_error=app[METRICS].recording_errors.inc)
        await uploader.start()
        app[S3_UPLOADER] = uploader
        app[FACTORY].uploader = uploader
        queued = await uploader.enqueue_pending()
        if queued:
            log.info("queued %d local recording(s) for upload", queued)
    handle: asyncio.TimerHandle | None = None
    loop = asyncio.get_running_loop()
    tasks: set[asyncio.Task[list[str]]] = set()

    def purge() -> None:
        nonlocal handle
        store = RecordingStore(root)
        task = asyncio.ensure_future(asyncio.to_thread(store.purge, cfg.recording.retention_days))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        handle = loop.call_later(86400, purge)

    if cfg.recording.enabled and cfg.recording.retention_days > 0:
        handle = loop.call_later(5, purge)
    yield
    if handle is not None:
        handle.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    if uploader is not None:
        # Calls still closing after this keep their local copy; the next start uploads them.
        app[FACTORY].uploader = None
        await uploader.stop()


def setup(app: web.Application) -> None:
    cfg = app[CONFIG]
    app.add_routes(routes)
    recordings_api.add_routes(app, root=Path(cfg.recording.dir),
                              admin_token=cfg.secrets.admin_token.reveal() or None)
    app.cleanup_ctx.append(_recordings_ctx)
