"""Command line: ``python -m gateway serve|localrt|recordings``."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import subprocess
import sys
import threading
from collections.abc import Coroutine
from typing import IO, Any

from gateway.obs.logs import setup_logging

from . import config as config_mod


def _serve(args: argparse.Namespace) -> int:
    from .app import make_app
    from .lifecycle import serve

    setup_logging(json_lines=os.environ.get("GATEWAY_SERVER_LOG_JSON", "") in ("1", "true"))
    log = logging.getLogger("gateway")
    env = dict(os.environ)
    engine: subprocess.Popen[str] | None = None
    if args.with_local_engine_if_no_key and not env.get("OPENAI_API_KEY"):
        engine, url = _start_local_engine(args.local_engine_port)
        env["GATEWAY_UPSTREAM_URL"] = url
        log.info("no OPENAI_API_KEY: using the embedded local engine at %s", url)
    try:
        cfg = config_mod.load(args.config, env)
        if args.workers > 1:
            from gateway.cluster.workers import run as run_workers

            passthrough = ["--config", args.config] if args.config else []
            return run_workers(cfg, args.workers, passthrough, env)
        app = make_app(cfg)
        log.info("demo page %s", f"on at http://{cfg.server.host}:{cfg.server.port}/"
                 if cfg.server.demo_enabled else "off")
        return run_loop(serve(app, cfg), cfg.server.event_loop)
    finally:
        if engine is not None:
            engine.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                engine.wait(5)


def run_loop(main: Coroutine[Any, Any, int], kind: str) -> int:
    """Run ``main`` on the configured event loop implementation."""
    if kind == "uvloop":
        import uvloop

        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            return runner.run(main)
    return asyncio.run(main)


def _start_local_engine(port: int) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway", "localrt", "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.PIPE, text=True)
    out: IO[str] | None = proc.stdout
    assert out is not None
    for line in out:
        sys.stdout.write(line)
        if "listening on" in line:
            break
    else:
        raise SystemExit("the local engine failed to start")

    def relay() -> None:  # keep its pipe drained, or the engine blocks on a full pipe
        for line in out:
            sys.stdout.write(line)

    threading.Thread(target=relay, name="localrt-log", daemon=True).start()
    return proc, f"ws://127.0.0.1:{port}/v1/realtime"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="python -m gateway")
    sub = parser.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve", help="run the gateway")
    s.add_argument("--config", default=os.environ.get("GATEWAY_CONFIG"))
    s.add_argument("--with-local-engine-if-no-key", action="store_true",
                   help="start the embedded local engine as upstream when OPENAI_API_KEY is unset")
    s.add_argument("--local-engine-port", type=int, default=8090)
    s.add_argument("--workers", type=int, default=1,
                   help="run N gateway processes behind the same port (one per core)")
    sub.add_parser("localrt", help="run the embedded offline Realtime engine", add_help=False)
    sub.add_parser("recordings", help="list, export, verify or purge recordings",
                   add_help=False)
    args, rest = parser.parse_known_args(argv)
    if args.cmd == "localrt":
        from .localrt.server import main as localrt_main

        return int(localrt_main(rest))
    if args.cmd == "recordings":
        from .recording.cli import main as rec_main

        return int(rec_main(rest))
    if rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    return _serve(args)


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        raise SystemExit(main())

