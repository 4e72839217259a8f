"""Optional S3-compatible storage for finished recordings (aiobotocore): the uploader.

A finished call directory ``<root>/YYYY/MM/DD/<call_id>/`` is uploaded to
``s3://<bucket>/<prefix>/YYYY/MM/DD/<call_id>/<file>``. A file up to
``s3_multipart_threshold_mib`` goes up in one PUT with its ``ChecksumSHA256`` (the store
verifies it) and the answer's checksum or ETag (MD5) is compared; a larger one goes up in
parts (``s3_multipart.py``), checked part by part and as a whole, aborted on failure. Then
every object is HEAD-ed and its size and checksum checked. Only when every object is
confirmed is the local directory removed (unless ``s3_keep_local``). A small pointer object
``<prefix>/index/<call_id>`` names the day, so a call can be found by id alone. Reading is
``s3_read.py`` (which this class extends) and ``s3_list.py``.

One background task (``start``/``stop``) drains a bounded queue of directories. Credentials
come from the environment variables the config names; they are never logged.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import logging
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from botocore.exceptions import BotoCoreError, ClientError  # type: ignore[import-untyped]

from .layout import MARKER, METADATA, iter_day_dirs
from .s3_multipart import MIB, UploadError, part_size, upload_multipart
from .s3_read import S3Object, S3Reader

if TYPE_CHECKING:
    from ..config import RecordingConfig

__all__ = ["UPLOADED", "S3Object", "S3Reader", "S3Uploader", "UploadError"]

log = logging.getLogger("gateway.recording.s3")

#: Left in a kept local directory (``s3_keep_local``) once it is uploaded.
UPLOADED = ".uploaded"


def _digests(path: Path) -> tuple[bytes, str, str]:
    """The file's bytes, base64 sha256 and hex md5."""
    data = path.read_bytes()
    return (data, base64.b64encode(hashlib.sha256(data).digest()).decode(),
            hashlib.md5(data, usedforsecurity=False).hexdigest())


def _bare(checksum: str) -> str:
    """A composite checksum without its ``-<parts>`` (some stores leave it out on HEAD)."""
    return checksum.partition("-")[0]


def _why(exc: BaseException) -> str:
    """The failure in a log line: our own checks say which object; the client's errors only
    their type and code (never a message that might echo a request)."""
    if isinstance(exc, UploadError):
        return f"UploadError: {exc}"
    if isinstance(exc, ClientError):
        return f"{exc.operation_name}: {exc.response.get('Error', {}).get('Code', '?')}"
    return type(exc).__name__


class S3Uploader(S3Reader):
    def __init__(self, cfg: RecordingConfig, root: Path, *,
                 on_error: Callable[[], None] | None = None,
                 env: Mapping[str, str] | None = None, queue_size: int = 256) -> None:
        super().__init__(cfg, env=env)
        self.root = root
        self._on_error = on_error
        self._queue: asyncio.Queue[Path] = asyncio.Queue(queue_size)
        self._task: asyncio.Task[None] | None = None
        self.uploaded = 0
        self.failed = 0

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        await self.open()
        self._task = asyncio.create_task(self._worker(), name="s3-uploader")

    async def stop(self) -> None:
        """Cancel the worker (an unfinished upload keeps its local copy) and close the client."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self.close()

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
                              "kept locally", call_id, attempts, _why(exc))
                    if self._on_error is not None:
                        self._on_error()
                    return False
                delay = self.cfg.s3_backoff_s * (2 ** attempt)
                log.warning("upload of recording %s failed (%s); retry in %.2fs",
                            call_id, _why(exc), delay)
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
        threshold = self.cfg.s3_multipart_threshold_mib * MIB
        sizes: dict[str, tuple[int, str]] = {}
        for name in names:
            path = directory / name
            key = self.key(day, call_id, name)
            size = (await asyncio.to_thread(path.stat)).st_size
            if size > threshold:
                sizes[key] = (size, await upload_multipart(
                    self.client, self.bucket, key, path, size,
                    part_size(size, self.cfg.s3_part_size_mib)))
                continue
            data, sha, md5 = await asyncio.to_thread(_digests, path)
            resp = await self.client.put_object(
                Bucket=self.bucket, Key=key, Body=data, ChecksumSHA256=sha,
                ChecksumAlgorithm="SHA256")
            got = resp.get("ChecksumSHA256")
            if got is not None and got != sha:
                raise UploadError(f"{key}: checksum mismatch")
            if got is None and resp.get("ETag", "").strip('"') != md5:
                raise UploadError(f"{key}: ETag is not the file's MD5")
            sizes[key] = (len(data), sha)
        for key, (size, sha) in sizes.items():
            head = await self.client.head_object(Bucket=self.bucket, Key=key,
                                                  ChecksumMode="ENABLED")
            if head.get("ContentLength") != size:
                raise UploadError(f"{key}: size {head.get('ContentLength')} != {size}")
            stored = head.get("ChecksumSHA256")
            if stored is not None and _bare(stored) != _bare(sha):
                raise UploadError(f"{key}: stored checksum mismatch")
        await self.client.put_object(Bucket=self.bucket, Key=self._index_key(call_id),
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
