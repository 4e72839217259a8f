"""What a sideband attachment (``GET /v1/realtime?call_id=…``, issue 18) costs a live call.

One gateway process (``python -m gateway serve``), the echo upstream (``bench/echo_upstream.py``:
the caller's audio comes back as agent audio, so the call has a steady stream of server events
to fan out) and one full-duplex aiortc caller (``bench/clients.py``), each its own process.
This driver attaches 0 or N sideband WebSockets to that call (API key, as a server program
would) and reads every event they get; windows alternate 0, N, N, 0, ... in one run so drift
shows as a difference between directions. Per window, between two snapshots:

- gateway CPU: utime+stime of all its threads, and of its main thread (the event loop), cores;
- what the sidebands received: events a second each (all of them must be receiving);
- the call: frames the caller received (outbound %), against 50 a second.

Per attachment = (median cores at N - median at 0) / N. Before measuring, the bench checks
the attachments joined the call (the gateway still has exactly one call): a gateway without
the sideband route would open a new session per connection, and that is not what is measured.

    python -m bench.sideband --listeners 10 --seconds 12 --repeat 3
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import websockets

from bench.calls import (
    API_KEY,
    RESULTS,
    ROOT,
    ClientProc,
    free_port,
    machine_cpu,
    machine_info,
    main_thread_cpu_s,
    proc_cpu_s,
    server_command,
    stop,
    wait_http,
)
from bench.listeners import ADMIN, admin_get


class Sidebands:
    """N sideband connections to one call, each counting the events it reads."""

    def __init__(self, ws_base: str, call_id: str) -> None:
        self.url = f"{ws_base}/v1/realtime?call_id={call_id}"
        self.counts: list[int] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._conns: list[Any] = []

    async def attach(self, n: int) -> None:
        for _ in range(n):
            ws = await websockets.connect(self.url, max_size=None, additional_headers={
                "Authorization": f"Bearer {API_KEY}"})
            self._conns.append(ws)
            self.counts.append(0)
            self._tasks.append(asyncio.ensure_future(self._read(ws, len(self.counts) - 1)))

    async def _read(self, ws: Any, i: int) -> None:
        with contextlib.suppress(websockets.ConnectionClosed):
            async for _ in ws:
                self.counts[i] += 1

    async def detach(self) -> None:
        for ws in self._conns:
            with contextlib.suppress(Exception):
                await ws.close()
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._conns, self._tasks, self.counts = [], [], []


def _snapshot(srv: subprocess.Popen[bytes], caller: ClientProc, sb: Sidebands
              ) -> dict[str, Any]:
    caller.send("mark")
    s = {"t": time.monotonic(), "cpu": proc_cpu_s(srv.pid), "main": main_thread_cpu_s(srv.pid),
         "machine": machine_cpu(), "sideband_events": list(sb.counts)}
    s["caller"] = caller.expect("mark", 20)
    return s


def _window(n: int, a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    wall = b["t"] - a["t"]
    ca, cb = a["caller"], b["caller"]
    per = [(y - x) / wall for x, y in zip(a["sideband_events"], b["sideband_events"],
                                          strict=True)]
    return {"sidebands": n, "window_s": round(wall, 2),
            "cores": (b["cpu"] - a["cpu"]) / wall,
            "main_thread_cores": (b["main"] - a["main"]) / wall,
            "machine_busy_cores": (b["machine"][0] - a["machine"][0]) / wall,
            "caller_outbound_pct": 100 * (cb["received"] - ca["received"])
            / (50 * (cb["t"] - ca["t"])),
            "sideband_events_per_s_min": min(per) if per else None,
            "sideband_events_per_s_max": max(per) if per else None}


async def _drive(args: argparse.Namespace, srv: subprocess.Popen[bytes], caller: ClientProc,
                 base: str, call_id: str) -> list[dict[str, Any]]:
    sb = Sidebands(base.replace("http", "ws"), call_id)
    runs: list[dict[str, Any]] = []
    try:
        await sb.attach(args.listeners)
        await asyncio.sleep(1.0)
        calls = admin_get(base + "/admin/calls")["data"]
        if len(calls) != 1 or not all(sb.counts):
            raise SystemExit(f"the sidebands did not attach to the call ({len(calls)} calls, "
                             f"events {sb.counts}): is GET /v1/realtime?call_id= served?")
        await sb.detach()
        levels = [0, args.listeners]
        for rep in range(args.repeat):
            for n in (levels if rep % 2 == 0 else levels[::-1]):
                await sb.detach()
                await sb.attach(n)
                await asyncio.sleep(args.settle)
                a = await asyncio.to_thread(_snapshot, srv, caller, sb)
                await asyncio.sleep(args.seconds)
                b = await asyncio.to_thread(_snapshot, srv, caller, sb)
                w = _window(n, a, b) | {"repeat": rep}
                runs.append(w)
                print(f"rep {rep} sidebands {n:2d}: {w['cores']:.4f} cores (main "
                      f"{w['main_thread_cores']:.4f}), caller out "
                      f"{w['caller_outbound_pct']:.1f} %, events/s per sideband "
                      f"{w['sideband_events_per_s_min']}", file=sys.stderr)
    finally:
        await sb.detach()
    return runs


def run(args: argparse.Namespace) -> dict[str, Any]:
    logdir = Path(tempfile.mkdtemp(prefix="bench-sideband-"))
    started: list[subprocess.Popen[Any]] = []
    caller: ClientProc | None = None
    with open(logdir / "bench.log", "wb") as log:
        try:
            up_port, port = free_port(), free_port()
            env = dict(os.environ, PYTHONPATH=str(ROOT))
            echo = subprocess.Popen([sys.executable, "-m", "bench.echo_upstream", "--port",
                                     str(up_port)], cwd=ROOT, env=env, stdout=log, stderr=log)
            started.append(echo)
            cmd, srv_env, ready = server_command(
                "gateway", port, f"ws://127.0.0.1:{up_port}/v1/realtime",
                {"GATEWAY_ADMIN_TOKEN": ADMIN})
            srv = subprocess.Popen(cmd, cwd=logdir, env=srv_env, stdout=log, stderr=log)
            started.append(srv)
            base = f"http://127.0.0.1:{port}"
            wait_http(f"http://127.0.0.1:{up_port}/stats", echo, 30)
            wait_http(base + ready, srv, 60)
            caller = ClientProc(base, 1, log, env)
            caller.expect("ready", 60)
            call_id = admin_get(base + "/admin/calls")["data"][0]["call_id"]
            runs = asyncio.run(_drive(args, srv, caller, base, call_id))
        finally:
            if caller is not None:
                caller.close()
            for p in reversed(started):
                stop(p)
    by = {n: [r["cores"] for r in runs if r["sidebands"] == n] for n in (0, args.listeners)}
    med = {n: statistics.median(v) for n, v in by.items()}
    return {"runs": runs, "logdir": str(logdir), "median_cores": med,
            "cores_per_sideband": (med[args.listeners] - med[0]) / args.listeners}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.sideband", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--listeners", type=int, default=10)
    p.add_argument("--seconds", type=float, default=12.0)
    p.add_argument("--settle", type=float, default=2.0)
    p.add_argument("--repeat", type=int, default=4)
    p.add_argument("--out", type=Path, default=RESULTS / "sideband.json")
    args = p.parse_args(argv)
    res = run(args)
    doc = {"benchmark": "sideband",
           "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
           "machine": machine_info(),
           "settings": {"listeners": args.listeners, "seconds": args.seconds,
                        "settle": args.settle, "repeat": args.repeat}, **res}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"median cores {res['median_cores']}; per sideband "
          f"{res['cores_per_sideband']:.5f} cores; wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
