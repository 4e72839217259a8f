"""``metadata.json``: what a finalized recording says about itself, checksums included."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from .layout import FORMAT_VERSION, RECORDED_FILES, iso_utc

#: Always present (None when unknown), so listings can filter on them.
STANDARD_KEYS = ("transport", "caller", "agent", "model")
#: Set by the recorder; start metadata or close extras cannot override them.
RESERVED_KEYS = frozenset({
    "format_version", "call_id", "started_at", "started_at_unix", "ended_at", "ended_at_unix",
    "duration_s", "end_reason", "audio", "recording", "files",
})


def sha256_file(path: Path, *, chunk: int = 1 << 20) -> tuple[str, int]:
    h = hashlib.sha256()
    size = 0
    with path.open("rb") as f:
        while block := f.read(chunk):
            h.update(block)
            size += len(block)
    return h.hexdigest(), size


def file_digests(call_dir: Path) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for name in RECORDED_FILES:
        p = call_dir / name
        if p.is_file():
            digest, size = sha256_file(p)
            out[name] = {"sha256": digest, "size": size}
    return out


def build(*, call_id: str, start_meta: dict[str, Any], extra: dict[str, Any],
          started_at: float, duration_s: float, end_reason: str, audio: dict[str, Any],
          recording: dict[str, Any], files: dict[str, dict[str, Any]]) -> dict[str, Any]:
    meta: dict[str, Any] = dict.fromkeys(STANDARD_KEYS)
    for source in (start_meta, extra):
        meta.update({k: v for k, v in source.items() if k not in RESERVED_KEYS})
    ended_at = started_at + duration_s
    meta.update({
        "format_version": FORMAT_VERSION,
        "call_id": call_id,
        "started_at": iso_utc(started_at),
        "started_at_unix": round(started_at, 3),
        "ended_at": iso_utc(ended_at),
        "ended_at_unix": round(ended_at, 3),
        "duration_s": round(duration_s, 3),
        "end_reason": end_reason,
        "audio": audio,
        "recording": recording,
        "files": files,
    })
    return meta
