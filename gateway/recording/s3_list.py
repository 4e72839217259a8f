"""Listing recordings across the local directory and S3, as one newest-first list.

A call is in S3 once its ``metadata.json`` is (the uploader writes it last). The bucket is
walked like the local root: year, month and day prefixes newest first, skipping the days
outside ``[start, end)`` and after the cursor, stopping once a page is full. Within a day
every call's ``metadata.json`` is read (the listing alone does not say when a call started
or who called), kept in a bounded cache keyed by object key and ETag, so later pages and
later listings of the same days cost one LIST per day.

``list_merged`` merges that with the local listing (calls not uploaded yet, or kept with
``s3_keep_local``): each source gives its first ``limit`` calls after the cursor, a call
in both counts once, and the cursor, the order and the filters are the local ones
(``store.py``), so a cursor from one page works across both sources.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from typing import Any

from .layout import METADATA, valid_call_id
from .s3_read import S3Reader
from .store import (
    Page,
    PageBuilder,
    RecordingStore,
    _order_key,
    encode_cursor,
)

_YEAR = re.compile(r"\d{4}")
_TWO = re.compile(r"\d{2}")
#: metadata.json objects remembered between listings (about 2 KiB each).
CACHE_ENTRIES = 10_000
#: Concurrent GETs while reading a day's metadata.
FETCH_CONCURRENCY = 8

class S3Listing:
    """Listing over one reader; the metadata cache lives on the reader (``listing_cache``),
    so a listing object per request is cheap."""

    def __init__(self, reader: S3Reader, *, cache_entries: int = CACHE_ENTRIES) -> None:
        self.reader = reader
        self._cache = reader.listing_cache
        self._cache_entries = cache_entries

    async def _subdirs(self, prefix: str, pattern: re.Pattern[str]) -> list[str]:
        """Names of the "directories" right below ``prefix`` that match, newest first."""
        names: list[str] = []
        paginator = self.reader.client.get_paginator("list_objects_v2")
        async for page in paginator.paginate(Bucket=self.reader.bucket, Prefix=prefix,
                                             Delimiter="/"):
            for cp in page.get("CommonPrefixes", []):
                name = cp["Prefix"][len(prefix):].rstrip("/")
                if pattern.fullmatch(name):
                    names.append(name)
        return sorted(names, reverse=True)

    async def _days(self) -> AsyncIterator[tuple[str, str]]:
        """``(prefix of the day, "YYYY-MM-DD")``, newest first, fetched lazily."""
        root = f"{self.reader.prefix}/" if self.reader.prefix else ""
        for y in await self._subdirs(root, _YEAR):
            for m in await self._subdirs(f"{root}{y}/", _TWO):
                for d in await self._subdirs(f"{root}{y}/{m}/", _TWO):
                    yield f"{root}{y}/{m}/{d}/", f"{y}-{m}-{d}"

    async def _day_metadata(self, day_prefix: str) -> list[dict[str, Any]]:
        want: list[tuple[str, str]] = []
        paginator = self.reader.client.get_paginator("list_objects_v2")
        async for page in paginator.paginate(Bucket=self.reader.bucket, Prefix=day_prefix):
            for obj in page.get("Contents", []):
                call_id, _, name = obj["Key"][len(day_prefix):].partition("/")
                if name == METADATA and valid_call_id(call_id):
                    want.append((obj["Key"], str(obj.get("ETag", ""))))
        sem = asyncio.Semaphore(FETCH_CONCURRENCY)

        async def one(key: str, etag: str) -> dict[str, Any] | None:
            hit = self._cache.get(key)
            if hit is not None and hit[0] == etag:
                self._cache.move_to_end(key)
                return hit[1]
            async with sem:
                raw = await self.reader.read_object(key)
            try:
                meta = json.loads(raw) if raw is not None else None
            except ValueError:
                return None
            if not isinstance(meta, dict):
                return None
            self._cache[key] = (etag, meta)
            while len(self._cache) > self._cache_entries:
                self._cache.popitem(last=False)
            return meta

        metas = await asyncio.gather(*(one(k, e) for k, e in want))
        return [m for m in metas if m is not None]

    async def list_recordings(self, *, start: float | None = None, end: float | None = None,
                              caller: str | None = None, agent: str | None = None,
                              limit: int = 100, cursor: str | None = None) -> Page:
        """The calls in the bucket, with the local listing's order, filters and cursor."""
        pages = PageBuilder(start=start, end=end, caller=caller, agent=agent, limit=limit,
                            cursor=cursor)
        async for day_prefix, date in self._days():
            verdict = pages.day(date)
            if verdict == "stop":
                break
            if verdict == "read":
                full = pages.add(await self._day_metadata(day_prefix))
                if full is not None:
                    return full
        return pages.page()


async def list_merged(store: RecordingStore, s3: S3Listing | None, **filters: Any) -> Page:
    """Local and S3 recordings as one page (``filters``: those of ``list_recordings``).

    Raises what the store raises (``InvalidQuery``) and what the S3 client raises.
    """
    local = await asyncio.to_thread(store.list_recordings, **filters)
    if s3 is None:
        return local
    remote = await s3.list_recordings(**filters)
    limit = int(filters.get("limit", 100))
    seen: dict[str, dict[str, Any]] = {}
    for m in (*local.data, *remote.data):  # local first: a call in both is served locally
        seen.setdefault(str(m.get("call_id")), m)
    merged = sorted(seen.values(), key=_order_key, reverse=True)
    more = len(merged) > limit or local.has_more or remote.has_more
    page = merged[:limit]
    cursor = encode_cursor(*_order_key(page[-1])) if more and page else None
    return Page(page, more and bool(page), cursor)
