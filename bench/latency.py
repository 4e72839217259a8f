"""Latency benchmark (issue 10): one-way latency each way from audio markers, under loss and
jitter, against the naive relay; a soak; memory per call and under overload.

    python -m bench.latency                        # clean, 1/2/5 % loss + 30+-20 ms, both servers
    python -m bench.latency --quick                # clean and 2 % loss, 2 x 8 s (< 2 min)
    python -m bench.latency --soak-minutes 10      # gateway, 2 % loss + jitter, per minute
    python -m bench.latency --overload 60          # gateway RSS at 1, 10 and 60 calls
    python -m bench.latency --report               # the tables of bench/results/latency.json
    python -m bench.latency --servers gateway,live --conditions clean --out \
        bench/results/latency-live.json            # GPT-Live over WebRTC against Realtime

Method (details in bench/latency_net.py, bench/markers.py, bench/latency_caller.py,
bench/marker_upstream.py, bench/nfq_delay.py):

- The probe caller runs in its own network namespace, routed to the root namespace (where the
  server under test and the echo upstream run) through a router namespace that applies the
  network condition: loss by iptables' ``statistic`` match, delay and jitter by NFQUEUE
  (``bench.nfq_delay``; this kernel has no netem), to every UDP packet, each direction.
- It sends silence with a 5 ms tone burst every 500 ms (pre-encoded Opus, paced in real time).
  The upstream detects each marker in the ``input_audio_buffer.append`` audio and echoes every
  append back at once as a ``response.output_audio.delta``; the caller decodes every packet on
  arrival (aiortc's 80 ms jitter buffer bypassed) and detects the echoed markers.
- Times are ``time.monotonic()`` in every process; packets are time-stamped by the kernel on
  the wire by taps (AF_PACKET) on the caller's interface and on the server side of the network
  (the root end of the veth: before the network on the way out, after it on the way in), and
  matched to markers by SSRC and RTP timestamp.
- Servers: ``gateway`` (Realtime WebRTC calls), ``live`` (the same gateway on
  ``bench/live_profile.toml``: GPT-Live WebRTC calls, ``POST /v1/live/sessions``, to the echo's
  Live endpoint: ``session.input_audio.append`` in, ``session.output_audio.delta`` out),
  ``naive`` (bench/naive_relay.py).
- ``--calls`` probe calls per server and condition, one after the other, each with its capture
  clock at a different phase of the 20 ms frame; the first ``--warmup`` s of each are not
  counted. Servers alternate order from one condition to the next.

Per marker, inbound (caller -> upstream): **one-way** = caller's wire -> append received by the
upstream; **server-added** = server's wire -> append received (SRTP, jitter buffer, decode,
resample, append batching, WebSocket; the network excluded exactly, per packet), split into the
append batching (0 or 20 ms for 40 ms appends) and the rest; network = caller's wire -> server's
wire. Outbound (upstream -> caller): **one-way** = delta handed to the upstream's socket ->
caller's wire; **server-added** = delta sent -> server's wire (WebSocket, playout queue, 20 ms
pacing, encode, SRTP), split into the marker's position in its delta, the playout backlog
(frames of earlier deltas sent before it, counted on the server's wire) and the rest (tick wait,
encode, send); network = server's wire -> caller's wire. Markers lost: not detected at the far
end (inbound: split into dropped by the network, i.e. never seen on the server's wire, and lost
in the server).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from bench.calls import LineProc as JsonLineProc
from bench.calls import (
    bucket_quantile,
    diff_buckets,
    free_port,
    histograms,
    http_get,
    machine_cpu,
    machine_info,
    proc_cpu_s,
    proc_status,
    pythonpath,
    snapshot_gateway,
    stop,
    wait_http,
)
from bench.latency_net import ROOT_IP, Condition, LatencyNet, WireTap, why_not
from bench.latency_report import (
    matrix_table,
    overload_table,
    report,
    soak_table,
    soak_verdict,
    trio,
    verdicts,
)
from bench.latency_stats import (
    Marker,
    append_lateness,
    build_markers,
    direction_stats,
    in_window,
    marker_rows,
    per_minute,
    sub,
    summary,
)

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
API_KEY = "bench-key"
PY = sys.executable
TAIL_S = 1.5  # markers sent this close to the end of a probe are not counted
CONDITIONS = {
    "clean": Condition("clean"),
    "loss1": Condition("loss1", 0.01, 30.0, 20.0),
    "loss2": Condition("loss2", 0.02, 30.0, 20.0),
    "loss5": Condition("loss5", 0.05, 30.0, 20.0),
}


# -- processes --------------------------------------------------------------------------


def base_env() -> dict[str, str]:
    """Children run the gateway from the copy ``snapshot_gateway`` froze (bench.calls)."""
    return dict(os.environ, PYTHONPATH=pythonpath())


class LineProc(JsonLineProc):
    """A bench child process with this bench's environment."""

    def __init__(self, argv: list[str], log: IO[bytes]) -> None:
        super().__init__(argv, log, base_env())


def server_argv(server: str, host: str, port: int, upstream: str
                ) -> tuple[list[str], dict[str, str], str]:
    env = base_env()
    if server == "live":  # the same gateway, on a GPT-Live profile (its upstream: the echo's Live)
        env["GATEWAY_CONFIG"] = str(ROOT / "bench" / "live_profile.toml")
    if server in ("gateway", "live"):
        env.update({"GATEWAY_HOST": host, "GATEWAY_PORT": str(port),
                    "GATEWAY_API_KEYS": API_KEY, "GATEWAY_TOKEN_SECRET": "bench-secret",
                    "GATEWAY_UPSTREAM_URL": upstream, "OPENAI_API_KEY": "x",
                    "GATEWAY_SERVER_MAX_CALLS": "200",
                    # Shutdown only: the bench's calls have hung up when it stops the server.
                    "GATEWAY_SERVER_DRAIN_TIMEOUT_S": "1"})
        return [PY, "-m", "gateway", "serve"], env, "/healthz"
    return ([PY, "-m", "bench.naive_relay", "--host", host, "--port", str(port), "--upstream",
             upstream], env, "/metrics")


@dataclass
class Stack:
    """Upstream + server under test, started fresh for one run."""

    server: str
    host: str
    logdir: Path
    log: IO[bytes]
    upstream_module: str = "bench.marker_upstream"
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    base: str = ""
    up_url: str = ""
    pid: int = 0

    def start(self) -> None:
        up_port, port = free_port(), free_port()
        self.up_url = f"http://127.0.0.1:{up_port}"
        up = subprocess.Popen([PY, "-m", self.upstream_module, "--port", str(up_port)],
                              cwd=ROOT, env=base_env(), stdout=self.log, stderr=self.log)
        self.procs.append(up)
        wait_http(self.up_url + "/stats", up, 30)
        argv, env, ready = server_argv(self.server, self.host, port,
                                       f"ws://127.0.0.1:{up_port}/v1/realtime")
        # The server's working directory is scratch (recordings land there, not in the repo).
        srv = subprocess.Popen(argv, cwd=self.logdir, env=env, stdout=self.log, stderr=self.log)
        self.procs.append(srv)
        self.pid = srv.pid
        self.base = f"http://{self.host}:{port}"
        wait_http(self.base + ready, srv, 60)

    def rss_kb(self) -> int:
        return proc_status(self.pid)["VmRSS"]

    def metrics(self) -> str:
        with contextlib.suppress(OSError):
            return http_get(self.base + "/metrics")
        return ""

    def close(self) -> None:
        for p in reversed(self.procs):
            stop(p)
        shutil.rmtree(self.logdir / "recordings", ignore_errors=True)


def load_avg() -> float:
    return os.getloadavg()[0]


def wait_quiet(max_s: float, limit: float = 1.5) -> tuple[float, float]:
    """Wait up to ``max_s`` for the 1-minute load average to drop below ``limit`` (the host is
    shared). Returns (seconds waited, load average then)."""
    t0 = time.monotonic()
    while load_avg() >= limit and time.monotonic() - t0 < max_s:
        time.sleep(10)
    return time.monotonic() - t0, load_avg()


# -- statistics -------------------------------------------------------------------------


# -- one probe run ----------------------------------------------------------------------


def start_diagnostics(tap: WireTap, probe: dict[str, Any], conn: dict[str, Any]
                      ) -> dict[str, Any]:
    """How the call started, in ms from the caller's first RTP packet on the server's wire:
    the first append at the upstream, the server's first RTP packet out, and the lateness of
    the appends in the first 3 s (a start-up burst becomes a playout backlog that stays)."""
    ins = sorted(p.t for p in tap.seen if not p.outgoing and p.ssrc == probe["local_ssrc"])
    outs = sorted(p.t for p in tap.seen if p.outgoing and p.ssrc == probe["remote_ssrc"])
    if not ins:
        return {}
    t0 = ins[0]
    arrivals = conn["arrivals"]
    late = append_lateness(arrivals)
    return {"first_append_ms": round(1000 * (arrivals[0][0] - t0), 1) if arrivals else None,
            "first_rtp_out_ms": round(1000 * (outs[0] - t0), 1) if outs else None,
            "append_lateness_first_3s_ms": [[round(1000 * (t - t0), 1), round(1000 * x, 1)]
                                            for t, x in late if t - t0 < 3.0]}


class Sampler:
    """Server RSS and CPU (and the machine's busy time) every ``interval`` s, in a thread."""

    def __init__(self, pid: int, interval: float = 2.0) -> None:
        self.pid = pid
        self.interval = interval
        self.rows: list[tuple[float, int, float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            self.sample()
            if self._stop.wait(self.interval):
                return

    def sample(self) -> None:
        with contextlib.suppress(OSError, KeyError):
            self.rows.append((time.monotonic(), proc_status(self.pid)["VmRSS"],
                              proc_cpu_s(self.pid), machine_cpu()[0]))

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def cores(self, t_from: float, t_to: float) -> tuple[float | None, float | None]:
        """(server cores, machine busy cores) between two times."""
        rows = [r for r in self.rows if t_from <= r[0] <= t_to]
        if len(rows) < 2 or rows[-1][0] <= rows[0][0]:
            return None, None
        dt = rows[-1][0] - rows[0][0]
        return (rows[-1][2] - rows[0][2]) / dt, (rows[-1][3] - rows[0][3]) / dt

    def rss_at(self, t: float) -> int | None:
        before = [r for r in self.rows if r[0] <= t]
        return before[-1][1] if before else None


@dataclass
class Ctx:
    args: argparse.Namespace
    logdir: Path
    net: LatencyNet | None = None


def loop_lag_p99(before: str, after: str) -> float | None:
    lag = diff_buckets(*[histograms(s, "gateway_event_loop_lag_seconds").get("", [])
                         for s in (after, before)])
    q = bucket_quantile(lag, 0.99)
    return None if q is None else round(1000 * q, 2)


@dataclass
class CallData:
    """One probe call's markers (its window only) and the lateness of its appends."""

    ready: dict[str, Any]
    result: dict[str, Any]
    window: list[Marker] = field(default_factory=list)
    late: list[tuple[float, float]] = field(default_factory=list)
    t_from: float = 0.0
    t_to: float = 0.0


def connection_for(ups: list[dict[str, Any]], ready_t: float) -> dict[str, Any] | None:
    """The upstream connection of a call: the last one opened before the call was up (calls
    run one after the other)."""
    before = [c for c in ups if c["opened"] <= ready_t]
    return before[-1] if before else None


def analyse_call(call: CallData, ups: list[dict[str, Any]], tap: WireTap, warm: float) -> None:
    conn = connection_for(ups, call.ready["t"])
    marks = build_markers(call.result, conn["markers"] if conn else [], tap)
    call.t_from = call.ready["t"] + warm
    call.t_to = max((m.t_handed for m in marks), default=call.t_from) - TAIL_S
    call.window = in_window(marks, call.t_from, call.t_to)
    call.late = [(t, x) for t, x in append_lateness(conn["arrivals"] if conn else [])
                 if call.t_from <= t <= call.t_to]


def run_probe_calls(probe: LineProc, calls: int, per_call_s: float, on_first_ready: Any
                    ) -> list[CallData]:
    out: list[CallData] = []
    for i in range(calls):
        ready = probe.expect("ready", 90)
        if i == 0:
            on_first_ready()
        out.append(CallData(ready, wait_result(probe, per_call_s + 90)))
    return out


def run_summary(calls: list[CallData], tap: WireTap, ups: list[dict[str, Any]]
                ) -> dict[str, Any]:
    window = [m for c in calls for m in c.window]
    return {
        "calls": len(calls), "window_s": round(sum(c.t_to - c.t_from for c in calls), 1),
        **direction_stats(window),
        "append_lateness": summary([x for c in calls for _, x in c.late]),
        "per_call": [{"call": i, "window_s": round(c.t_to - c.t_from, 1),
                      "in_server": summary([sub(m.t_up_recv, m.t_gw_in) for m in c.window]),
                      "out_server": summary([sub(m.t_gw_out, m.t_up_sent) for m in c.window]),
                      "out_queued_ahead": summary([None if m.out_queued is None else
                                                   m.out_queued * 0.02 for m in c.window]),
                      "append_lateness": summary([x for _, x in c.late]),
                      "start": start_diagnostics(tap, c.result, connection_for(
                          ups, c.ready["t"]) or {"arrivals": []}),
                      "probe": {k: c.result.get(k) for k in ("rtp", "buffer", "tap",
                                                             "frames_sent", "events")}}
                     for i, c in enumerate(calls)],
        "markers_fields": ["call", "k", "freq", "caller_wire", "server_wire_in",
                           "upstream_recv", "upstream_sent", "server_wire_out",
                           "caller_wire_back", "caller_decoded", "offset_ms", "append_ms",
                           "playout_backlog_frames"],
        "markers": [[i, *row] for i, c in enumerate(calls) for row in marker_rows(c.window)],
    }


def probe_run(ctx: Ctx, server: str, cond: Condition, seconds: float, *, calls: int = 1,
              background: int = 0, tag: str) -> dict[str, Any]:
    """``calls`` probe calls of ``seconds`` each (one after the other) through a fresh
    upstream and server, under ``cond``."""
    net = ctx.net
    assert net is not None
    log = open(ctx.logdir / f"{tag}.log", "wb")  # noqa: SIM115 (closed in finally)
    stack = Stack(server, ROOT_IP, ctx.logdir, log)
    tap: WireTap | None = None
    probe: LineProc | None = None
    sampler: Sampler | None = None
    loaders: list[LineProc] = []
    try:
        waited, load = wait_quiet(ctx.args.wait_quiet)
        net.apply(cond)
        stack.start()
        time.sleep(1.0)
        idle_kb = stack.rss_kb()
        tap = WireTap(net.root_if)
        warm = ctx.args.warmup
        probe = LineProc(["ip", "netns", "exec", net.caller, PY, "-m", "bench.latency_caller",
                          "probe", "--base", stack.base, "--api-key", API_KEY, "--seconds",
                          str(seconds + warm), "--calls", str(calls),
                          "--api", "live" if server == "live" else "realtime"], log)
        sampler = Sampler(stack.pid)
        metrics: list[str] = []

        def first_ready() -> None:
            loaders.extend(start_loaders(stack.base, background, log))
            metrics.append(stack.metrics())

        data = run_probe_calls(probe, calls, seconds + warm, first_ready)
        sampler.close()
        metrics.append(stack.metrics())
        ups = json.loads(http_get(stack.up_url + "/markers"))["connections"]
        delayer = net.take_delayer_summary()
        for c in data:
            analyse_call(c, ups, tap, warm)
        srv_cores, busy = sampler.cores(data[0].t_from, data[-1].t_to)
        out: dict[str, Any] = {
            "server": server, "condition": cond.name, "network": cond.describe(),
            "background_calls": background, **run_summary(data, tap, ups),
            "server_cores": srv_cores, "machine_busy_cores": busy,
            "load_avg_before": round(load, 2), "waited_for_quiet_s": round(waited),
            "loop_lag_p99_ms": loop_lag_p99(metrics[0], metrics[-1]),
            "rss_idle_mb": idle_kb / 1024,
            "rss_mb": [[round(t - data[0].t_from, 1), round(kb / 1024, 2)]
                       for t, kb, _, _ in sampler.rows],
            "upstream_connections": len(ups), "gateway_tap_packets": len(tap.seen),
            "delayer": delayer,
        }
        if ctx.args.soak_minutes:
            out["per_minute"] = soak_minutes(data[0], sampler, int(ctx.args.soak_minutes) + 1)
        return out
    finally:
        if sampler is not None:
            sampler.close()
        for lp in loaders:
            lp.close()
        if probe is not None:
            probe.close(5)
        if tap is not None:
            tap.close()
        stack.close()
        log.close()


def soak_minutes(call: CallData, sampler: Sampler, minutes: int) -> list[dict[str, Any]]:
    rows = per_minute(call.window, call.t_from, minutes)
    for row in rows:
        end = call.t_from + 60 * row["minute"]
        kb = sampler.rss_at(end)
        row["rss_mb"] = None if kb is None else round(kb / 1024, 2)
        row["append_lateness"] = summary([x for t, x in call.late if end - 60 <= t < end])
    return rows


def wait_result(probe: LineProc, timeout: float) -> dict[str, Any]:
    try:
        msg = probe.lines.get(timeout=timeout)
    except queue.Empty:
        raise RuntimeError("probe: no result in time") from None
    if msg is None or msg.get("event") != "result":
        raise RuntimeError(f"probe: expected its result, got {msg}")
    return msg


def start_loaders(base: str, calls: int, log: IO[bytes], per_proc: int = 20) -> list[LineProc]:
    out: list[LineProc] = []
    while calls > 0:
        n = min(per_proc, calls)
        calls -= n
        lp = LineProc([PY, "-m", "bench.latency_caller", "load", "--base", base, "--api-key",
                       API_KEY, "--calls", str(n)], log)
        out.append(lp)
    for lp in out:
        msg = lp.expect("ready", 60 + 5 * per_proc)
        if msg.get("failed"):
            print(f"  load callers: {msg['failed']} of {msg['failed'] + msg['calls']} calls "
                  f"failed to set up: {msg.get('errors')}", flush=True)
    return out


# -- overload ---------------------------------------------------------------------------


def mark_loaders(loaders: list[LineProc]) -> dict[str, float]:
    tot = {"calls": 0.0, "sent": 0.0, "received": 0.0, "not_connected": 0.0}
    for lp in loaders:
        lp.send("mark")
    for lp in loaders:
        m = lp.expect("mark", 30)
        for k in tot:
            tot[k] += float(m[k])
    return tot


def loaders_cpu(loaders: list[LineProc]) -> float:
    total = 0.0
    for lp in loaders:
        with contextlib.suppress(OSError):
            total += proc_cpu_s(lp.proc.pid)
    return total


def overload_phase(stack: Stack, loaders: list[LineProc], sampler: Sampler, calls: int,
                   hold_s: float, idle_kb: int) -> dict[str, Any]:
    """Hold ``calls`` calls for ``hold_s`` (the sampler takes RSS every 3 s meanwhile);
    delivery, CPU and RSS over the hold."""
    time.sleep(3.0)
    a_t, a_m, a_up = time.monotonic(), mark_loaders(loaders), json.loads(
        http_get(stack.up_url + "/stats"))
    a_cpu = loaders_cpu(loaders)
    metrics_a = stack.metrics()
    time.sleep(hold_s)
    b_t, b_m, b_up = time.monotonic(), mark_loaders(loaders), json.loads(
        http_get(stack.up_url + "/stats"))
    dt = b_t - a_t
    client_cores = (loaders_cpu(loaders) - a_cpu) / dt
    sent_ms = 20 * (b_m["sent"] - a_m["sent"])
    rows = [r for r in sampler.rows if a_t <= r[0] <= b_t]
    half = [r for r in rows if r[0] >= a_t + dt / 2]
    kb = rows[-1][1] if rows else stack.rss_kb()
    cores, busy = sampler.cores(a_t, b_t)
    return {
        "calls": calls, "connected": int(b_m["calls"] - b_m["not_connected"]),
        "hold_s": round(dt, 1), "rss_mb": round(kb / 1024, 1),
        "rss_per_call_mb": round((kb - idle_kb) / 1024 / calls, 2),
        "rss_min_max_mb": [round(min(r[1] for r in rows) / 1024, 1),
                           round(max(r[1] for r in rows) / 1024, 1)] if rows else None,
        "rss_slope_second_half_mb_per_min": slope(half),
        "server_cores": cores, "machine_busy_cores": busy, "client_cores": client_cores,
        "inbound_pct": round(100 * (b_up["audio_ms_in"] - a_up["audio_ms_in"]) / sent_ms, 1)
        if sent_ms else None,
        "outbound_pct": round(100 * (b_m["received"] - a_m["received"])
                              / (50 * dt * b_m["calls"]), 1) if b_m["calls"] else None,
        "loop_lag_p99_ms": loop_lag_p99(metrics_a, stack.metrics()),
    }


def slope(rows: list[tuple[float, int, float, float]]) -> float | None:
    """Least-squares RSS slope, MB per minute."""
    if len(rows) < 3:
        return None
    ts = [r[0] for r in rows]
    ys = [r[1] / 1024 for r in rows]
    mt, my = sum(ts) / len(ts), sum(ys) / len(ys)
    den = sum((t - mt) ** 2 for t in ts)
    return round(60 * sum((t - mt) * (y - my) for t, y in zip(ts, ys, strict=True)) / den, 3) \
        if den else None


def overload_run(ctx: Ctx) -> dict[str, Any]:
    args = ctx.args
    log = open(ctx.logdir / "overload.log", "wb")  # noqa: SIM115 (closed in finally)
    stack = Stack("gateway", "127.0.0.1", ctx.logdir, log, upstream_module="bench.echo_upstream")
    loaders: list[LineProc] = []
    sampler: Sampler | None = None
    try:
        waited, load = wait_quiet(args.wait_quiet)
        stack.start()
        time.sleep(2.0)
        idle_kb = stack.rss_kb()
        sampler = Sampler(stack.pid, 3.0)
        phases: list[dict[str, Any]] = []
        have = 0
        steps = [(n, args.step_seconds) for n in args.overload_steps if n < args.overload]
        for calls, hold in (*steps, (args.overload, args.overload_seconds)):
            loaders += start_loaders(stack.base, calls - have, log)
            have = calls
            phase = overload_phase(stack, loaders, sampler, calls, hold, idle_kb)
            if phases:
                prev = phases[-1]
                phase["marginal_mb_per_call"] = round(
                    (phase["rss_mb"] - prev["rss_mb"]) / (calls - prev["calls"]), 2)
            phases.append(phase)
            print(f"  overload: {phases[-1]}", flush=True)
        t_stop = time.monotonic()
        for lp in loaders:
            lp.close()
        loaders = []
        time.sleep(20.0)
        sampler.close()
        t0 = sampler.rows[0][0]
        return {"idle_rss_mb": round(idle_kb / 1024, 1), "phases": phases,
                "load_avg_before": round(load, 2), "waited_for_quiet_s": round(waited),
                "after_hangup_rss_mb": round(sampler.rows[-1][1] / 1024, 1),
                "hangup_at_s": round(t_stop - t0, 1),
                "curve": [[round(t - t0, 1), round(kb / 1024, 1), round(c, 2)]
                          for t, kb, c, _ in sampler.rows],
                "curve_fields": ["t_s", "rss_mb", "server_cpu_s"]}
    finally:
        if sampler is not None:
            sampler.close()
        for lp in loaders:
            lp.close()
        stack.close()
        log.close()


# -- tables -----------------------------------------------------------------------------


# -- main -------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.latency", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--conditions", default="clean,loss1,loss2,loss5",
                   help=f"comma-separated, of {', '.join(CONDITIONS)}")
    p.add_argument("--servers", default="gateway,naive")
    p.add_argument("--calls", type=int, default=4,
                   help="probe calls per server and condition, one after the other")
    p.add_argument("--seconds", type=float, default=20.0, help="measured seconds per call")
    p.add_argument("--warmup", type=float, default=3.0,
                   help="seconds after the call is up before markers count")
    p.add_argument("--quick", action="store_true",
                   help="clean and loss2, 2 calls of 8 s each (< 2 minutes)")
    p.add_argument("--soak-minutes", type=float, default=0.0,
                   help="instead: one gateway call this long at 2 %% loss + jitter")
    p.add_argument("--soak-background", type=int, default=4,
                   help="soak: extra clean calls (load callers) beside the probe")
    p.add_argument("--overload", type=int, default=0, metavar="N",
                   help="instead: gateway RSS at 1, 10 and N calls")
    p.add_argument("--overload-seconds", type=float, default=120.0,
                   help="how long N calls are held")
    p.add_argument("--overload-steps", default="1,10",
                   help="call counts held before N, for RSS per call (comma-separated)")
    p.add_argument("--step-seconds", type=float, default=30.0,
                   help="how long each step is held")
    p.add_argument("--wait-quiet", type=float, default=None, metavar="S",
                   help="wait up to S s before each run for load average < 1.5 "
                        "(default 30; quick 0)")
    p.add_argument("--out", type=Path, default=RESULTS / "latency.json")
    p.add_argument("--report", action="store_true",
                   help="print the tables of --out again and exit (nothing is run)")
    args = p.parse_args(argv)
    if args.quick:
        args.conditions, args.calls, args.seconds, args.warmup = "clean,loss2", 2, 8.0, 1.5
    if args.wait_quiet is None:
        args.wait_quiet = 0.0 if args.quick else 30.0
    args.condition_list = [CONDITIONS[c] for c in args.conditions.split(",") if c]
    args.server_list = [s for s in args.servers.split(",") if s]
    args.overload_steps = sorted(int(x) for x in args.overload_steps.split(",") if x)
    return args


def run_matrix(ctx: Ctx, failures: list[str], checkpoint: Callable[[list[dict[str, Any]]], None]
               ) -> list[dict[str, Any]]:
    """Every server under every condition (servers interleaved); ``checkpoint`` is called with
    the runs so far after each one, so an interrupted matrix keeps what it measured."""
    args = ctx.args
    runs: list[dict[str, Any]] = []
    for ci, cond in enumerate(args.condition_list):
        order = args.server_list if ci % 2 == 0 else list(reversed(args.server_list))
        for server in order:
            tag = f"{server}-{cond.name}"
            t0 = time.monotonic()
            try:
                r = probe_run(ctx, server, cond, args.seconds, calls=args.calls, tag=tag)
            except Exception as e:  # one broken run is reported, the rest go on
                failures.append(f"{tag}: {e!r}")
                print(f"  {tag}: FAILED {e!r} (log {ctx.logdir / (tag + '.log')})", flush=True)
                continue
            runs.append(r)
            checkpoint(runs)
            print(f"  {tag}: in server-added {trio(r['in']['server'])} ms, out "
                  f"{trio(r['out']['server'])} ms, lost {r['in']['lost']}/{r['out']['lost']}"
                  f" of {r['in']['sent']} ({time.monotonic() - t0:.0f} s)", flush=True)
    names = [c.name for c in args.condition_list]
    return sorted(runs, key=lambda r: (names.index(r["condition"]),
                                       args.server_list.index(r["server"])))


def compact_json(obj: Any, depth: int = 0) -> str:
    """JSON with one line per dict entry and per row of a table (a list of scalars stays on
    one line): per-marker rows and RSS samples would otherwise take a line per number."""
    pad = " " * (depth + 1)
    if isinstance(obj, dict) and obj:
        items = [f"{pad}{json.dumps(k)}: {compact_json(v, depth + 1)}" for k, v in obj.items()]
        return "{\n" + ",\n".join(items) + "\n" + " " * depth + "}"
    if isinstance(obj, list) and any(isinstance(x, dict | list) for x in obj):
        items = [pad + compact_json(x, depth + 1) for x in obj]
        return "[\n" + ",\n".join(items) + "\n" + " " * depth + "]"
    return json.dumps(obj)


def save(path: Path, section: str, data: dict[str, Any]) -> None:
    """Results of each mode live under their own key of one file."""
    doc: dict[str, Any] = {}
    with contextlib.suppress(OSError, ValueError):
        doc = json.loads(path.read_text())
    doc["benchmark"] = "latency"
    doc[section] = data
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(compact_json(doc) + "\n")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.report:
        return report(args.out)
    # SIGTERM (and SIGINT, which a background job ignores) unwinds through the finally blocks:
    # child processes stopped, namespaces and the route removed.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    signal.signal(signal.SIGINT, signal.default_int_handler)
    command = "python -m bench.latency " + " ".join(sys.argv[1:] if argv is None else argv)
    logdir = Path(tempfile.mkdtemp(prefix="bench-latency-"))
    started = datetime.datetime.now(datetime.UTC)
    print(f"{command}\nlogs: {logdir}", flush=True)
    ctx = Ctx(args, logdir)
    source = snapshot_gateway(logdir)
    meta: dict[str, Any] = {"command": command, "date": started.isoformat(timespec="seconds"),
                            "machine": machine_info(), "gateway_sha256": source["gateway_sha256"],
                            "source": source}
    if args.overload:
        res = overload_run(ctx)
        save(args.out, "overload", {**meta, **res})
        print("\n" + overload_table(res))
        return 0
    reason = why_not()
    if reason is not None:
        print(f"cannot build the network namespaces: {reason}", file=sys.stderr)
        return 2
    ctx.net = LatencyNet(PY, ROOT, base_env())
    try:
        ctx.net.build()
        if args.soak_minutes:
            cond = CONDITIONS["loss2"]
            r = probe_run(ctx, "gateway", cond, 60 * args.soak_minutes,
                          background=args.soak_background, tag="soak")
            r["verdict"] = soak_verdict(r)
            save(args.out, "soak", {**meta, **r})
            print("\n" + soak_table(r))
            print("\n" + "\n".join(r["verdict"]))
            return 0
        failures: list[str] = []
        section = "quick" if args.quick else "matrix"
        settings = {"conditions": [dataclasses.asdict(c) for c in args.condition_list],
                    "servers": args.server_list, "calls": args.calls,
                    "seconds": args.seconds, "warmup": args.warmup}

        def checkpoint(runs: list[dict[str, Any]]) -> None:
            save(args.out, section, {**meta, "settings": settings, "complete": False,
                                     "runs": runs, "failures": failures})

        runs = run_matrix(ctx, failures, checkpoint)
    finally:
        ctx.net.close()
    lines = verdicts(runs)
    save(args.out, section, {**meta, "settings": settings, "complete": True, "runs": runs,
                             "verdicts": lines, "failures": failures})
    print("\n" + matrix_table(runs))
    print("\n" + "\n".join(lines))
    print(f"\nresults: {args.out} ({section})")
    if failures:
        print("failures:\n  " + "\n  ".join(failures))
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
