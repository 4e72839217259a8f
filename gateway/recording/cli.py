"""``python -m gateway recordings list|show|export|verify|purge|recover [--root DIR] ...``

Settings are the gateway's (``--config`` TOML, default ``$GATEWAY_CONFIG``, then the
``GATEWAY_*`` environment). When ``[recording] s3_bucket`` is set, ``list``, ``show``,
``export`` and ``verify`` also read the bucket (credentials from the environment variables
the config names, never printed): ``list`` merges local and uploaded calls, ``show`` and
``export`` fall back to S3 when the local copy is gone, ``verify`` reads every object of a
call in full and checks its sha256 and size against ``metadata.json`` (both copies when a
call is in both places). ``--local-only`` ignores the bucket; ``purge`` and ``recover`` act
on the local directory only.

Exit status: 0 fine, 1 ``verify`` found a mismatch, 2 usage or settings, 3 unknown or
unfinished call, 4 object storage unreachable or refusing.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import logging
import os
import socket
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TextIO

from botocore.exceptions import BotoCoreError, ClientError  # type: ignore[import-untyped]

from gateway import config as config_mod

from .layout import parse_time
from .recover import recover
from .s3_list import S3Listing, list_merged
from .s3_read import S3Reader
from .store import (
    MAX_LIMIT,
    InvalidCallId,
    RecordingInProgress,
    RecordingNotFound,
    RecordingStore,
    _audit,
    verify_dir,
)

_S3_COMMANDS = ("list", "show", "export", "verify")


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--root", type=Path, default=None,
                        help="recordings root (default: [recording] dir, i.e. "
                             "$GATEWAY_RECORDINGS_DIR or ./recordings)")
    common.add_argument("--config", default=os.environ.get("GATEWAY_CONFIG"),
                        help="the gateway's TOML settings (default $GATEWAY_CONFIG)")
    common.add_argument("--local-only", action="store_true",
                        help="ignore S3 storage even when it is configured")
    p = argparse.ArgumentParser(prog="python -m gateway recordings",
                                description="Compliance recordings: list, export, verify, purge.")
    sub = p.add_subparsers(dest="command", required=True)

    ls = sub.add_parser("list", parents=[common], help="finalized calls, newest first")
    ls.add_argument("--from", dest="start", help="ISO 8601 or unix seconds (inclusive)")
    ls.add_argument("--to", dest="end", help="ISO 8601 or unix seconds (exclusive)")
    ls.add_argument("--caller")
    ls.add_argument("--agent")
    ls.add_argument("--limit", type=int, default=100)
    ls.add_argument("--cursor", help="next_cursor printed by the previous page")
    ls.add_argument("--json", action="store_true", help="one metadata object a line")

    show = sub.add_parser("show", parents=[common], help="print a call's metadata.json")
    show.add_argument("id")

    ex = sub.add_parser("export", parents=[common], help="copy a call's files to OUT/<id>/")
    ex.add_argument("id")
    ex.add_argument("--out", type=Path, required=True)

    ve = sub.add_parser("verify", parents=[common],
                        help="recompute checksums of one call (or all); exit 1 on mismatch")
    ve.add_argument("id", nargs="?")

    pu = sub.add_parser("purge", parents=[common], help="delete calls older than N days")
    pu.add_argument("--older-than-days", type=float, required=True)

    sub.add_parser("recover", parents=[common], help="repair calls cut off by a crash")
    return p


def _settings(path: str | None, env: Mapping[str, str]) -> config_mod.RecordingConfig:
    quiet = logging.getLogger("gateway.config")  # no token-secret warning in a CLI
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        return config_mod.load(path or None, env).recording
    finally:
        quiet.setLevel(level)


def _storage_error(exc: Exception) -> str:
    """What went wrong with the bucket, without anything a credential could be in."""
    if isinstance(exc, ClientError):
        err = exc.response.get("Error", {})
        return f"{exc.operation_name}: {err.get('Code', '?')}"
    return type(exc).__name__


def main(argv: list[str], *, out: TextIO | None = None,
         env: Mapping[str, str] | None = None) -> int:
    out = out or sys.stdout
    env = os.environ if env is None else env
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 2
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    try:
        cfg = _settings(args.config, env)
    except (ValueError, OSError) as exc:
        print(f"error: settings: {exc}", file=sys.stderr)
        return 2
    store = RecordingStore(args.root if args.root is not None else Path(cfg.dir))
    s3 = None
    if cfg.s3_bucket and not args.local_only and args.command in _S3_COMMANDS:
        s3 = S3Reader(cfg, env=env)
    try:
        return asyncio.run(_run(args, store, s3, out))
    except (InvalidCallId, RecordingNotFound, RecordingInProgress) as exc:
        kind = {InvalidCallId: "invalid id", RecordingNotFound: "not found",
                RecordingInProgress: "not finalized"}[type(exc)]
        print(f"error: {kind}: {exc}", file=sys.stderr)
        return 3
    except (BotoCoreError, ClientError) as exc:
        print(f"error: object storage (bucket {cfg.s3_bucket}): {_storage_error(exc)}",
              file=sys.stderr)
        return 4
    except (ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


async def _run(args: argparse.Namespace, store: RecordingStore, s3: S3Reader | None,
               out: TextIO) -> int:
    if s3 is None:
        return await _command(args, store, None, out)
    async with s3:
        return await _command(args, store, s3, out)


async def _command(args: argparse.Namespace, store: RecordingStore, s3: S3Reader | None,
                   out: TextIO) -> int:
    who = f"cli:{getpass.getuser()}@{socket.gethostname()}"
    if args.command == "list":
        page = await list_merged(
            store, S3Listing(s3) if s3 is not None else None,
            start=parse_time(args.start) if args.start else None,
            end=parse_time(args.end) if args.end else None,
            caller=args.caller, agent=args.agent, limit=args.limit, cursor=args.cursor)
        for m in page.data:
            print(json.dumps(m, sort_keys=True) if args.json else _row(m), file=out)
        if page.next_cursor:
            print(f"# more: --cursor {page.next_cursor}", file=out)
        return 0
    if args.command == "show":
        try:
            meta = store.get(args.id)
        except RecordingNotFound:
            found = await s3.fetch_metadata(args.id) if s3 is not None else None
            if found is None:
                raise
            meta = found
        print(json.dumps(meta, indent=2, sort_keys=True), file=out)
        return 0
    if args.command == "export":
        return await _export(args, store, s3, who, out)
    if args.command == "verify":
        return await _verify(args, store, s3, out)
    if args.command == "purge":
        deleted = store.purge(args.older_than_days, who=who)
        for call_id in deleted:
            print(f"deleted {call_id}", file=out)
        print(f"purged {len(deleted)} call(s)", file=out)
        return 0
    repaired = recover(store.root)
    for call_id in repaired:
        print(f"recovered {call_id}", file=out)
    print(f"recovered {len(repaired)} call(s)", file=out)
    return 0


async def _export(args: argparse.Namespace, store: RecordingStore, s3: S3Reader | None,
                  who: str, out: TextIO) -> int:
    try:
        dst = store.export(args.id, args.out, who=who)
    except RecordingNotFound:
        got = await s3.download(args.id, args.out) if s3 is not None else None
        if s3 is None or got is None:
            raise
        dst, problems = got
        _audit("export_recording", args.id, who, to=str(dst), source=f"s3://{s3.bucket}")
    else:
        problems = []
    problems = problems or verify_dir(dst)  # the copy as written
    for line in problems:
        print(f"MISMATCH {line}", file=out)
    print(f"exported {args.id} -> {dst}", file=out)
    return 1 if problems else 0


async def _verify(args: argparse.Namespace, store: RecordingStore, s3: S3Reader | None,
                  out: TextIO) -> int:
    results: dict[str, list[str]] = {}
    if args.id:
        try:
            results[args.id] = store.verify(args.id)
        except RecordingNotFound:
            if s3 is None:
                raise
        ids = [args.id]
    else:
        results = store.verify_all()
        ids = await _all_s3_ids(s3) if s3 is not None else []
    if s3 is not None:
        for call_id in ids:
            problems = await s3.verify(call_id)
            if problems is not None:
                results.setdefault(call_id, []).extend(f"(s3) {p}" for p in problems)
    if args.id and args.id not in results:
        raise RecordingNotFound(args.id)
    bad = 0
    for problems in results.values():
        for line in problems:
            print(f"MISMATCH {line}", file=out)
        bad += bool(problems)
    print(f"verified {len(results)} call(s): {len(results) - bad} intact, {bad} altered",
          file=out)
    return 1 if bad else 0


async def _all_s3_ids(s3: S3Reader) -> list[str]:
    listing = S3Listing(s3)
    ids: list[str] = []
    cursor = None
    while True:
        page = await listing.list_recordings(limit=MAX_LIMIT, cursor=cursor)
        ids += [str(m.get("call_id")) for m in page.data]
        if not page.has_more:
            return ids
        cursor = page.next_cursor


def _row(m: dict[str, Any]) -> str:
    return (f"{m.get('started_at', '?'):<25} {m.get('call_id', '?'):<40} "
            f"{m.get('duration_s', 0):>9.1f}s {m.get('caller') or '-':<16} "
            f"{m.get('agent') or '-':<12} {m.get('end_reason', '-')}")
