"""Finalized recordings as the files say they are: list, read, verify, export, delete, purge.

Nothing here is kept in memory between calls, so any instance that mounts the storage serves
every recording (DESIGN.md, process model). Blocking file I/O: call it from a thread when on
the event loop. Deletions are audit-logged on the ``gateway.audit`` logger with who, what and
when, in the message and as ``extra={"audit": {...}}`` for structured handlers.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .layout import (
    METADATA,
    RECORDED_FILES,
    TRANSCRIPT,
    day_start,
    is_live,
    iso_utc,
    iter_call_dirs,
    iter_day_dirs,
    valid_call_id,
)
from .manifest import sha256_file

log = logging.getLogger("gateway.recording")
audit = logging.getLogger("gateway.audit")

MAX_LIMIT = 1000
DAY_S = 86_400.0


class InvalidCallId(ValueError):
    """Not ``[A-Za-z0-9_-]{1,100}``: never looked up on disk."""


class RecordingNotFound(LookupError):
    pass


class RecordingInProgress(RuntimeError):
    """The call is still being recorded (or crashed and awaits ``recover``)."""


class InvalidQuery(ValueError):
    def __init__(self, param: str, message: str) -> None:
        super().__init__(message)
        self.param = param


@dataclass(slots=True)
class Page:
    data: list[dict[str, Any]] = field(default_factory=list)
    has_more: bool = False
    next_cursor: str | None = None


def encode_cursor(started_at: float, call_id: str) -> str:
    raw = json.dumps([started_at, call_id], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[float, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        t, cid = json.loads(raw)
        if not isinstance(cid, str) or not valid_call_id(cid):
            raise ValueError
        return float(t), cid
    except (ValueError, TypeError, binascii.Error) as exc:
        raise InvalidQuery("cursor", "invalid cursor") from exc


class PageBuilder:
    """One page of a listing: its filters, newest-first order and cursor, whatever the calls
    are read from (local day directories here, the bucket's day folders in ``s3_list``).
    Feed it days newest first: ``day`` says whether to read one, ``add`` takes its calls."""

    def __init__(self, *, start: float | None, end: float | None, caller: str | None,
                 agent: str | None, limit: int, cursor: str | None) -> None:
        if not 1 <= limit <= MAX_LIMIT:
            raise InvalidQuery("limit", f"limit must be 1..{MAX_LIMIT}")
        self.start, self.end, self.agent, self.limit = start, end, agent, limit
        self.after = decode_cursor(cursor) if cursor else None
        self.callers = _caller_forms(caller)
        self.out: list[dict[str, Any]] = []

    def day(self, date: str) -> str:
        """"read" the day, "skip" it, or "stop" (every later day is older than ``start``)."""
        d0 = day_start(date)
        if self.start is not None and d0 + DAY_S <= self.start:
            return "stop"
        if (self.end is not None and d0 >= self.end) or (
                self.after is not None and d0 > self.after[0]):
            return "skip"
        return "read"

    def add(self, metas: list[dict[str, Any]]) -> Page | None:
        """Take one day's calls; the finished page once it is full."""
        metas.sort(key=_order_key, reverse=True)
        for m in metas:
            key = _order_key(m)
            if self.after is not None and key >= self.after:
                continue
            t = key[0]
            if (self.start is not None and t < self.start) or (self.end is not None
                                                                and t >= self.end):
                continue
            if self.callers is not None and m.get("caller") not in self.callers:
                continue
            if self.agent is not None and m.get("agent") != self.agent:
                continue
            self.out.append(m)
            if len(self.out) > self.limit:
                last = self.out[self.limit - 1]
                return Page(self.out[:self.limit], True, encode_cursor(*_order_key(last)))
        return None

    def page(self) -> Page:
        return Page(self.out, False, None)


class RecordingStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    # ---- lookup --------------------------------------------------------------------------

    def locate(self, call_id: str) -> Path:
        """The call's directory, finalized or not. Never a path outside the root."""
        if not valid_call_id(call_id):
            raise InvalidCallId(f"invalid recording id {call_id[:120]!r}")
        root = self.root.resolve()
        for day, _ in iter_day_dirs(self.root):
            d = day / call_id
            if d.is_dir() and not d.is_symlink() and d.resolve().is_relative_to(root):
                return d
        raise RecordingNotFound(call_id)

    def resolve(self, call_id: str) -> Path:
        """The directory of a finalized call."""
        d = self.locate(call_id)
        if not (d / METADATA).is_file():
            raise RecordingInProgress(call_id)
        return d

    def file(self, call_id: str, name: str) -> Path:
        """One of the recorded files, checked to be a regular file inside the root."""
        if name not in RECORDED_FILES:
            raise RecordingNotFound(f"{call_id}/{name}")
        p = self.resolve(call_id) / name
        if p.is_symlink() or not p.is_file() or not p.resolve().is_relative_to(self.root.resolve()):
            raise RecordingNotFound(f"{call_id}/{name}")
        return p

    def get(self, call_id: str) -> dict[str, Any]:
        meta = _load(self.resolve(call_id) / METADATA)
        if meta is None:
            raise RecordingNotFound(call_id)
        return meta

    def transcript(self, call_id: str) -> list[dict[str, Any]]:
        lines: list[dict[str, Any]] = []
        with self.file(call_id, TRANSCRIPT).open(encoding="utf-8") as f:
            for line in f:
                if line.strip():
                    lines.append(json.loads(line))
        return lines

    # ---- listing -------------------------------------------------------------------------

    def list_recordings(self, *, start: float | None = None, end: float | None = None,
             caller: str | None = None, agent: str | None = None, limit: int = 100,
             cursor: str | None = None) -> Page:
        """Finalized calls started in ``[start, end)``, newest first, ``limit`` a page.

        ``cursor`` is the ``next_cursor`` of the previous page (opaque to clients).
        """
        pages = PageBuilder(start=start, end=end, caller=caller, agent=agent, limit=limit,
                            cursor=cursor)
        for day, date in iter_day_dirs(self.root, newest_first=True):
            verdict = pages.day(date)
            if verdict == "stop":
                break
            if verdict == "read":
                full = pages.add([m for m in (_load(c / METADATA) for c in iter_call_dirs(day))
                                  if m])
                if full is not None:
                    return full
        return pages.page()

    # ---- integrity -----------------------------------------------------------------------

    def verify(self, call_id: str) -> list[str]:
        """Every difference between the files and their recorded sha256/size; [] when intact."""
        return verify_dir(self.resolve(call_id))

    def verify_all(self) -> dict[str, list[str]]:
        """``{call_id: problems}`` for every finalized call (empty lists when intact)."""
        result: dict[str, list[str]] = {}
        for day, _ in iter_day_dirs(self.root):
            for d in sorted(iter_call_dirs(day)):
                if (d / METADATA).exists():
                    result[d.name] = self.verify(d.name)
        return result

    def export(self, call_id: str, out_dir: Path, *, who: str) -> Path:
        """Copy the call's files to ``out_dir/<call_id>/``; returns that directory."""
        src = self.resolve(call_id)
        dst = out_dir / call_id
        dst.mkdir(parents=True, exist_ok=False)
        for name in (*RECORDED_FILES, METADATA):
            if (src / name).is_file():
                shutil.copy2(src / name, dst / name)
        _audit("export_recording", call_id, who, to=str(dst))
        return dst

    # ---- deletion ------------------------------------------------------------------------

    def delete(self, call_id: str, *, who: str, reason: str = "request") -> None:
        """Delete a finalized call; audit-logged. A live call cannot be deleted."""
        d = self.locate(call_id)
        if is_live(d):
            raise RecordingInProgress(call_id)
        meta = _load(d / METADATA) or {}
        # Renamed first (a dot name is never listed), so readers never see half a call.
        doomed = d.with_name(f".{call_id}.deleting")
        d.rename(doomed)
        shutil.rmtree(doomed)
        _prune_empty(d.parent, self.root)
        _audit("delete_recording", call_id, who, reason=reason,
               started_at=meta.get("started_at"), caller=meta.get("caller"))

    def purge(self, older_than_days: float, *, who: str = "retention",
              now: float | None = None) -> list[str]:
        """Delete finalized calls that started more than ``older_than_days`` ago."""
        if older_than_days < 0:
            raise ValueError("older_than_days must be >= 0")
        cutoff = (time.time() if now is None else now) - older_than_days * DAY_S
        deleted: list[str] = []
        for day, date in list(iter_day_dirs(self.root, newest_first=False)):
            if day_start(date) >= cutoff:
                break
            for d in list(iter_call_dirs(day)):
                meta = _load(d / METADATA)
                if meta is None or _order_key(meta)[0] >= cutoff:
                    continue  # in progress, awaiting recovery, or not yet expired
                try:
                    self.delete(d.name, who=who, reason=f"retention {older_than_days:g} days")
                except (RecordingInProgress, RecordingNotFound, OSError) as exc:
                    log.warning("purge: could not delete %s: %s", d.name, exc)
                    continue
                deleted.append(d.name)
        audit.info("audit action=purge_recordings who=%s when=%s older_than_days=%g "
                   "deleted=%d ids=%s", who, iso_utc(time.time()), older_than_days,
                   len(deleted), ",".join(deleted) or "-",
                   extra={"audit": {"action": "purge_recordings", "who": who,
                                    "older_than_days": older_than_days, "deleted": deleted}})
        return deleted


def verify_dir(d: Path) -> list[str]:
    """``verify`` for any directory holding a call's files (an export, say)."""
    call_id = d.name
    meta = _load(d / METADATA)
    if meta is None or not isinstance(meta.get("files"), dict):
        return [f"{call_id}: metadata.json unreadable or without checksums"]
    problems: list[str] = []
    files: dict[str, Any] = meta["files"]
    for name, want in sorted(files.items()):
        p = d / name
        if name not in RECORDED_FILES or not p.is_file() or p.is_symlink():
            problems.append(f"{call_id}/{name}: missing")
            continue
        digest, size = sha256_file(p)
        if size != want.get("size"):
            problems.append(f"{call_id}/{name}: size {size} != recorded {want.get('size')}")
        if digest != want.get("sha256"):
            problems.append(f"{call_id}/{name}: sha256 {digest} != recorded "
                            f"{want.get('sha256')}")
    for name in RECORDED_FILES:
        if name not in files and (d / name).exists():
            problems.append(f"{call_id}/{name}: present but not in metadata")
    return problems


def _audit(action: str, call_id: str, who: str, **details: Any) -> None:
    when = iso_utc(time.time())
    tail = " ".join(f"{k}={v}" for k, v in details.items())
    audit.info("audit action=%s call_id=%s who=%s when=%s %s", action, call_id, who, when, tail,
               extra={"audit": {"action": action, "call_id": call_id, "who": who,
                                "when": when, **details}})


def _order_key(meta: dict[str, Any]) -> tuple[float, str]:
    t = meta.get("started_at_unix")
    return (float(t) if isinstance(t, int | float) else 0.0, str(meta.get("call_id", "")))


def _caller_forms(caller: str | None) -> set[str] | None:
    """A ``+`` left unencoded in a query string arrives as a space: accept both."""
    if caller is None:
        return None
    c = caller.strip()
    return {c, "+" + c} if caller.startswith(" ") else {c}


def _load(path: Path) -> dict[str, Any] | None:
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        log.warning("unreadable %s: %s", path, exc)
        return None
    return obj if isinstance(obj, dict) else None


def _prune_empty(day: Path, root: Path) -> None:
    """Remove the day, month and year directories a deletion left empty."""
    p = day
    for _ in range(3):
        if p == root:
            return
        try:
            p.rmdir()
        except OSError:
            return
        p = p.parent
