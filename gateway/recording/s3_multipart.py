"""Multipart upload of one large file, checked part by part and as a whole.

Every part is sent with its ``ChecksumSHA256`` (S3 refuses a part whose bytes do not match)
and its answer is compared (the checksum, or the ETag against the part's MD5). After
``CompleteMultipartUpload`` the object's composite checksum (sha256 of the parts' sha256s,
``<base64>-<parts>``) or its ETag (MD5 of the parts' MD5s, ``<hex>-<parts>``) is compared
with the one computed here from the file. Any failure aborts the upload, so no orphan parts
are left behind (a process killed mid-upload cannot abort: a bucket lifecycle rule
``AbortIncompleteMultipartUpload`` covers that). Only one part is in memory at a time.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
from pathlib import Path
from typing import Any

log = logging.getLogger("gateway.recording.s3")


class UploadError(Exception):
    """An object was not confirmed (checksum or size mismatch)."""

MIB = 1 << 20
#: S3's smallest part (all but the last) and largest part count.
MIN_PART = 5 * MIB
MAX_PARTS = 10_000


def part_size(size: int, wanted_mib: float) -> int:
    """Bytes per part: the configured size, at least 5 MiB, at most 10 000 parts."""
    return max(MIN_PART, int(wanted_mib * MIB), -(-size // MAX_PARTS))


def _read_part(path: Path, offset: int, length: int) -> tuple[bytes, bytes, bytes]:
    """The part's bytes, raw sha256 and raw md5."""
    with path.open("rb") as f:
        f.seek(offset)
        data = f.read(length)
    return (data, hashlib.sha256(data).digest(),
            hashlib.md5(data, usedforsecurity=False).digest())


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


async def upload_multipart(client: Any, bucket: str, key: str, path: Path, size: int,
                           part: int) -> str:
    """Upload ``path`` (``size`` bytes) in parts of ``part`` bytes; return the object's
    composite checksum (``<base64>-<parts>``), for the later HEAD check.

    Raises ``UploadError`` (or the client's error) after aborting the upload.
    """
    created = await client.create_multipart_upload(Bucket=bucket, Key=key,
                                                   ChecksumAlgorithm="SHA256")
    upload_id: str = created["UploadId"]
    try:
        parts: list[dict[str, Any]] = []
        shas: list[bytes] = []
        md5s: list[bytes] = []
        for number, offset in enumerate(range(0, size, part), start=1):
            data, sha, md5 = await asyncio.to_thread(_read_part, path, offset, part)
            if len(data) != min(part, size - offset):
                raise UploadError(f"{key}: file changed during upload")
            resp = await client.upload_part(Bucket=bucket, Key=key, UploadId=upload_id,
                                            PartNumber=number, Body=data,
                                            ChecksumSHA256=_b64(sha))
            got = resp.get("ChecksumSHA256")
            if got is not None and got != _b64(sha):
                raise UploadError(f"{key}: part {number} checksum mismatch")
            if got is None and resp.get("ETag", "").strip('"') != md5.hex():
                raise UploadError(f"{key}: part {number} ETag is not its MD5")
            parts.append({"PartNumber": number, "ETag": resp["ETag"],
                          "ChecksumSHA256": _b64(sha)})
            shas.append(sha)
            md5s.append(md5)
        n = len(parts)
        composite = f"{_b64(hashlib.sha256(b''.join(shas)).digest())}-{n}"
        etag = f"{hashlib.md5(b''.join(md5s), usedforsecurity=False).hexdigest()}-{n}"
        done = await client.complete_multipart_upload(
            Bucket=bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts})
    except BaseException as exc:
        await _abort(client, bucket, key, upload_id, exc)
        raise
    got = done.get("ChecksumSHA256")
    if got is not None and got != composite:
        raise UploadError(f"{key}: composite checksum mismatch")
    if got is None and done.get("ETag", "").strip('"') != etag:
        raise UploadError(f"{key}: ETag is not the MD5 of the parts' MD5s")
    return composite


async def _abort(client: Any, bucket: str, key: str, upload_id: str,
                 cause: BaseException) -> None:
    try:
        await asyncio.wait_for(client.abort_multipart_upload(
            Bucket=bucket, Key=key, UploadId=upload_id), 10)
    except Exception as exc:  # the cause is what the caller needs to see
        log.warning("could not abort multipart upload of %s (%s after %s); a bucket "
                    "lifecycle rule must clean it", key, type(exc).__name__,
                    type(cause).__name__)
    else:
        log.info("aborted multipart upload of %s after %s", key, type(cause).__name__)
