"""Reading recordings from S3-compatible storage: one call's metadata, files, verification.

The layout mirrors the local one: ``<prefix>/YYYY/MM/DD/<call_id>/<file>``, with
``metadata.json`` written last (its presence means the call is complete in the bucket) and a
pointer ``<prefix>/index/<call_id>`` that holds ``YYYY/MM/DD``. ``S3Reader`` owns one
aiobotocore client (``open``/``close`` or ``async with``); the uploader (``s3.py``) extends it.
Credentials come from the environment variables the config names and are never logged.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections import OrderedDict
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiobotocore.config import AioConfig  # type: ignore[import-untyped]
from aiobotocore.session import get_session  # type: ignore[import-untyped]
from botocore.exceptions import ClientError  # type: ignore[import-untyped]

from .layout import AUDIO_WAV, METADATA, RECORDED_FILES, valid_call_id

if TYPE_CHECKING:
    from ..config import RecordingConfig

_MISSING = ("NoSuchKey", "404", "NotFound")


def missing(exc: ClientError) -> bool:
    """The object (or key) is not there."""
    return exc.response.get("Error", {}).get("Code") in _MISSING


@dataclass
class S3Object:
    """An open object: stream its body with ``chunks()``, then ``close()``."""

    status: int
    headers: dict[str, str]
    _body: Any

    async def chunks(self, size: int = 1 << 16) -> AsyncIterator[bytes]:
        while chunk := await self._body.read(size):
            yield chunk

    def close(self) -> None:
        self._body.close()


class S3Reader:
    def __init__(self, cfg: RecordingConfig, *, env: Mapping[str, str] | None = None) -> None:
        self.cfg = cfg
        self.bucket = cfg.s3_bucket
        self.prefix = cfg.s3_prefix.strip("/")
        env = os.environ if env is None else env
        self._key_id = env.get(cfg.s3_access_key_env) or None
        self._secret = env.get(cfg.s3_secret_key_env) or None
        self._stack: contextlib.AsyncExitStack | None = None
        self._client: Any = None
        #: object key -> (ETag, metadata): filled by ``s3_list.S3Listing``.
        self.listing_cache: OrderedDict[str, tuple[str, dict[str, Any]]] = OrderedDict()

    @property
    def client(self) -> Any:
        """The aiobotocore S3 client (``open`` first)."""
        if self._client is None:
            raise RuntimeError(f"{self!r} is not open")
        return self._client

    def __repr__(self) -> str:  # no credentials
        return f"{type(self).__name__}(bucket={self.bucket!r}, prefix={self.prefix!r})"

    async def open(self) -> None:
        stack = contextlib.AsyncExitStack()
        self._client = await stack.enter_async_context(get_session().create_client(
            "s3", endpoint_url=self.cfg.s3_endpoint_url or None,
            region_name=self.cfg.s3_region or None,
            aws_access_key_id=self._key_id, aws_secret_access_key=self._secret,
            config=AioConfig(retries={"max_attempts": 1, "mode": "standard"},
                             connect_timeout=5, read_timeout=30)))
        self._stack = stack

    async def close(self) -> None:
        if self._stack is not None:
            await self._stack.aclose()
            self._stack = None
            self._client = None

    async def __aenter__(self) -> S3Reader:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- keys --------------------------------------------------------------------------------

    def key(self, day: str, call_id: str, name: str) -> str:
        return "/".join(p for p in (self.prefix, day, call_id, name) if p)

    def _index_key(self, call_id: str) -> str:
        return "/".join(p for p in (self.prefix, "index", call_id) if p)

    async def _get(self, key: str, **extra: Any) -> dict[str, Any] | None:
        """``GetObject``'s answer, or None if there is no such object."""
        try:
            resp: dict[str, Any] = await self._client.get_object(Bucket=self.bucket, Key=key,
                                                                 **extra)
        except ClientError as exc:
            if missing(exc):
                return None
            raise
        return resp

    async def read_object(self, key: str) -> bytes | None:
        """A whole (small) object, or None if it is not there."""
        resp = await self._get(key)
        if resp is None:
            return None
        async with resp["Body"] as body:
            data: bytes = await body.read()
        return data

    async def day_of(self, call_id: str) -> str | None:
        """``YYYY/MM/DD`` of an uploaded call (from its index pointer), or None."""
        if not valid_call_id(call_id):
            return None
        data = await self.read_object(self._index_key(call_id))
        return None if data is None else data.decode()

    # -- one call ----------------------------------------------------------------------------

    async def fetch_metadata(self, call_id: str) -> dict[str, Any] | None:
        """A call's ``metadata.json`` from S3, or None if it is not there."""
        day = await self.day_of(call_id)
        if day is None:
            return None
        data = await self.read_object(self.key(day, call_id, METADATA))
        if data is None:
            return None
        meta = json.loads(data)
        return meta if isinstance(meta, dict) else None

    async def open_audio(self, call_id: str, name: str = AUDIO_WAV,
                         range_header: str | None = None) -> S3Object | None:
        """Stream one recorded file (``Range`` passed through); None if it is not there.

        A ``Range`` the object cannot satisfy raises ``ClientError`` (code InvalidRange).
        """
        day = await self.day_of(call_id)
        if day is None or name not in RECORDED_FILES:
            return None
        resp = await self._get(self.key(day, call_id, name),
                               **({"Range": range_header} if range_header else {}))
        if resp is None:
            return None
        headers = {"Content-Length": str(resp["ContentLength"]), "Accept-Ranges": "bytes"}
        if resp.get("ContentRange"):
            headers["Content-Range"] = resp["ContentRange"]
        status = int(resp["ResponseMetadata"]["HTTPStatusCode"])
        return S3Object(status, headers, resp["Body"])

    async def _objects(self, day: str, call_id: str) -> dict[str, int]:
        """``{file name: size}`` of every object stored for one call."""
        base = self.key(day, call_id, "") + "/"
        out: dict[str, int] = {}
        paginator = self._client.get_paginator("list_objects_v2")
        async for page in paginator.paginate(Bucket=self.bucket, Prefix=base):
            for obj in page.get("Contents", []):
                out[obj["Key"][len(base):]] = int(obj["Size"])
        return out

    async def _digest(self, key: str, sink: Path | None = None) -> tuple[str, int] | None:
        """sha256 hex and size of an object as stored (written to ``sink`` too); None if absent."""
        resp = await self._get(key)
        if resp is None:
            return None
        h = hashlib.sha256()
        size = 0
        with contextlib.ExitStack() as files:
            f = files.enter_context(sink.open("wb")) if sink is not None else None
            async with resp["Body"] as body:
                while chunk := await body.read(1 << 20):
                    h.update(chunk)
                    size += len(chunk)
                    if f is not None:
                        f.write(chunk)
        return h.hexdigest(), size

    async def verify(self, call_id: str) -> list[str] | None:
        """Every difference between the stored objects and the call's recorded sha256/size
        (each object is read in full); [] when intact, None when the call is not in S3."""
        day = await self.day_of(call_id)
        if day is None:
            return None
        return await self._check(day, call_id, None)

    async def download(self, call_id: str, out_dir: Path) -> tuple[Path, list[str]] | None:
        """Copy the call's files to ``out_dir/<call_id>/`` and check them on the way;
        ``(directory, problems)``, or None when the call is not in S3."""
        day = await self.day_of(call_id)
        if day is None:
            return None
        dst = out_dir / call_id
        dst.mkdir(parents=True, exist_ok=False)
        return dst, await self._check(day, call_id, dst)

    async def _check(self, day: str, call_id: str, dst: Path | None) -> list[str]:
        raw = await self.read_object(self.key(day, call_id, METADATA))
        try:
            meta = json.loads(raw) if raw is not None else None
        except ValueError:
            meta = None
        if not isinstance(meta, dict) or not isinstance(meta.get("files"), dict):
            return [f"{call_id}: metadata.json missing, unreadable or without checksums"]
        if dst is not None:
            (dst / METADATA).write_bytes(raw or b"")
        problems: list[str] = []
        files: dict[str, Any] = meta["files"]
        for name, want in sorted(files.items()):
            got = None
            if name in RECORDED_FILES:
                got = await self._digest(self.key(day, call_id, name),
                                         dst / name if dst is not None else None)
            if got is None:
                problems.append(f"{call_id}/{name}: missing")
                continue
            digest, size = got
            if size != want.get("size"):
                problems.append(f"{call_id}/{name}: size {size} != recorded {want.get('size')}")
            if digest != want.get("sha256"):
                problems.append(f"{call_id}/{name}: sha256 {digest} != recorded "
                                f"{want.get('sha256')}")
        for name in sorted(await self._objects(day, call_id)):
            if name in RECORDED_FILES and name not in files:
                problems.append(f"{call_id}/{name}: present but not in metadata")
        return problems
