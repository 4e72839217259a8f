"""Start-up repair of recordings whose process died mid-call (``kill -9``, OOM, power cut).

A call directory without ``metadata.json`` whose ``.recording.json`` is not locked by a live
writer (any process sharing the storage) lost its writer. Its WAV holds the audio up to the
last flush (at most about a second before the death) and a header that is up to a second
stale: repair the header from the file size, cut a partial transcript line, re-encode the Opus
copy from the WAV when one was being made, and write ``metadata.json`` with
``end_reason: "gateway_crash"``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..audio.formats import FRAME_SAMPLES, SAMPLE_RATE
from . import manifest, wav
from .layout import (
    AUDIO_OPUS,
    AUDIO_WAV,
    MARKER,
    METADATA,
    TRANSCRIPT,
    day_start,
    iso_utc,
    iter_call_dirs,
    iter_day_dirs,
    try_lock,
    write_json_atomic,
)

log = logging.getLogger("gateway.recording")

CRASH_REASON = "gateway_crash"


def recover(root: Path, *, min_age_s: float = 10.0, reencode_opus: bool = True) -> list[str]:
    """Repair every crashed recording under ``root``; returns the call ids repaired.

    Safe while calls are being recorded, by this process or another sharing ``root``: a
    live writer holds a lock on its marker. A directory with no marker at all is only
    touched once ``min_age_s`` old (a writer may be between ``mkdir`` and its lock).
    """
    repaired: list[str] = []
    for day, date in iter_day_dirs(root):
        for d in iter_call_dirs(day):
            try:
                if _recover_one(d, date, min_age_s=min_age_s, reencode_opus=reencode_opus):
                    repaired.append(d.name)
            except Exception:
                log.exception("recording %s: recovery failed", d.name)
    return repaired


def _recover_one(d: Path, date: str, *, min_age_s: float, reencode_opus: bool) -> bool:
    marker = d / MARKER
    lock_fd: int | None = None
    try:
        if (d / METADATA).exists():
            _drop_stale_marker(marker)
            return False
        info: dict[str, Any] = {}
        try:
            lock_fd = try_lock(marker)
            if lock_fd is None:
                return False  # live
            info = _read_json(marker)
        except FileNotFoundError:
            if (d / METADATA).exists() or time.time() - d.stat().st_mtime < min_age_s:
                return False
            tmp = d / f"{MARKER}.tmp"
            with contextlib.suppress(FileNotFoundError):
                lock_fd = try_lock(tmp)
                if lock_fd is None:
                    return False
        _repair(d, date, info, reencode_opus=reencode_opus)
        marker.unlink(missing_ok=True)
        (d / f"{MARKER}.tmp").unlink(missing_ok=True)
        return True
    finally:
        if lock_fd is not None:
            os.close(lock_fd)


def _repair(d: Path, date: str, info: dict[str, Any], *, reencode_opus: bool) -> None:
    errors: list[str] = []
    started_at = float(info.get("started_at_unix") or day_start(date))
    wav_path = d / AUDIO_WAV
    # When the call last wrote (its end, as far as anyone can tell), read before the repair
    # below rewrites the files: after it, their times say when the recovery ran.
    last_write = max((p.stat().st_mtime for p in (wav_path, d / TRANSCRIPT) if p.exists()),
                     default=started_at)
    if wav_path.exists():
        data_bytes = wav.repair(wav_path, sample_rate=SAMPLE_RATE, channels=2)
    else:
        wav_path.write_bytes(wav.header(0, sample_rate=SAMPLE_RATE, channels=2))
        data_bytes = 0
    lines = _repair_transcript(d / TRANSCRIPT)
    caller_s, agent_s = _voiced_seconds(wav_path, data_bytes)

    opus_path = d / AUDIO_OPUS
    if info.get("opus_copy") or opus_path.exists():
        opus_path.unlink(missing_ok=True)  # a cut Ogg stream: never trust it
        if reencode_opus:
            try:
                from .opus import encode_wav

                encode_wav(wav_path, opus_path)
            except Exception as exc:
                errors.append(f"opus: {type(exc).__name__}: {exc}")

    wav_s = data_bytes / 4 / SAMPLE_RATE
    duration = max(wav_s, last_write - started_at)
    audio = {
        "format": "wav", "sample_rate": SAMPLE_RATE, "channels": 2, "sample_format": "s16le",
        "left": "caller", "right": "agent", "duration_s": round(wav_s, 3),
        "caller_seconds": caller_s, "agent_seconds": agent_s,
        "opus_copy": opus_path.exists(),
    }
    recording = {
        "recovered": True,
        "recovered_at": iso_utc(time.time()),
        # Counted from non-silent 20 ms frames: the writer's own counts died with it.
        "audio_seconds_estimated": True,
        "transcript_lines": lines,
        "errors": errors,
    }
    meta = manifest.build(
        call_id=d.name, start_meta=info.get("metadata") or {}, extra={}, started_at=started_at,
        duration_s=duration, end_reason=CRASH_REASON, audio=audio, recording=recording,
        files=manifest.file_digests(d))
    write_json_atomic(d / METADATA, meta)
    log.warning("recording %s: recovered after a crash (%.1f s of audio)", d.name, wav_s)


def _repair_transcript(path: Path) -> int:
    """Cut a torn last line; returns the number of lines kept."""
    if not path.exists():
        path.touch()
        return 0
    data = path.read_bytes()
    keep = data.rfind(b"\n") + 1
    if keep != len(data):
        with path.open("r+b") as f:
            f.truncate(keep)
    return data.count(b"\n")


def _voiced_seconds(path: Path, data_bytes: int) -> tuple[float, float]:
    """Seconds of 20 ms frames that are not all zero, per channel (silence fill is exact 0)."""
    frames = [0, 0]
    block = FRAME_SAMPLES * 4 * 50  # 1 s of stereo
    with path.open("rb") as f:
        f.seek(wav.HEADER_BYTES)
        left = data_bytes
        while left > 0:
            chunk = f.read(min(block, left))
            if not chunk:
                break
            left -= len(chunk)
            x = np.frombuffer(chunk, dtype="<i2")
            whole = len(x) // (FRAME_SAMPLES * 2) * FRAME_SAMPLES * 2
            parts = [x[:whole].reshape(-1, FRAME_SAMPLES, 2)]
            if whole < len(x):
                parts.append(x[whole:].reshape(1, -1, 2))
            for p in parts:
                voiced = np.any(p != 0, axis=1)  # (frames, 2)
                frames[0] += int(voiced[:, 0].sum())
                frames[1] += int(voiced[:, 1].sum())
    sec = FRAME_SAMPLES / SAMPLE_RATE
    return round(frames[0] * sec, 3), round(frames[1] * sec, 3)


def _drop_stale_marker(marker: Path) -> None:
    """A crash between writing metadata.json and removing the marker leaves both."""
    try:
        fd = try_lock(marker)
    except FileNotFoundError:
        return
    if fd is not None:
        try:
            marker.unlink(missing_ok=True)
        finally:
            os.close(fd)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        obj = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return obj if isinstance(obj, dict) else {}
