"""``/admin/recordings``: list, metadata, audio (HTTP Range), transcript, delete.

With S3 storage configured the list merges the local calls (not uploaded yet) with the
bucket's (``s3_list.py``), and a call's metadata, audio and transcript are read from S3 once
the local copy is gone.

Behind ``Authorization: Bearer <admin token>`` (compared in constant time). With no admin
token configured every route answers 503, so recordings are never served unauthenticated by
mistake. Errors are OpenAI-shaped (``gateway.errors.ApiError``). File I/O runs in threads;
audio goes out through ``web.FileResponse`` (Range, If-Range, HEAD).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from aiohttp import web
from botocore.exceptions import BotoCoreError, ClientError  # type: ignore[import-untyped]

from gateway.errors import ApiError, bad_request
from gateway.recording.layout import AUDIO_OPUS, AUDIO_WAV, TRANSCRIPT, iso_utc, parse_time
from gateway.recording.s3_list import S3Listing, list_merged
from gateway.recording.store import (
    InvalidCallId,
    InvalidQuery,
    RecordingInProgress,
    RecordingNotFound,
    RecordingStore,
)

if TYPE_CHECKING:
    from gateway.recording.s3 import S3Uploader

_T = TypeVar("_T")

RECORDINGS_ROOT = web.AppKey("recordings_root", Path)
RECORDINGS_STORE = web.AppKey("recordings_store", RecordingStore)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
audit = logging.getLogger("gateway.audit")

_AUDIO_FORMATS = {"wav": (AUDIO_WAV, "audio/wav"), "opus": (AUDIO_OPUS, "audio/ogg")}


def add_routes(app: web.Application, *, root: Path, admin_token: str | None) -> None:
    """Mount the recordings API on ``app``; ``admin_token`` None or empty disables it (503)."""
    app[RECORDINGS_ROOT] = root
    app[RECORDINGS_STORE] = RecordingStore(root)
    digest = hashlib.sha256(admin_token.encode()).digest() if admin_token else None

    def guarded(handler: Handler) -> Handler:
        async def wrapper(request: web.Request) -> web.StreamResponse:
            try:
                _authorize(request, digest)
                return await handler(request)
            except ApiError as err:
                return err.response()
        return wrapper

    app.router.add_get("/admin/recordings", guarded(_list))
    app.router.add_get("/admin/recordings/{id}", guarded(_metadata))
    app.router.add_delete("/admin/recordings/{id}", guarded(_delete))
    app.router.add_get("/admin/recordings/{id}/audio", guarded(_audio))
    app.router.add_get("/admin/recordings/{id}/transcript", guarded(_transcript))


def _authorize(request: web.Request, digest: bytes | None) -> None:
    if digest is None:
        raise ApiError(503, "admin_api_disabled", "admin API disabled", type_="server_error")
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise _unauthorized("missing admin token: send Authorization: Bearer <admin token>")
    if not hmac.compare_digest(hashlib.sha256(token.strip().encode()).digest(), digest):
        raise _unauthorized("invalid admin token")


def _unauthorized(message: str) -> ApiError:
    return ApiError(401, "invalid_admin_token", message,
                    headers={"WWW-Authenticate": 'Bearer realm="gateway-admin"'})


async def _call(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Run a store call in a thread, mapping its errors to API errors."""
    try:
        return await asyncio.to_thread(fn, *args, **kwargs)
    except InvalidCallId as exc:
        raise bad_request("invalid_recording_id", str(exc), "id") from exc
    except InvalidQuery as exc:
        raise bad_request("invalid_query", str(exc), exc.param) from exc
    except RecordingNotFound as exc:
        raise ApiError(404, "recording_not_found", "no such recording", param="id") from exc
    except RecordingInProgress as exc:
        raise ApiError(409, "recording_in_progress",
                       "recording is not finalized yet", param="id") from exc


def _store(request: web.Request) -> RecordingStore:
    return request.app[RECORDINGS_STORE]


def _who(request: web.Request) -> str:
    return f"admin@{request.remote or 'unknown'}"


def _public(meta: dict[str, Any]) -> dict[str, Any]:
    return {"object": "recording", "id": meta.get("call_id"), **meta}


async def _list(request: web.Request) -> web.StreamResponse:
    q = request.query
    times: dict[str, float | None] = {}
    for param in ("from", "to"):
        raw = q.get(param)
        try:
            times[param] = parse_time(raw) if raw else None
        except ValueError as exc:
            raise bad_request("invalid_query", f"{param}: ISO 8601 or unix seconds",
                              param) from exc
    try:
        limit = int(q.get("limit", "100"))
    except ValueError as exc:
        raise bad_request("invalid_query", "limit must be an integer", "limit") from exc
    filters: dict[str, Any] = {
        "start": times["from"], "end": times["to"], "caller": q.get("caller") or None,
        "agent": q.get("agent") or None, "limit": limit, "cursor": q.get("cursor") or None}
    s3 = _s3(request)
    if s3 is None:
        page = await _call(_store(request).list_recordings, **filters)
    else:  # local calls not uploaded yet + the bucket's, as one list
        try:
            page = await _from_s3(list_merged(_store(request), S3Listing(s3), **filters))
        except InvalidQuery as exc:
            raise bad_request("invalid_query", str(exc), exc.param) from exc
    data = [_public(m) for m in page.data]
    return web.json_response({
        "object": "list", "data": data,
        "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None,
        "has_more": page.has_more, "next_cursor": page.next_cursor,
    })


def _s3(request: web.Request) -> S3Uploader | None:
    from .appkeys import S3_UPLOADER  # late: appkeys imports the call factory
    return request.app.get(S3_UPLOADER)


async def _metadata(request: web.Request) -> web.StreamResponse:
    call_id = request.match_info["id"]
    try:
        meta = await _call(_store(request).get, call_id)
    except ApiError as err:
        s3 = _s3(request)
        if err.status != 404 or s3 is None:
            raise
        # The local copy is gone once uploaded: read the call's metadata from S3.
        found = await _from_s3(s3.fetch_metadata(call_id))
        if found is None:
            raise
        meta = found
    return web.json_response(_public(meta))


async def _from_s3(op: Awaitable[_T]) -> _T:
    try:
        return await op
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "InvalidRange":
            raise ApiError(416, "range_not_satisfiable", "range not satisfiable") from exc
        raise ApiError(502, "storage_unavailable", "object storage error",
                       type_="server_error") from exc
    except BotoCoreError as exc:
        raise ApiError(502, "storage_unavailable", "object storage unreachable",
                       type_="server_error") from exc


async def _audio_from_s3(request: web.Request, s3: S3Uploader, call_id: str, name: str,
                         headers: dict[str, str]) -> web.StreamResponse | None:
    obj = await _from_s3(s3.open_audio(call_id, name, request.headers.get("Range")))
    if obj is None:
        return None
    try:
        resp = web.StreamResponse(status=obj.status, headers={**headers, **obj.headers})
        await resp.prepare(request)
        if request.method != "HEAD":
            async for chunk in obj.chunks():
                await resp.write(chunk)
        await resp.write_eof()
        return resp
    finally:
        obj.close()


async def _delete(request: web.Request) -> web.StreamResponse:
    call_id = request.match_info["id"]
    await _call(_store(request).delete, call_id, who=_who(request), reason="admin api")
    return web.json_response({"id": call_id, "object": "recording.deleted", "deleted": True})


async def _audio(request: web.Request) -> web.StreamResponse:
    call_id = request.match_info["id"]
    fmt = request.query.get("format", "wav")
    if fmt not in _AUDIO_FORMATS:
        raise bad_request("invalid_query", "format must be wav or opus", "format")
    name, ctype = _AUDIO_FORMATS[fmt]
    headers = {"Content-Type": ctype, "Cache-Control": "no-store",
               "Content-Disposition": f'attachment; filename="{call_id}.{fmt}"'}
    try:
        path = await _call(_store(request).file, call_id, name)
    except ApiError as err:
        s3 = _s3(request)
        if err.status != 404 or s3 is None:
            raise
        _access(request, call_id, name)
        resp = await _audio_from_s3(request, s3, call_id, name, headers)
        if resp is None:
            raise
        return resp
    _access(request, call_id, name)
    return web.FileResponse(path, headers=headers)


async def _transcript(request: web.Request) -> web.StreamResponse:
    call_id = request.match_info["id"]
    store = _store(request)
    want_json = (request.query.get("format") == "json"
                 or "application/json" in request.headers.get("Accept", ""))
    headers = {"Content-Type": "application/x-ndjson", "Cache-Control": "no-store"}
    try:
        if want_json:
            lines = await _call(store.transcript, call_id)
        else:
            path = await _call(store.file, call_id, TRANSCRIPT)
    except ApiError as err:
        s3 = _s3(request)
        if err.status != 404 or s3 is None:
            raise
        _access(request, call_id, TRANSCRIPT)
        if not want_json:
            resp = await _audio_from_s3(request, s3, call_id, TRANSCRIPT, headers)
            if resp is None:
                raise
            return resp
        obj = await _from_s3(s3.open_audio(call_id, TRANSCRIPT))
        if obj is None:
            raise
        try:
            raw = b"".join([chunk async for chunk in obj.chunks()])
        finally:
            obj.close()
        lines = [json.loads(line) for line in raw.decode().splitlines() if line.strip()]
        return web.json_response({"object": "list", "data": lines})
    _access(request, call_id, TRANSCRIPT)
    if want_json:
        return web.json_response({"object": "list", "data": lines})
    return web.FileResponse(path, headers=headers)


def _access(request: web.Request, call_id: str, name: str) -> None:
    """Reads are logged too: compliance wants to know who listened."""
    audit.info("audit action=read_recording call_id=%s file=%s who=%s when=%s range=%s",
               call_id, name, _who(request), iso_utc(time.time()),
               request.headers.get("Range", "-"),
               extra={"audit": {"action": "read_recording", "call_id": call_id, "file": name,
                                "who": _who(request)}})
