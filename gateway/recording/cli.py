"""``python -m gateway recordings list|show|export|verify|purge|recover [--root DIR] ...``

Exit status: 0 fine, 1 ``verify`` found a mismatch, 2 usage, 3 unknown or unfinished call.
"""

from __future__ import annotations

import argparse
import getpass
import json
import logging
import os
import socket
import sys
from pathlib import Path
from typing import Any, TextIO

from .layout import parse_time
from .recover import recover
from .store import (
    InvalidCallId,
    RecordingInProgress,
    RecordingNotFound,
    RecordingStore,
    verify_dir,
)


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--root", type=Path,
                        default=Path(os.environ.get("GATEWAY_RECORDINGS_DIR", "recordings")),
                        help="recordings root (default $GATEWAY_RECORDINGS_DIR or ./recordings)")
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


def main(argv: list[str], *, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 2
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    store = RecordingStore(args.root)
    try:
        return _run(args, store, out)
    except (InvalidCallId, RecordingNotFound, RecordingInProgress) as exc:
        kind = {InvalidCallId: "invalid id", RecordingNotFound: "not found",
                RecordingInProgress: "not finalized"}[type(exc)]
        print(f"error: {kind}: {exc}", file=sys.stderr)
        return 3
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace, store: RecordingStore, out: TextIO) -> int:
    who = f"cli:{getpass.getuser()}@{socket.gethostname()}"
    if args.command == "list":
        page = store.list_recordings(
            start=parse_time(args.start) if args.start else None,
            end=parse_time(args.end) if args.end else None,
            caller=args.caller, agent=args.agent, limit=args.limit, cursor=args.cursor)
        for m in page.data:
            print(json.dumps(m, sort_keys=True) if args.json else _row(m), file=out)
        if page.next_cursor:
            print(f"# more: --cursor {page.next_cursor}", file=out)
        return 0
    if args.command == "show":
        print(json.dumps(store.get(args.id), indent=2, sort_keys=True), file=out)
        return 0
    if args.command == "export":
        dst = store.export(args.id, args.out, who=who)
        problems = verify_dir(dst)
        for line in problems:
            print(f"MISMATCH {line}", file=out)
        print(f"exported {args.id} -> {dst}", file=out)
        return 1 if problems else 0
    if args.command == "verify":
        results = {args.id: store.verify(args.id)} if args.id else store.verify_all()
        bad = 0
        for problems in results.values():
            for line in problems:
                print(f"MISMATCH {line}", file=out)
            bad += bool(problems)
        print(f"verified {len(results)} call(s): {len(results) - bad} intact, {bad} altered",
              file=out)
        return 1 if bad else 0
    if args.command == "purge":
        deleted = store.purge(args.older_than_days, who=who)
        for call_id in deleted:
            print(f"deleted {call_id}", file=out)
        print(f"purged {len(deleted)} call(s)", file=out)
        return 0
    repaired = recover(args.root)
    for call_id in repaired:
        print(f"recovered {call_id}", file=out)
    print(f"recovered {len(repaired)} call(s)", file=out)
    return 0


def _row(m: dict[str, Any]) -> str:
    return (f"{m.get('started_at', '?'):<25} {m.get('call_id', '?'):<40} "
            f"{m.get('duration_s', 0):>9.1f}s {m.get('caller') or '-':<16} "
            f"{m.get('agent') or '-':<12} {m.get('end_reason', '-')}")
