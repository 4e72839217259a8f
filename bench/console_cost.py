"""What watching calls in the operator console costs the gateway: CPU per call, same run.

    python -m bench.console_cost --calls 5 --seconds 15 --repeats 3 --watchers 1,5

One gateway process (console enabled), the echo upstream and ``--calls`` WebRTC callers
(``bench/clients.py``), as ``bench/calls.py`` starts them. Once the calls are up, windows of
``--seconds`` alternate between *unwatched* (no console page open) and *watched* by W pages
(each a signed-in session streaming ``/console/api/feed``, read in this driver process, so
their own cost is not the server's), interleaved (unwatched, watched W1, watched W2, ...;
next repeat in reverse) so every variant sees the same machine. Server CPU is utime+stime of
all its threads from ``/proc``; per call = cores / calls. Reported: medians over repeats and
the watched/unwatched ratio within each repeat (median).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import aiohttp

from bench.calls import (
    API_KEY,
    ROOT,
    ClientProc,
    free_port,
    http_get,
    proc_cpu_s,
    samples,
    stop,
    wait_http,
)

ADMIN = "bench-admin-token"


class Watchers:
    """W console pages' worth of SSE streams, read on a thread of this process."""

    def __init__(self, base: str, n: int) -> None:
        self.base = base
        self.n = n
        self.events = 0
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)
        self._thread.start()
        if not self._ready.wait(20):
            raise RuntimeError("console watchers did not connect")

    async def _one(self, ready: asyncio.Event) -> None:
        jar = aiohttp.CookieJar(unsafe=True)
        async with aiohttp.ClientSession(cookie_jar=jar) as http:
            async with http.post(f"{self.base}/console/api/session", json={"token": ADMIN},
                                 headers={"Origin": self.base}) as r:
                r.raise_for_status()
            async with http.get(f"{self.base}/console/api/feed") as r:
                r.raise_for_status()
                ready.set()
                async for _ in r.content:
                    self.events += 1
                    if self._stop.is_set():
                        return

    async def _run(self) -> None:
        readies = [asyncio.Event() for _ in range(self.n)]
        tasks = [asyncio.create_task(self._one(e)) for e in readies]
        await asyncio.gather(*(e.wait() for e in readies))
        self._ready.set()
        await asyncio.to_thread(self._stop.wait)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(10)


def _frame_totals(base: str) -> tuple[float, float]:
    text = http_get(base + "/metrics")
    name = "gateway_frame_processing_seconds"
    return (sum(samples(text, f"{name}_sum").values()),
            sum(samples(text, f"{name}_count").values()))


def window(pid: int, base: str, seconds: float) -> tuple[float, float]:
    """Server cores over one window, and the mean time the gateway spent on a 20 ms frame
    (us, its own histogram: a per-frame cost of watching would show here first)."""
    s0, n0 = _frame_totals(base)
    c0, t0 = proc_cpu_s(pid), time.monotonic()
    time.sleep(seconds)
    cores = (proc_cpu_s(pid) - c0) / (time.monotonic() - t0)
    s1, n1 = _frame_totals(base)
    return cores, (s1 - s0) / max(1.0, n1 - n0) * 1e6


def run(args: argparse.Namespace) -> dict[str, Any]:
    logdir = Path(tempfile.mkdtemp(prefix="bench-console-"))
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    up_port, port = free_port(), free_port()
    base = f"http://127.0.0.1:{port}"
    log = open(logdir / "run.log", "wb")  # noqa: SIM115 (closed in finally)
    started: list[Any] = []
    clients: ClientProc | None = None
    try:
        echo = subprocess.Popen(
            [sys.executable, "-m", "bench.echo_upstream", "--port", str(up_port)],
            cwd=ROOT, env=env, stdout=log, stderr=log)
        started.append(echo)
        srv_env = dict(env, GATEWAY_HOST="127.0.0.1", GATEWAY_PORT=str(port),
                       GATEWAY_API_KEYS=API_KEY, GATEWAY_TOKEN_SECRET="bench-secret",
                       GATEWAY_UPSTREAM_URL=f"ws://127.0.0.1:{up_port}/v1/realtime",
                       OPENAI_API_KEY="x", GATEWAY_CONSOLE_ENABLED="true",
                       GATEWAY_ADMIN_TOKEN=ADMIN)
        srv = subprocess.Popen([sys.executable, "-m", "gateway", "serve"],
                                             cwd=logdir, env=srv_env, stdout=log, stderr=log)
        started.append(srv)
        wait_http(f"http://127.0.0.1:{up_port}/stats", echo, 30)
        wait_http(base + "/healthz", srv, 60)
        clients = ClientProc(base, args.calls, log, env)
        clients.expect("ready", 30 + 3 * args.calls)
        time.sleep(args.settle)
        variants = [0, *args.watchers]
        rows: list[dict[str, float]] = []
        for rep in range(args.repeats):
            order = variants if rep % 2 == 0 else list(reversed(variants))
            row: dict[str, float] = {}
            for w in order:
                watchers = Watchers(base, w) if w else None
                try:
                    time.sleep(1.0 if w else 0.0)  # let the sampler start
                    cores, frame_us = window(srv.pid, base, args.seconds)
                    row[str(w)] = cores / args.calls
                    row[f"frame_us_{w}"] = frame_us
                finally:
                    if watchers is not None:
                        watchers.close()
                        row[f"events_{w}"] = watchers.events
            rows.append(row)
            print(json.dumps({"repeat": rep, **row}), flush=True)
        summary: dict[str, Any] = {"calls": args.calls, "seconds": args.seconds,
                                   "repeats": args.repeats, "rows": rows,
                                   "load_after": os.getloadavg()}
        summary["unwatched_cores_per_call"] = statistics.median(r["0"] for r in rows)
        summary["unwatched_frame_us"] = statistics.median(r["frame_us_0"] for r in rows)
        for w in args.watchers:
            summary[f"watched_{w}_cores_per_call"] = statistics.median(r[str(w)] for r in rows)
            summary[f"ratio_{w}"] = statistics.median(r[str(w)] / r["0"] for r in rows)
            summary[f"watched_{w}_frame_us"] = statistics.median(r[f"frame_us_{w}"]
                                                                 for r in rows)
        return summary
    finally:
        if clients is not None:
            clients.close()
        for p in reversed(started):
            with contextlib.suppress(Exception):
                stop(p)
        log.close()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.console_cost")
    p.add_argument("--calls", type=int, default=5)
    p.add_argument("--seconds", type=float, default=15.0)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--settle", type=float, default=3.0)
    p.add_argument("--watchers", type=lambda s: [int(x) for x in s.split(",")], default=[1, 5])
    args = p.parse_args(argv)
    result = run(args)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
