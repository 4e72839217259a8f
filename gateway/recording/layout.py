"""Where a call's recording lives on disk, and the small helpers every module shares.

``<root>/YYYY/MM/DD/<call_id>/`` (UTC date of the call's start) holds ``audio.wav``,
``transcript.jsonl``, optionally ``audio.opus``, and, once the call is finalized,
``metadata.json``. While a call is being recorded its directory also holds ``.recording.json``
(the start metadata) on which the writer keeps an exclusive ``flock``: a directory without
``metadata.json`` whose marker is not locked belongs to a process that died (``recover``).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

#: Bumped when the meaning of a file or a metadata field changes.
FORMAT_VERSION = 1

AUDIO_WAV = "audio.wav"
AUDIO_OPUS = "audio.opus"
TRANSCRIPT = "transcript.jsonl"
METADATA = "metadata.json"
#: Start metadata + liveness lock of a call being recorded; removed at finalize.
MARKER = ".recording.json"
RECORDED_FILES = (AUDIO_WAV, TRANSCRIPT, AUDIO_OPUS)

_CALL_ID = re.compile(r"[A-Za-z0-9_-]{1,100}")
_YEAR = re.compile(r"\d{4}")
_TWO = re.compile(r"\d{2}")


def valid_call_id(call_id: str) -> bool:
    """Only ids that can never name anything but one directory below a day directory."""
    return _CALL_ID.fullmatch(call_id) is not None


def day_parts(started_at: float) -> tuple[str, str, str]:
    d = datetime.fromtimestamp(started_at, UTC)
    return f"{d.year:04d}", f"{d.month:02d}", f"{d.day:02d}"


def call_dir(root: Path, call_id: str, started_at: float) -> Path:
    if not valid_call_id(call_id):
        raise ValueError(f"invalid call id {call_id!r}")
    return root.joinpath(*day_parts(started_at), call_id)


def iso_utc(t: float) -> str:
    """ISO 8601 UTC with milliseconds and a ``Z``: ``2025-01-31T12:00:00.123Z``."""
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="milliseconds").replace(
        "+00:00", "Z")


def parse_time(value: str) -> float:
    """Unix seconds from ``1717171717[.5]`` or ISO 8601 (naive means UTC). ValueError if neither."""
    v = value.strip()
    if not v:
        raise ValueError("empty time")
    try:
        return float(v)
    except ValueError:
        pass
    d = datetime.fromisoformat(v.replace("z", "Z"))
    if d.tzinfo is None:
        d = d.replace(tzinfo=UTC)
    return d.timestamp()


def iter_day_dirs(root: Path, *, newest_first: bool = True) -> Iterator[tuple[Path, str]]:
    """``(day_dir, "YYYY-MM-DD")`` for every well-formed day directory under ``root``."""
    def subdirs(p: Path, pattern: re.Pattern[str]) -> list[str]:
        try:
            names = [e.name for e in os.scandir(p)
                     if pattern.fullmatch(e.name) and e.is_dir(follow_symlinks=False)]
        except (FileNotFoundError, NotADirectoryError):
            return []
        return sorted(names, reverse=newest_first)

    for y in subdirs(root, _YEAR):
        for m in subdirs(root / y, _TWO):
            for d in subdirs(root / y / m, _TWO):
                yield root / y / m / d, f"{y}-{m}-{d}"


def iter_call_dirs(day: Path) -> Iterator[Path]:
    try:
        entries = list(os.scandir(day))
    except (FileNotFoundError, NotADirectoryError):
        return
    for e in entries:
        if valid_call_id(e.name) and e.is_dir(follow_symlinks=False):
            yield Path(e.path)


def day_start(day: str) -> float:
    return datetime.strptime(day, "%Y-%m-%d").replace(tzinfo=UTC).timestamp()


def write_json_atomic(path: Path, obj: Any) -> None:
    """Write, fsync, rename: a reader sees the old file or the whole new one, never a torn one."""
    tmp = path.with_name(f".{path.name}.tmp")
    data = (json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n").encode()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    fsync_dir(path.parent)


def fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def try_lock(path: Path) -> int | None:
    """An fd holding an exclusive flock on ``path``; None if another holder has it.

    flock belongs to the open file description, so the lock is seen as held even by another
    open in the same process, and the kernel drops it when the holder dies (``kill -9``).
    FileNotFoundError propagates.
    """
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    except BaseException:
        os.close(fd)
        raise
    return fd


def is_live(call_dir_: Path) -> bool:
    """True while some process (this one included) is recording into ``call_dir_``."""
    try:
        fd = try_lock(call_dir_ / MARKER)
    except FileNotFoundError:
        return False
    if fd is None:
        return True
    os.close(fd)
    return False
