"""Listeners benchmark: what each supervisor listening to a call costs the gateway process.

    python -m bench.listeners                          # levels 0,1,5,10; results/listeners.json
    python -m bench.listeners --quick                  # CI guard: exits 1 over --max-per-listener

One gateway (``python -m gateway serve``), the echo upstream (``bench/echo_upstream.py``: the
caller's audio comes back as agent audio, so both sides of the listen mix always sound), one
full-duplex aiortc caller (``bench/clients.py``) and a process of aiortc listeners (this file,
``--role listeners``: recvonly peers posting to ``/admin/calls/{id}/listen``), each in its own
process. The listener count is stepped through the levels in one call, forwards then backwards
on alternate repeats (0,1,5,10,10,5,1,0...) so drift shows up as a difference between the two
directions; each window measures, between two snapshots:

- gateway CPU: utime+stime of every thread and of the main thread (the event loop), cores;
- the call: frames the caller received (outbound %) and RTP it lost, in the same window;
- the listeners: RTP packets and decoded frames they received, against 50 a second each;
- the gateway's own mix counters (``GET /admin/calls/{id}/listeners``): encodes per layout,
  packets dropped, and the latency the listen path adds (caller frame arrival / agent frame
  play time -> packet handed to the listener's sender, plus that sender's queue wait).

Per extra listener = (median cores at the top level - median at 1) / (top - 1): forwarding
only. The step from 0 to 1 is the mixer and its one encoder.
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
import threading
import time
import urllib.request
from pathlib import Path
from typing import IO, Any

from bench.calls import (
    RESULTS,
    ROOT,
    ClientProc,
    bucket_quantile,
    diff_buckets,
    free_port,
    histograms,
    http_get,
    machine_cpu,
    machine_info,
    main_thread_cpu_s,
    proc_cpu_s,
    server_command,
    stop,
    top_bucket,
    wait_http,
    wait_quiet,
)

ADMIN = "bench-admin-token"


def admin_get(url: str) -> Any:
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {ADMIN}"})
    with urllib.request.urlopen(req, timeout=5) as r:  # noqa: S310 (local URL)
        return json.loads(r.read().decode())


# -- the listeners process ------------------------------------------------------------------


async def listeners_main(args: argparse.Namespace) -> int:
    import aiohttp
    from aiortc import (
        MediaStreamTrack,
        RTCConfiguration,
        RTCPeerConnection,
        RTCSessionDescription,
    )
    from aiortc.mediastreams import MediaStreamError

    class Peer:
        def __init__(self) -> None:
            self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
            self.pc.addTransceiver("audio", direction="recvonly")
            self.frames = 0
            self.first = asyncio.Event()
            self.location = ""
            self.tasks: list[asyncio.Task[None]] = []
            self.pc.on("track", self._on_track)

        def _on_track(self, track: MediaStreamTrack) -> None:
            self.tasks.append(asyncio.create_task(self._pump(track)))

        async def _pump(self, track: MediaStreamTrack) -> None:
            with contextlib.suppress(MediaStreamError):
                while True:
                    await track.recv()
                    self.frames += 1
                    self.first.set()

        async def rtp(self) -> tuple[int, int]:
            got = lost = 0
            with contextlib.suppress(Exception):
                for s in (await self.pc.getStats()).values():
                    if s.type == "inbound-rtp":
                        got += int(s.packetsReceived)
                        lost += int(s.packetsLost)
            return got, lost

        async def close(self) -> None:
            await self.pc.close()
            for t in self.tasks:
                t.cancel()
            await asyncio.gather(*self.tasks, return_exceptions=True)

    def emit(obj: dict[str, Any]) -> None:
        sys.stdout.write(json.dumps(obj) + "\n")
        sys.stdout.flush()

    peers: list[Peer] = []
    auth = {"Authorization": f"Bearer {args.admin}"}
    url = f"{args.base}/admin/calls/{args.call_id}/listen"
    # Peers that left: their counters still count in the cumulative totals.
    gone_frames = gone_rtp = gone_lost = 0
    async with aiohttp.ClientSession() as http:

        async def join() -> Peer:
            p = Peer()
            await p.pc.setLocalDescription(await p.pc.createOffer())
            async with http.post(url, data=p.pc.localDescription.sdp,
                                 headers={**auth, "Content-Type": "application/sdp"}) as r:
                body = await r.text()
                if r.status != 201:
                    await p.close()
                    raise RuntimeError(f"listen: {r.status} {body[:300]}")
                p.location = r.headers["Location"]
            await p.pc.setRemoteDescription(RTCSessionDescription(sdp=body, type="answer"))
            async with asyncio.timeout(15):
                await p.first.wait()
            return p

        loop = asyncio.get_running_loop()
        while True:
            line = (await loop.run_in_executor(None, sys.stdin.readline)).strip()
            if line.startswith("set "):
                n = int(line.split()[1])
                t0 = time.monotonic()
                while len(peers) > n:
                    p = peers.pop()
                    got, lost = await p.rtp()
                    gone_frames, gone_rtp, gone_lost = (gone_frames + p.frames,
                                                        gone_rtp + got, gone_lost + lost)
                    async with http.delete(args.base + p.location, headers=auth) as r:
                        await r.read()
                    await p.close()
                if len(peers) < n:
                    peers += await asyncio.gather(*(join() for _ in range(n - len(peers))))
                emit({"event": "set", "n": len(peers), "s": time.monotonic() - t0})
            elif line == "mark":
                stats = [await p.rtp() for p in peers]
                emit({"event": "mark", "t": time.monotonic(), "n": len(peers),
                      "frames": gone_frames + sum(p.frames for p in peers),
                      "rtp": gone_rtp + sum(g for g, _ in stats),
                      "lost": gone_lost + sum(lo for _, lo in stats),
                      "per_peer_frames": [p.frames for p in peers]})
            elif line in ("stop", ""):
                break
        await asyncio.gather(*(p.close() for p in peers), return_exceptions=True)
    emit({"event": "done"})
    return 0


class ListenerProc:
    def __init__(self, base: str, call_id: str, log: IO[bytes]) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.listeners", "--role", "listeners", "--base", base,
             "--call-id", call_id, "--admin", ADMIN],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, cwd=ROOT, text=True)
        self._lines: list[dict[str, Any]] = []
        self._cv = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with contextlib.suppress(ValueError), self._cv:
                self._lines.append(json.loads(line))
                self._cv.notify_all()
        with self._cv:
            self._lines.append({"event": "exit"})
            self._cv.notify_all()

    def ask(self, cmd: str, event: str, timeout: float = 60) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(cmd + "\n")
        self.proc.stdin.flush()
        with self._cv:
            if not self._cv.wait_for(lambda: bool(self._lines), timeout):
                raise RuntimeError(f"listeners: no answer to {cmd!r}")
            msg = self._lines.pop(0)
        if msg.get("event") != event:
            raise RuntimeError(f"listeners: expected {event!r}, got {msg}")
        return msg

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.ask("stop", "done", 30)
        stop(self.proc)


# -- the mixer alone ------------------------------------------------------------------------


def tick_cost(ticks: int = 1500) -> dict[str, float]:
    """CPU (thread time, so other processes on the machine do not count) of one mixer tick
    in this process: both sides sounding, per layout, and with both sides silent (the cached
    packet). No network: each packet goes to one listener's queue."""
    import numpy as np

    from gateway.call.session import SessionHooks
    from gateway.supervise.mix import ListenHub, OpusOut
    from gateway.supervise.peer import ListenerTrack

    t = np.arange(480 * ticks) / 24000
    caller = (4000 * np.sin(2 * np.pi * 440 * t)).astype(np.int16).tobytes()
    agent = (6000 * np.sin(2 * np.pi * 1000 * t)).astype(np.int16).tobytes()
    out: dict[str, float] = {}
    for name, layouts, sound in (("mono", ["mono"], True), ("stereo", ["stereo"], True),
                                 ("mono_and_stereo", ["mono", "stereo"], True),
                                 ("mono_silent", ["mono"], False)):
        clock = [0.0]
        hub = ListenHub(SessionHooks(), lambda c=clock: c[0])  # type: ignore[misc]
        for layout in layouts:
            hub.outs[layout] = OpusOut(layout)
            hub.outs[layout].tracks.add(ListenerTrack(layout))
        t0 = time.thread_time()
        for i in range(ticks):
            if sound:
                hub.caller.push(caller[i * 960:(i + 1) * 960], clock[0], time.monotonic())
                hub.agent.push(agent[i * 960:(i + 1) * 960], clock[0], time.monotonic())
            hub.tick()
            clock[0] += 20
        out[f"{name}_us"] = round((time.thread_time() - t0) / ticks * 1e6, 1)
    return out


# -- the driver -----------------------------------------------------------------------------


def loop_lag(base: str) -> list[tuple[float, float]]:
    return histograms(http_get(base + "/metrics"), "gateway_event_loop_lag_seconds").get("", [])


def lag_ms(before: list[tuple[float, float]], after: list[tuple[float, float]]
           ) -> dict[str, float | None]:
    """The gateway's event-loop lag between two scrapes: p99 and the worst bucket, ms."""
    b = diff_buckets(after, before)
    p99, top = bucket_quantile(b, 0.99), top_bucket(b)
    return {"p99": None if p99 is None else round(p99 * 1000, 1),
            "max_bucket": None if top is None else round(top * 1000, 1)}


def snapshot(srv: subprocess.Popen[bytes], caller: ClientProc, lis: ListenerProc, base: str
             ) -> dict[str, Any]:
    caller.send("mark")
    s = {"t": time.monotonic(), "cpu": proc_cpu_s(srv.pid), "main": main_thread_cpu_s(srv.pid),
         "machine": machine_cpu(), "lag": loop_lag(base)}
    s["caller"] = caller.expect("mark", 20)
    s["listeners"] = lis.ask("mark", "mark")
    return s


def window(n: int, a: dict[str, Any], b: dict[str, Any], mix: dict[str, Any] | None
           ) -> dict[str, Any]:
    wall = b["t"] - a["t"]
    ca, cb = a["caller"], b["caller"]
    la, lb = a["listeners"], b["listeners"]
    busy = (b["machine"][0] - a["machine"][0]) / wall
    expected = 50 * wall * n
    out: dict[str, Any] = {
        "listeners": n, "window_s": round(wall, 2),
        "cores": (b["cpu"] - a["cpu"]) / wall, "main_thread_cores": (b["main"] - a["main"]) / wall,
        "machine_busy_cores": busy,
        "caller_outbound_pct": 100 * (cb["received"] - ca["received"]) / (50 * (cb["t"] - ca["t"])),
        "caller_rtp_lost": cb["rtp_lost"] - ca["rtp_lost"],
        "caller_ts_gap_frames": cb["skipped"] - ca["skipped"],
        "listener_rtp_pct": 100 * (lb["rtp"] - la["rtp"]) / expected if n else None,
        "listener_frames_pct": 100 * (lb["frames"] - la["frames"]) / expected if n else None,
        "listener_rtp_lost": lb["lost"] - la["lost"],
        "loop_lag_ms": lag_ms(a["lag"], b["lag"]),
    }
    if mix is not None:
        m = mix["mix"]
        out["encoders"] = {k: {"listeners": v["listeners"], "encode_us": v["encode_us"]}
                           for k, v in m["encoders"].items()}
        out["mix_ticks"] = m["ticks"]
        out["mix_skipped_ticks"] = m["skipped_ticks"]
        out["added_latency_ms"] = m["added_latency_ms"]
        waits = [lis["queue_wait_ms"]["p95"] for lis in mix["data"] if lis["queue_wait_ms"]]
        out["listener_queue_wait_p95_ms"] = max(waits) if waits else None
        out["listener_packets_dropped"] = sum(lis["packets_dropped"] for lis in mix["data"])
    return out


def _median(xs: list[float]) -> float:
    return float(statistics.median(xs))


def summarise(runs: list[dict[str, Any]], levels: list[int]) -> dict[str, Any]:
    by = {n: [r for r in runs if r["listeners"] == n] for n in levels}
    rows = []
    for n in levels:
        rs = by[n]
        lat = [r["added_latency_ms"] for r in rs if r.get("added_latency_ms")]
        rows.append({
            "listeners": n, "windows": len(rs),
            "cores": _median([r["cores"] for r in rs]),
            "cores_min": min(r["cores"] for r in rs), "cores_max": max(r["cores"] for r in rs),
            "main_thread_cores": _median([r["main_thread_cores"] for r in rs]),
            "caller_outbound_pct_min": min(r["caller_outbound_pct"] for r in rs),
            "caller_rtp_lost": sum(r["caller_rtp_lost"] for r in rs),
            "caller_ts_gap_frames": sum(r["caller_ts_gap_frames"] for r in rs),
            "loop_lag_p99_ms_median": _median([r["loop_lag_ms"]["p99"] or 0.0 for r in rs]),
            "listener_rtp_pct_min": min((r["listener_rtp_pct"] for r in rs
                                         if r["listener_rtp_pct"] is not None), default=None),
            "added_latency_caller_p95_ms_max": max((x["caller"]["p95"] for x in lat
                                                    if x["caller"]), default=None),
            "added_latency_agent_p95_ms_max": max((x["agent"]["p95"] for x in lat
                                                   if x["agent"]), default=None),
            "listener_queue_wait_p95_ms_max": max((r["listener_queue_wait_p95_ms"] for r in rs
                                                   if r.get("listener_queue_wait_p95_ms")
                                                   is not None), default=None),
            "encode_us_median": _median([e["encode_us"] for r in rs
                                         for e in (r.get("encoders") or {}).values()
                                         if e["encode_us"]]) if n else None,
        })
    top = max(levels)
    cores = {r["listeners"]: r["cores"] for r in rows}
    main = {r["listeners"]: r["main_thread_cores"] for r in rows}
    out: dict[str, Any] = {"rows": rows}
    if 1 in cores and top > 1:
        out["cores_per_extra_listener"] = (cores[top] - cores[1]) / (top - 1)
        out["main_thread_cores_per_extra_listener"] = (main[top] - main[1]) / (top - 1)
    if 0 in cores and 1 in cores:
        out["cores_first_listener"] = cores[1] - cores[0]
    # Least squares over every window with listeners: uses all the data, not two medians.
    pts = [(r["listeners"], r["cores"], r["main_thread_cores"]) for r in runs if r["listeners"]]
    if len({n for n, _, _ in pts}) > 1:
        xs = [float(n) for n, _, _ in pts]
        mx = statistics.fmean(xs)
        sxx = sum((x - mx) ** 2 for x in xs)
        for key, col in (("cores_per_extra_listener_fit", 1), ("main_thread_cores_per_extra"
                                                                "_listener_fit", 2)):
            ys = [p[col] for p in pts]
            my = statistics.fmean(ys)
            out[key] = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx
    worst = [r["loop_lag_ms"]["max_bucket"] for r in runs if r["loop_lag_ms"]["max_bucket"]]
    out["loop_lag_max_bucket_ms"] = max(worst) if worst else None
    changes = [r["change"]["loop_lag_ms"]["max_bucket"] for r in runs
               if r.get("change") and r["change"]["listeners_before"] != r["listeners"]
               and r["change"]["loop_lag_ms"]["max_bucket"]]
    out["loop_lag_max_bucket_ms_while_joining_or_leaving"] = max(changes) if changes else None
    return out


def run(args: argparse.Namespace) -> dict[str, Any]:
    levels = [int(x) for x in args.levels.split(",")]
    logdir = Path(tempfile.mkdtemp(prefix="bench-listeners-"))
    log = open(logdir / "bench.log", "wb")  # noqa: SIM115 (closed in finally)
    started: list[subprocess.Popen[Any]] = []
    caller: ClientProc | None = None
    lis: ListenerProc | None = None
    runs: list[dict[str, Any]] = []
    try:
        up_port, port = free_port(), free_port()
        upstream = f"ws://127.0.0.1:{up_port}/v1/realtime"
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        echo = subprocess.Popen([sys.executable, "-m", "bench.echo_upstream", "--port",
                                 str(up_port)], cwd=ROOT, env=env, stdout=log, stderr=log)
        started.append(echo)
        cmd, srv_env, ready = server_command("gateway", port, upstream, {
            "GATEWAY_ADMIN_TOKEN": ADMIN})
        srv = subprocess.Popen(cmd, cwd=logdir, env=srv_env, stdout=log, stderr=log)
        started.append(srv)
        base = f"http://127.0.0.1:{port}"
        wait_http(f"http://127.0.0.1:{up_port}/stats", echo, 30)
        wait_http(base + ready, srv, 60)
        caller = ClientProc(base, 1, log, env)
        caller.expect("ready", 60)
        call_id = admin_get(base + "/admin/calls")["data"][0]["call_id"]
        lis = ListenerProc(base, call_id, log)
        for rep in range(args.repeat):
            order = levels if rep % 2 == 0 else levels[::-1]
            for n in order:
                lag0 = loop_lag(base)
                change = lis.ask(f"set {n}", "set", 120)
                # Listeners joining or leaving: what it did to the call's event loop.
                time.sleep(0.5)
                change_lag = lag_ms(lag0, loop_lag(base))
                if args.wait_quiet > 0:
                    wait_quiet(args.wait_quiet)
                time.sleep(args.settle)
                a = snapshot(srv, caller, lis, base)
                time.sleep(args.seconds)
                b = snapshot(srv, caller, lis, base)
                mix = admin_get(f"{base}/admin/calls/{call_id}/listeners") if n else None
                w = window(n, a, b, mix)
                w["repeat"] = rep
                w["change"] = {"listeners_before": runs[-1]["listeners"] if runs else 0,
                               "s": round(change["s"], 2), "loop_lag_ms": change_lag}
                runs.append(w)
                print(f"rep {rep} listeners {n:2d}: {w['cores']:.4f} cores "
                      f"(main {w['main_thread_cores']:.4f}), caller out "
                      f"{w['caller_outbound_pct']:.1f} %, machine busy "
                      f"{w['machine_busy_cores']:.2f}", file=sys.stderr)
        return {"runs": runs, "summary": summarise(runs, levels), "logdir": str(logdir)}
    finally:
        if lis is not None:
            lis.close()
        if caller is not None:
            caller.close()
        for p in reversed(started):
            stop(p)
        log.close()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.listeners", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--role", choices=("driver", "listeners"), default="driver")
    p.add_argument("--base")
    p.add_argument("--call-id")
    p.add_argument("--admin", default=ADMIN)
    p.add_argument("--levels", default="0,1,5,10")
    p.add_argument("--seconds", type=float, default=15.0)
    p.add_argument("--settle", type=float, default=2.0)
    p.add_argument("--repeat", type=int, default=2)
    p.add_argument("--wait-quiet", type=float, default=0.0,
                   help="before each window wait up to this long for the machine to go idle")
    p.add_argument("--quick", action="store_true", help="levels 0,1,5, 8 s windows, 1 repeat; "
                   "exit 1 when the cost per extra listener is over --max-per-listener")
    p.add_argument("--max-per-listener", type=float, default=0.005)
    p.add_argument("--out", type=Path, default=RESULTS / "listeners.json")
    args = p.parse_args(argv)
    if args.role == "listeners":
        return asyncio.run(listeners_main(args))
    if args.quick:
        args.levels, args.seconds, args.repeat = "0,1,5", 8.0, 1
    ticks = tick_cost()
    print(f"mixer tick, CPU per 20 ms: {ticks}")
    result = run(args)
    s = result["summary"]
    s["mixer_tick_cpu_us"] = ticks
    for r in s["rows"]:
        print(f"{r['listeners']:3d} listeners: {r['cores']:.4f} cores "
              f"[{r['cores_min']:.4f}..{r['cores_max']:.4f}], caller out >= "
              f"{r['caller_outbound_pct_min']:.1f} %")
    per = s.get("cores_per_extra_listener_fit")
    print(f"per extra listener: {per if per is None else round(per, 5)} cores (fit; medians "
          f"{s.get('cores_per_extra_listener')}); first listener (mixer + encoder): "
          f"{s.get('cores_first_listener')}")
    if args.quick:
        return 0 if per is not None and per <= args.max_per_listener else 1
    doc = {"benchmark": "listeners",
           "command": "python -m bench.listeners " + " ".join(argv or sys.argv[1:]),
           "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
           "machine": machine_info(),
           "settings": {"levels": args.levels, "seconds": args.seconds, "settle": args.settle,
                        "repeat": args.repeat, "wait_quiet": args.wait_quiet},
           "summary": s, "runs": result["runs"]}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
