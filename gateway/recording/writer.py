"""The writer thread of one call: every file operation of a recording happens here.

It drains the mailbox per batch (or every ``tick_s``), places audio with the aligner, writes
interleaved blocks once both channels have passed them, appends transcript lines, and every
tick pushes silence into channels nobody spoke on for ``wall_margin_s``, writes what is ready
and rewrites the WAV header: a reader, or ``recover`` after a ``kill -9``, sees the audio up to
about a second ago. A failing disk never stops the call: the error is counted (``on_error``),
logged, noted in the metadata, and the thread keeps draining so the producer never backs up.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from ..audio.formats import SAMPLE_RATE
from . import manifest, wav
from .aligner import SAMPLES_PER_MS, StereoAligner
from .layout import (
    AUDIO_OPUS,
    AUDIO_WAV,
    FORMAT_VERSION,
    MARKER,
    METADATA,
    TRANSCRIPT,
    fsync_dir,
    iso_utc,
    write_json_atomic,
)
from .mailbox import Audio, Close, Line, Mailbox, Sync
from .opus import OpusWriter

log = logging.getLogger("gateway.recording")

#: Largest block written at once (1 s of stereo = 96 kB).
BLOCK_SAMPLES = SAMPLE_RATE


class RecordingWriter(threading.Thread):
    def __init__(self, *, directory: Path, call_id: str, started_at: float, mono0: float,
                 start_meta: dict[str, Any], opus_copy: bool, mailbox: Mailbox,
                 done: Future[None], on_bytes: Callable[[int], None] | None,
                 on_error: Callable[[], None] | None, tick_s: float = 0.5,
                 hold_s: float = 1.0, wall_margin_s: float = 0.25) -> None:
        super().__init__(name=f"recorder-{call_id}", daemon=True)
        self.directory = directory
        self.call_id = call_id
        self.started_at = started_at
        self._mono0 = mono0
        self._start_meta = start_meta
        self._opus_copy = opus_copy
        self._mb = mailbox
        self._done = done
        self._on_bytes = on_bytes
        self._on_error = on_error
        self._tick_s = tick_s
        self._margin = round(wall_margin_s * SAMPLE_RATE)
        self.aligner = StereoAligner(hold_samples=round(hold_s * SAMPLE_RATE))
        self.errors: list[str] = []
        self._lock_fd: int | None = None
        self._wav_fd: int | None = None
        self._text_fd: int | None = None
        self._opus: OpusWriter | None = None
        self._data_bytes = 0
        self._header_bytes = 0  # data size the header last announced
        self._unreported = 0
        self._lines = 0
        self._audio_off = False

    # ---- thread body ---------------------------------------------------------------------

    def run(self) -> None:
        self._done.set_running_or_notify_cancel()  # from here a caller's cancel cannot void it
        close: Close | None = None
        try:
            self._guard("open", self._open)
            next_tick = time.monotonic() + self._tick_s
            while close is None:
                self._mb.wait(max(0.0, next_tick - time.monotonic()))
                close = self._drain()
                now = time.monotonic()
                if close is None and now >= next_tick:
                    self._tick(now)
                    next_tick = max(next_tick + self._tick_s, now)
            self._finalize(close)
        except BaseException as exc:  # the future must resolve, whatever happened
            self._note_error("writer", exc)
        finally:
            self._release()
            if not self._done.done():
                self._done.set_result(None)

    def _drain(self) -> Close | None:
        syncs: list[Future[None]] = []
        for msg in self._mb.drain():
            if isinstance(msg, Audio):
                self._guard("align", self.aligner.place, msg.channel, msg.pcm, msg.offset_ms)
                if self.aligner.ready() >= BLOCK_SAMPLES:
                    self._guard("audio", self._commit)
            elif isinstance(msg, Line):
                self._guard("transcript", self._write_line, msg)
            elif isinstance(msg, Sync):
                syncs.append(msg.done)
            else:
                _resolve(syncs)
                return msg
        if syncs:
            self._tick(time.monotonic())
            _resolve(syncs)
        return None

    def _tick(self, now: float) -> None:
        self.aligner.fill_to(round((now - self._mono0) * SAMPLE_RATE) - self._margin)
        self._guard("audio", self._commit)
        self._guard("flush", self._flush)

    # ---- files ---------------------------------------------------------------------------

    def _open(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=False)
        # The marker is locked before it becomes visible under its name, so `recover` can
        # never see an unlocked marker of a live call.
        tmp = self.directory / f"{MARKER}.tmp"
        fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o640)
        self._lock_fd = fd
        fcntl.flock(fd, fcntl.LOCK_EX)
        marker = {"format_version": FORMAT_VERSION, "call_id": self.call_id,
                  "started_at_unix": self.started_at, "metadata": self._start_meta,
                  "opus_copy": self._opus_copy, "host": socket.gethostname(), "pid": os.getpid()}
        _write_all(fd, json.dumps(marker, default=str).encode())
        os.fsync(fd)
        os.replace(tmp, self.directory / MARKER)
        self._wav_fd = os.open(self.directory / AUDIO_WAV,
                               os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o640)
        _write_all(self._wav_fd, wav.header(0, sample_rate=SAMPLE_RATE, channels=2))
        self._text_fd = os.open(self.directory / TRANSCRIPT,
                                os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o640)
        fsync_dir(self.directory)
        if self._opus_copy:
            self._guard("opus", self._open_opus)

    def _open_opus(self) -> None:
        self._opus = OpusWriter(self.directory / AUDIO_OPUS)

    def _commit(self, final: bool = False) -> None:
        n = self.aligner.ready(final=final)
        while n > 0:
            k = min(n, BLOCK_SAMPLES)
            self._write_audio(self.aligner.take(k))
            n -= k

    def _write_audio(self, block: npt.NDArray[np.int16]) -> None:
        if self._wav_fd is None or self._audio_off:
            return
        data = block.astype("<i2", copy=False).tobytes()
        if self._data_bytes + len(data) > wav.MAX_DATA_BYTES:
            self._audio_off = True
            self.errors.append("audio: WAV size limit reached; later audio not recorded")
            return
        _write_all(self._wav_fd, data)
        self._data_bytes += len(data)
        self._unreported += len(data)
        if self._opus is not None:
            try:
                self._opus.write(block)
            except Exception as exc:  # the Opus copy is optional; the WAV goes on
                self._opus = None
                self._note_error("opus", exc)

    def _write_line(self, msg: Line) -> None:
        if self._text_fd is None:
            return
        record: dict[str, Any] = {
            "offset_ms": round(msg.offset_ms),
            "wall_time": iso_utc(self.started_at + msg.offset_ms / 1000),
            "kind": msg.kind, "speaker": msg.speaker, "text": msg.text, "item_id": msg.item_id,
        }
        for k, v in msg.extra.items():
            record.setdefault(k, v)
        data = (json.dumps(record, ensure_ascii=False, default=str) + "\n").encode()
        _write_all(self._text_fd, data)
        self._unreported += len(data)
        self._lines += 1

    def _flush(self) -> None:
        if self._wav_fd is not None and self._header_bytes != self._data_bytes:
            wav.update_sizes(self._wav_fd, self._data_bytes)
            self._header_bytes = self._data_bytes
        if self._unreported and self._on_bytes is not None:
            self._on_bytes(self._unreported)
        self._unreported = 0

    def _finalize(self, close: Close) -> None:
        end = round(close.end_offset_ms * SAMPLES_PER_MS)
        total = self.aligner.finish(end)
        self._guard("audio", self._commit, True)
        self._guard("flush", self._flush)
        for name, fd in (("audio", self._wav_fd), ("transcript", self._text_fd)):
            if fd is not None:
                self._guard(name, os.fsync, fd)
        if self._opus is not None:
            self._guard("opus", self._opus.close)
            self._opus = None
        self._close_fds()
        if self._lock_fd is None:  # never opened: nothing on disk to describe
            return
        caller, agent = (ch.stats for ch in self.aligner.channels)
        audio = {
            "format": "wav", "sample_rate": SAMPLE_RATE, "channels": 2, "sample_format": "s16le",
            "left": "caller", "right": "agent",
            "duration_s": round(self._data_bytes / 4 / SAMPLE_RATE, 3),
            "caller_seconds": round(caller.received_samples / SAMPLE_RATE, 3),
            "agent_seconds": round(agent.received_samples / SAMPLE_RATE, 3),
            "opus_copy": (self.directory / AUDIO_OPUS).exists(),
        }
        recording = {
            "recovered": False,
            "timeline_samples": total,
            "max_pending_ms": round(self.aligner.max_pending_samples / SAMPLES_PER_MS, 1),
            "alignment": {"caller": caller.as_ms(), "agent": agent.as_ms()},
            "transcript_lines": self._lines,
            "dropped": close.dropped,
            "errors": self.errors,
        }
        meta = manifest.build(
            call_id=self.call_id, start_meta=self._start_meta, extra=close.extra,
            started_at=self.started_at, duration_s=max(0.0, close.end_offset_ms / 1000),
            end_reason=close.end_reason, audio=audio, recording=recording,
            files=manifest.file_digests(self.directory))
        write_json_atomic(self.directory / METADATA, meta)
        (self.directory / MARKER).unlink(missing_ok=True)
        fsync_dir(self.directory)
        log.info("recording %s finalized: %.1f s, %d bytes", self.call_id,
                 audio["duration_s"], self._data_bytes)

    def _close_fds(self) -> None:
        for attr in ("_wav_fd", "_text_fd"):
            fd = getattr(self, attr)
            if fd is not None:
                setattr(self, attr, None)
                try:
                    os.close(fd)
                except OSError as exc:
                    self._note_error("close", exc)

    def _release(self) -> None:
        self._close_fds()
        if self._opus is not None:
            try:
                self._opus.close()
            except Exception as exc:
                self._note_error("opus", exc)
            self._opus = None
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # drops the flock
            self._lock_fd = None

    # ---- errors --------------------------------------------------------------------------

    def _guard(self, what: str, fn: Callable[..., object], *args: Any) -> None:
        try:
            fn(*args)
        except Exception as exc:  # recorded and reported, never raised to the call
            self._note_error(what, exc)
            if what in ("open", "audio"):
                self._audio_off = True  # stop writing audio; the call goes on

    def _note_error(self, what: str, exc: BaseException) -> None:
        self.errors.append(f"{what}: {type(exc).__name__}: {exc}")
        log.error("recording %s: %s failed: %s", self.call_id, what, exc, exc_info=exc)
        if self._on_error is not None:
            try:
                self._on_error()
            except Exception:
                log.exception("recording on_error hook failed")


def _resolve(futures: list[Future[None]]) -> None:
    for fut in futures:
        if fut.set_running_or_notify_cancel():  # False: its waiter was cancelled and left
            fut.set_result(None)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]
