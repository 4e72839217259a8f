"""The console's recordings: search, a waveform's peaks, verification and retention.

Search adds what ``/admin/recordings`` does not filter on (end reason, text in the
transcript) over the same listing (local store, merged with S3 when configured): pages of
the listing are read and filtered until the page is full or :data:`SCAN_LIMIT` calls were
looked at; the cursor is the listing's own, so pages continue where they stopped.

Peaks: the stereo WAV (left caller, right agent) is read once in chunks (locally, or
streamed from S3) and reduced to :data:`BUCKETS` max-abs values per channel; the result is
cached by call id and size (LRU, :data:`CACHE_ENTRIES`).
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import numpy as np
from aiohttp import web

from gateway.errors import ApiError, bad_request
from gateway.recording.layout import AUDIO_WAV, TRANSCRIPT, iso_utc, parse_time, valid_call_id
from gateway.recording.s3_list import S3Listing, list_merged
from gateway.recording.store import Page, encode_cursor

from . import recordings as rec
from .appkeys import CONFIG, S3_UPLOADER

BUCKETS = 800
CACHE_ENTRIES = 64
SCAN_LIMIT = 2000
WAV_HEADER = 44
FRAME_BYTES = 4  # stereo PCM16
RATE = 24000

_Peaks = dict[str, Any]
PEAKS = web.AppKey("console_peaks", OrderedDict)


def call_id_of(request: web.Request) -> str:
    """The id in the path, or 404: a string that is not an id is never looked up."""
    call_id = request.match_info["id"]
    if not valid_call_id(call_id):
        raise ApiError(404, "recording_not_found", "No such recording.", param="id")
    return call_id


# -- search -----------------------------------------------------------------------------------


async def _page(request: web.Request, filters: dict[str, Any]) -> Page:
    s3 = request.app.get(S3_UPLOADER)
    store = rec._store(request)
    if s3 is None:
        page: Page = await rec._call(store.list_recordings, **filters)
        return page
    return await rec._from_s3(list_merged(store, S3Listing(s3), **filters))


async def _transcript_text(request: web.Request, call_id: str) -> str:
    try:
        lines = await rec._call(rec._store(request).transcript, call_id)
    except ApiError:
        s3 = request.app.get(S3_UPLOADER)
        obj = await rec._from_s3(s3.open_audio(call_id, TRANSCRIPT)) if s3 else None
        if obj is None:
            return ""
        try:
            raw = b"".join([chunk async for chunk in obj.chunks()])
        finally:
            obj.close()
        lines = [json.loads(ln) for ln in raw.decode().splitlines() if ln.strip()]
    return "\n".join(str(ln.get("text", "")) for ln in lines).lower()


async def search(request: web.Request) -> web.Response:
    q = request.query
    times: dict[str, float | None] = {}
    for param in ("from", "to"):
        try:
            times[param] = parse_time(q[param]) if q.get(param) else None
        except ValueError as exc:
            raise bad_request("invalid_query", f"{param}: ISO 8601 or unix seconds",
                              param) from exc
    try:
        limit = max(1, min(100, int(q.get("limit", "25"))))
    except ValueError as exc:
        raise bad_request("invalid_query", "limit must be an integer", "limit") from exc
    end_reason = q.get("end_reason") or None
    text = (q.get("q") or "").strip().lower()
    filters: dict[str, Any] = {"start": times["from"], "end": times["to"],
                               "caller": q.get("caller") or None,
                               "agent": q.get("profile") or None,
                               "limit": 100, "cursor": q.get("cursor") or None}
    found: list[dict[str, Any]] = []
    scanned = 0
    more = True
    while more and len(found) < limit and scanned < SCAN_LIMIT:
        page = await _page(request, filters)
        for meta in page.data:
            scanned += 1
            if end_reason and meta.get("end_reason") != end_reason:
                continue
            if text and text not in await _transcript_text(request, str(meta.get("call_id"))):
                continue
            found.append(meta)
            if len(found) == limit:
                break
        more = page.has_more
        filters["cursor"] = page.next_cursor
    last = found[-1] if found else None
    if len(found) == limit and last is not None:
        cursor: str | None = encode_cursor(float(last.get("started_at_unix") or 0),
                                           str(last.get("call_id")))
    else:
        cursor = filters["cursor"] if more else None
    data = [rec._public(m) for m in found]
    return web.json_response({"object": "list", "data": data, "has_more": cursor is not None,
                              "next_cursor": cursor, "scanned": scanned})


# -- one recording ----------------------------------------------------------------------------


def retention(request: web.Request, meta: dict[str, Any]) -> dict[str, Any]:
    days = request.app[CONFIG].recording.retention_days
    started = meta.get("started_at_unix")
    if days <= 0 or not isinstance(started, int | float):
        return {"retention_days": None, "delete_after": None,
                "status": "kept until deleted (no retention period configured)"}
    after = float(started) + days * 86400
    return {"retention_days": days, "delete_after": iso_utc(after),
            "status": "due for deletion" if after <= time.time() else
            f"kept until {iso_utc(after)}",
            "note": "uploaded copies follow the bucket's lifecycle rules" if
            request.app.get(S3_UPLOADER) else None}


async def details(request: web.Request) -> web.Response:
    call_id_of(request)
    resp = await rec._metadata(request)  # local, or S3 once the local copy is gone
    meta = json.loads(resp.text or "{}") if isinstance(resp, web.Response) else {}
    return web.json_response({**meta, "retention": retention(request, meta)})


async def verify(request: web.Request) -> web.Response:
    call_id = call_id_of(request)
    where = "local"
    try:
        problems: list[str] | None = await rec._call(rec._store(request).verify, call_id)
    except ApiError as err:
        s3 = request.app.get(S3_UPLOADER)
        if err.status != 404 or s3 is None:
            raise
        where = "s3"
        problems = await rec._from_s3(s3.verify(call_id))
        if problems is None:
            raise
    return web.json_response({"object": "recording.verification", "id": call_id,
                              "where": where, "ok": not problems, "problems": problems,
                              "checked_at": iso_utc(time.time())})


class PeakBuilder:
    """Max-abs per channel over ``buckets`` equal stretches of a stereo PCM16 stream."""

    def __init__(self, frames: int, buckets: int = BUCKETS) -> None:
        self.per = max(1, math.ceil(frames / buckets))
        self.peaks = np.zeros((max(1, math.ceil(frames / self.per)), 2), np.int32)
        self._frame = 0
        self._rest = b""

    def feed(self, data: bytes) -> None:
        data = self._rest + data
        usable = len(data) - len(data) % FRAME_BYTES
        self._rest = data[usable:]
        x = np.abs(np.frombuffer(data[:usable], "<i2").reshape(-1, 2).astype(np.int32))
        idx = (self._frame + np.arange(len(x))) // self.per
        idx = np.minimum(idx, len(self.peaks) - 1)
        np.maximum.at(self.peaks, idx, x)
        self._frame += len(x)

    def result(self) -> _Peaks:
        scale = 1 / 32768
        return {"bucket_s": self.per / RATE, "frames": self._frame,
                "caller": [round(float(v) * scale, 3) for v in self.peaks[:, 0]],
                "agent": [round(float(v) * scale, 3) for v in self.peaks[:, 1]]}


def _local_chunks(path: Path) -> Iterator[bytes]:
    with path.open("rb") as f:
        f.seek(WAV_HEADER)
        while chunk := f.read(1 << 20):
            yield chunk


def _peaks_of_file(path: Path) -> _Peaks:
    b = PeakBuilder((path.stat().st_size - WAV_HEADER) // FRAME_BYTES)
    for chunk in _local_chunks(path):
        b.feed(chunk)
    return b.result()


async def _peaks_s3(request: web.Request, call_id: str) -> _Peaks | None:
    s3 = request.app.get(S3_UPLOADER)
    obj = await rec._from_s3(s3.open_audio(call_id, AUDIO_WAV)) if s3 else None
    if obj is None:
        return None
    try:
        size = int(obj.headers.get("Content-Length", "0"))
        b = PeakBuilder(max(0, size - WAV_HEADER) // FRAME_BYTES)
        head = b""
        async for chunk in _skip_header(obj.chunks(), head):
            b.feed(chunk)
        return b.result()
    finally:
        obj.close()


async def _skip_header(chunks: AsyncIterator[bytes], head: bytes) -> AsyncIterator[bytes]:
    async for chunk in chunks:
        if len(head) < WAV_HEADER:
            take = WAV_HEADER - len(head)
            head += chunk[:take]
            chunk = chunk[take:]
        if chunk:
            yield chunk


async def peaks(request: web.Request) -> web.Response:
    call_id = call_id_of(request)
    cache: OrderedDict[str, _Peaks] = request.app[PEAKS]
    hit = cache.get(call_id)
    if hit is None:
        try:
            path = await rec._call(rec._store(request).file, call_id, AUDIO_WAV)
            hit = await asyncio.to_thread(_peaks_of_file, path)
        except ApiError as err:
            if err.status != 404:
                raise
            found = await _peaks_s3(request, call_id)
            if found is None:
                raise
            hit = found
        cache[call_id] = hit
        while len(cache) > CACHE_ENTRIES:
            cache.popitem(last=False)
    cache.move_to_end(call_id)
    return web.json_response({"object": "recording.peaks", "id": call_id, **hit},
                             headers={"Cache-Control": "private, max-age=3600"})


def setup(app: web.Application) -> None:
    app[PEAKS] = OrderedDict()
