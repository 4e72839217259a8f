"""Optional S3-compatible storage for finished recordings (aiobotocore).

A finished call directory ``<root>/YYYY/MM/DD/<call_id>/`` is uploaded to
``s3://<bucket>/<prefix>/YYYY/MM/DD/<call_id>/<file>``. Each object is sent with its
``ChecksumSHA256`` (the store verifies it), the answer's checksum or ETag (MD5, single part) is
compared, then the object is HEAD-ed and its size checked. Only when every object is confirmed
is the local directory removed (unless ``s3_keep_local``). A small pointer object
``<prefix>/index/<call_id>`` names the day, so a call can be found by id alone.

One background task (``start``/``stop``) drains a bounded queue of directories. Credentials
come from the environment variables the config names; they are never logged.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import logging
import os
import shutil
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiobotocore.config import AioConfig  # type: ignore[import-untyped]
from aiobotocore.session import get_session  # type: ignore[import-untyped]
from botocore.exceptions import BotoCoreError, ClientError  # type: ignore[import-untyped]

from .layout import AUDIO_WAV, MARKER, METADATA, iter_day_dirs, valid_call_id

if TYPE_CHECKING:
    from ..config import RecordingConfig

log = logging.getLogger("gateway.recording.s3")

#: Left in a kept local directory (``s3_keep_local``) once it is uploaded.
UPLOADED = ".uploaded"


class UploadError(Exception):
    """An object was not confirmed (checksum or size mismatch)."""


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


def _digests(path: Path) -> tuple[bytes, str, str]:
    """The file's bytes, base64 sha256 and hex md5."""
    data = path.read_bytes()
    return (data, base64.b64encode(hashlib.sha256(data).digest()).decode(),
            hashlib.md5(data, usedforsecurity=False).hexdigest())


class S3Uploader:
    def __init__(self, cfg: RecordingConfig, root: Path, *,
                 on_error: Callable[[], None] | None = None,
                 env: Mapping[str, str] | None = None, queue_size: int = 256) -> None:
        self.cfg = cfg
        self.root = root
        self.bucket = cfg.s3_bucket
        self.prefix = cfg.s3_prefix.strip("/")
        self._on_error = on_error
        env = os.environ if env is None else env
        self._key_id = env.get(cfg.s3_access_key_env) or None
        self._secret = env.get(cfg.s3_secret_key_env) or None
        self._queue: asyncio.Queue[Path] = asyncio.Queue(queue_size)
        self._task: asyncio.Task[None] | None = None
        self._stack: contextlib.AsyncExitStack | None = None
        self._client: Any = None
        self.uploaded = 0
        self.failed = 0

    def __repr__(self) -> str:  # no credentials
        return f"S3Uploader(bucket={self.bucket!r}, prefix={self.prefix!r})"

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        stack = contextlib.AsyncExitStack()
        self._client = await stack.enter_async_context(get_session().create_client(
            "s3", endpoint_url=self.cfg.s3_endpoint_url or None,
            region_name=self.cfg.s3_region or None,
            aws_access_key_id=self._key_id, aws_secret_access_key=self._secret,
            config=AioConfig(retries={"max_attempts": 1, "mode": "standard"},
                             connect_timeout=5, read_timeout=30)))
        self._stack = stack
        self._task = asyncio.create_task(self._worker(), name="s3-uploader")

    async def stop(self) -> None:
        """Cancel the worker (an unfinished upload keeps its local copy) and close the client."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._stack is not None:
            await self._stack.aclose()
            self._stack = None
            self._client = None

    def enqueue(self, directory: Path) -> bool:
        """Queue a finished call directory; False (local copy kept) if stopped or full."""
        if self._task is None or self._task.done():
            return False
        try:
            self._queue.put_nowait(directory)
        except asyncio.QueueFull:
            log.warning("upload queue full; %s stays local until the next start", directory.name)
            return False
        return True

    async def enqueue_pending(self) -> int:
        """Queue every finished local call not yet uploaded (run at start-up)."""
        dirs = await asyncio.to_thread(self.pending_local)
        return sum(self.enqueue(d) for d in dirs)

    def pending_local(self) -> list[Path]:
        out: list[Path] = []
        for day, _ in iter_day_dirs(self.root, newest_first=False):
            with contextlib.suppress(OSError):
                for d in sorted(day.iterdir()):
                    if ((d / METADATA).is_file() and not (d / MARKER).exists()
                            and not (d / UPLOADED).exists()):
                        out.append(d)
        return out

    async def _worker(self) -> None:
        while True:
            directory = await self._queue.get()
            try:
                await self.upload_call(directory)
            except Exception:  # never let one call stop the worker
                log.exception("upload of %s failed", directory.name)
            finally:
                self._queue.task_done()

    # -- upload ------------------------------------------------------------------------------

    def key(self, day: str, call_id: str, name: str) -> str:
        return "/".join(p for p in (self.prefix, day, call_id, name) if p)

    def _index_key(self, call_id: str) -> str:
        return "/".join(p for p in (self.prefix, "index", call_id) if p)

    async def upload_call(self, directory: Path) -> bool:
        """Upload every file of a finished call; remove the local copy once all are confirmed.

        Retries with exponential backoff; on persistent failure the local copy stays and the
        error is logged and counted.
        """
        call_id = directory.name
        day = "/".join(directory.parts[-4:-1])
        attempts = max(1, self.cfg.s3_max_attempts)
        for attempt in range(attempts):
            try:
                await self._upload_once(directory, day, call_id)
                break
            except (BotoCoreError, ClientError, UploadError, OSError) as exc:
                if attempt + 1 >= attempts:
                    self.failed += 1
                    log.error("upload of recording %s failed after %d attempt(s): %s; "
                              "kept locally", call_id, attempts, type(exc).__name__)
                    if self._on_error is not None:
                        self._on_error()
                    return False
                delay = self.cfg.s3_backoff_s * (2 ** attempt)
                log.warning("upload of recording %s failed (%s); retry in %.2fs",
                            call_id, type(exc).__name__, delay)
                await asyncio.sleep(delay)
        if self.cfg.s3_keep_local:
            await asyncio.to_thread((directory / UPLOADED).touch)
        else:
            await asyncio.to_thread(self._remove_local, directory)
        self.uploaded += 1
        log.info("recording %s uploaded to s3://%s/%s", call_id, self.bucket,
                 self.key(day, call_id, ""))
        return True

    async def _upload_once(self, directory: Path, day: str, call_id: str) -> None:
        names = sorted(p.name for p in await asyncio.to_thread(lambda: list(directory.iterdir()))
                       if p.is_file() and not p.name.startswith("."))
        if METADATA not in names:
            raise UploadError(f"{call_id}: not finalized")
        names.remove(METADATA)
        names.append(METADATA)  # last: its presence in S3 means the call is complete
        sizes: dict[str, tuple[int, str]] = {}
        for name in names:
            data, sha, md5 = await asyncio.to_thread(_digests, directory / name)
            key = self.key(day, call_id, name)
            resp = await self._client.put_object(
                Bucket=self.bucket, Key=key, Body=data, ChecksumSHA256=sha,
                ChecksumAlgorithm="SHA256")
            got = resp.get("ChecksumSHA256")
            if got is not None and got != sha:
                raise UploadError(f"{key}: checksum mismatch")
            if got is None and resp.get("ETag", "").strip('"') != md5:
                raise UploadError(f"{key}: ETag is not the file's MD5")
            sizes[key] = (len(data), sha)
        for key, (size, sha) in sizes.items():
            head = await self._client.head_object(Bucket=self.bucket, Key=key,
                                                  ChecksumMode="ENABLED")
            if head.get("ContentLength") != size:
                raise UploadError(f"{key}: size {head.get('ContentLength')} != {size}")
            if head.get("ChecksumSHA256") not in (None, sha):
                raise UploadError(f"{key}: stored checksum mismatch")
        await self._client.put_object(Bucket=self.bucket, Key=self._index_key(call_id),
                                      Body=day.encode(), ContentType="text/plain")

    def _remove_local(self, directory: Path) -> None:
        shutil.rmtree(directory, ignore_errors=True)
        parent = directory.parent
        for _ in range(3):  # empty day/month/year directories
            if parent == self.root:
                break
            try:
                parent.rmdir()
            except OSError:
                break
            parent = parent.parent

    # -- read --------------------------------------------------------------------------------

    async def _day(self, call_id: str) -> str | None:
        if not valid_call_id(call_id):
            return None
        try:
            resp = await self._client.get_object(Bucket=self.bucket,
                                                 Key=self._index_key(call_id))
            async with resp["Body"] as body:
                return (await body.read()).decode()  # type: ignore[no-any-return]
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                return None
            raise

    async def fetch_metadata(self, call_id: str) -> dict[str, Any] | None:
        """A call's ``metadata.json`` from S3, or None if it is not there."""
        day = await self._day(call_id)
        if day is None:
            return None
        try:
            resp = await self._client.get_object(Bucket=self.bucket,
                                                 Key=self.key(day, call_id, METADATA))
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                return None
            raise
        async with resp["Body"] as body:
            meta: dict[str, Any] = json.loads(await body.read())
        return meta

    async def open_audio(self, call_id: str, name: str = AUDIO_WAV,
                         range_header: str | None = None) -> S3Object | None:
        """Stream one recorded file (``Range`` passed through); None if it is not there.

        A ``Range`` the object cannot satisfy raises ``ClientError`` (code InvalidRange).
        """
        day = await self._day(call_id)
        if day is None:
            return None
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Key": self.key(day, call_id, name)}
        if range_header:
            kwargs["Range"] = range_header
        try:
            resp = await self._client.get_object(**kwargs)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                return None
            raise
        headers = {"Content-Length": str(resp["ContentLength"]), "Accept-Ranges": "bytes"}
        if resp.get("ContentRange"):
            headers["Content-Range"] = resp["ContentRange"]
        status = int(resp["ResponseMetadata"]["HTTPStatusCode"])
        return S3Object(status, headers, resp["Body"])
