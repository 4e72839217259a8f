"""Calls benchmark: what N concurrent full-duplex WebRTC calls cost the server process alone.

    python -m bench.calls --calls 1,5,10,20 --seconds 20      # full: BENCHMARKS.md
    python -m bench.calls --quick                              # CI guard (N=5, 8 s)
    python -m bench.calls --calls 45,90,100 --servers gateway --pin   # a core of its own
    python -m bench.calls --calls 20,45 --servers gateway,ac --variant ac:BENCH_CALLERS=aiortc
                                                   # light callers against aiortc callers

For every server under test (the gateway, the reference naive relay of
``bench/naive_relay.py``, and with ``--servers ...,pipecat`` Pipecat's SmallWebRTC transport and
OpenAI Realtime service, ``bench/pipecat_server.py``, run from its own venv: ``make
bench-pipecat-venv``) and every N, three processes are started fresh: the echo upstream
(``bench/echo_upstream.py``), the server, and the callers (``bench/clients.py``, one process per
``--calls-per-client`` calls; ``--callers light``, the default, sets each call up with aiortc
and then runs its media on one 20 ms clock per process, ``bench/light_media.py``, at about
half an aiortc caller's CPU; ``--callers aiortc`` keeps aiortc's sender and receiver per call).
Once every call is connected and ``--settle`` seconds have passed,
a window of ``--seconds`` is measured between two snapshots ("marks"):

- server CPU: utime+stime of every thread, from ``/proc/<pid>/stat`` -> cores per call; the
  main thread's CPU and its run-queue wait (``schedstat``: ready to run, another task on the
  CPU), which tells event-loop lag from other processes apart from the server's own work;
- server RSS (``/proc/<pid>/status``) at the end of the window minus its idle baseline (taken
  before any call), per call;
- event-loop lag and per-frame processing p50/p99: the server's ``/metrics`` histograms,
  scraped at both marks, buckets differenced, quantiles interpolated within a bucket;
- frames delivered: inbound = audio ms the echo upstream received / ms the callers sent;
  outbound = frames the callers received / 50 per second per call (audio: frames with sound).

Runs are interleaved (gateway, naive; next repeat naive, gateway) so both see the same machine,
and every figure is also reported as a gateway/naive ratio within one repeat; the summary
takes medians over repeats. ``--quick`` exits 1 when the gateway's cores per call exceed
``--max-ratio`` (0.6) times the naive relay's in the same run.

The machine is shared, so each run records what else was running (``/proc/stat`` busy time
minus our three processes), may first wait for a quiet machine (``--wait-quiet``), and says
whether it was saturated. The gateway's source is copied aside at the start so a whole run
measures one revision even while the tree is edited. ``--profile`` samples the server with
py-spy during each window and files a summary (by category and function) with the run.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import hashlib
import importlib.metadata
import json
import math
import os
import platform
import queue
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from gateway.audio import opus
from gateway.cluster.workers import internal_port

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
CLK_TCK = os.sysconf("SC_CLK_TCK")
API_KEY = "bench-key"
SERVERS = ("gateway", "naive", "pipecat")
#: Pipecat runs from its own venv (its pins are not the project's): ``make bench-pipecat-venv``.
PIPECAT_PYTHON = Path(os.environ.get("BENCH_PIPECAT_PYTHON",
                                     str(ROOT / ".venv-pipecat" / "bin" / "python")))
#: What a Pipecat run records about the Pipecat side (read from its venv).
PIPECAT_DISTS = ("pipecat-ai", "aiortc", "aioice", "av", "aiohttp", "numpy", "websockets")

# -- /proc ------------------------------------------------------------------------------


def proc_cpu_s(pid: int, *, system_only: bool = False) -> float:
    """utime + stime of a process (all its threads), in seconds; stime alone (time in the
    kernel: on loopback a send also carries the receiver's network stack) if ``system_only``."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    stime = int(fields[12])  # fields 14 (utime) and 15 (stime) of stat(5)
    return (stime if system_only else int(fields[11]) + stime) / CLK_TCK


def tree_pids(pid: int) -> list[int]:
    """``pid`` and its descendants (a ``serve --workers N`` supervisor, its workers and their
    private redis-server), from /proc/*/stat; processes that end meanwhile are skipped."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def tree_cpu_s(pids: list[int], *, system_only: bool = False) -> float:
    """CPU of every process of a tree (``tree_pids``)."""
    total = 0.0
    for p in pids:
        with contextlib.suppress(OSError):
            total += proc_cpu_s(p, system_only=system_only)
    return total


def tree_status(pids: list[int]) -> dict[str, int]:
    """VmRSS and Threads summed over a process tree (``tree_pids``)."""
    out = {"VmRSS": 0, "Threads": 0}
    for p in pids:
        with contextlib.suppress(OSError, KeyError):
            st = proc_status(p)
            out["VmRSS"] += st["VmRSS"]
            out["Threads"] += st["Threads"]
    return out


def main_thread_cpu_s(pid: int) -> float:
    """CPU of the main thread alone: the event loop, where a Python server's capacity ends
    (the codec threads of aiortc run beside it and release the GIL while in libopus)."""
    with open(f"/proc/{pid}/task/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def main_thread_wait_s(pid: int) -> float:
    """Time the main thread spent runnable but waiting for a CPU (``schedstat``'s run-queue
    delay): event-loop lag that comes from other processes on the server's core, not from
    the server's own work. 0 if the kernel keeps no schedstats."""
    try:
        with open(f"/proc/{pid}/task/{pid}/schedstat") as f:
            return int(f.read().split()[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return 0.0


def proc_status(pid: int) -> dict[str, int]:
    out: dict[str, int] = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "Threads"):
                out[key] = int(value.split()[0])
    return out


def machine_cpu() -> tuple[float, float, float]:
    """(busy, steal, total) seconds of all CPUs since boot, from /proc/stat."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    idle = v[3] + v[4]
    steal = v[7] if len(v) > 7 else 0
    total = sum(v[:8])
    return (total - idle - steal) / CLK_TCK, steal / CLK_TCK, total / CLK_TCK


# -- Prometheus text --------------------------------------------------------------------

_SAMPLE = re.compile(r'^(\w+)(?:\{(.*)\})?\s+(\S+)$')
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')
Buckets = list[tuple[float, float]]  # (upper bound, cumulative count), sorted


def histograms(text: str, name: str) -> dict[str, Buckets]:
    """Buckets of one histogram, keyed by its labels other than ``le`` (e.g. 'direction=in')."""
    out: dict[str, Buckets] = {}
    for line in text.splitlines():
        m = _SAMPLE.match(line)
        if not m or m.group(1) != name + "_bucket":
            continue
        labels = dict(_LABEL.findall(m.group(2) or ""))
        le = float(labels.pop("le"))
        labels.pop("worker", None)  # ``serve --workers N``: every worker's series, summed
        key = ",".join(f"{k}={v}" for k, v in sorted(labels.items()))
        out.setdefault(key, []).append((le, float(m.group(3))))
    merged: dict[str, Buckets] = {}
    for k, v in out.items():
        sums: dict[float, float] = {}
        for le, c in v:
            sums[le] = sums.get(le, 0.0) + c
        merged[k] = sorted(sums.items())
    return merged


#: Server counters whose change over the window explains lost frames or ended calls.
WATCHED = ("gateway_upstream_errors_total", "gateway_outbound_frames_total",
           "gateway_calls_total", "gateway_dead_mic_events_total",
           "gateway_webrtc_inbound_packets_lost")


def samples(text: str, name: str) -> dict[str, float]:
    """Every sample of one metric (counter or gauge), keyed by its labels."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        m = _SAMPLE.match(line)
        if m and m.group(1) == name:
            labels = ",".join(f"{k}={v}" for k, v in sorted(_LABEL.findall(m.group(2) or "")))
            out[labels] = float(m.group(3))
    return out


def watched_deltas(before: str, after: str) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for name in WATCHED:
        a, b = samples(before, name), samples(after, name)
        d = {k: v - a.get(k, 0.0) for k, v in b.items() if v - a.get(k, 0.0)}
        if d:
            out[name.removeprefix("gateway_")] = d
    return out


def calls_per_worker(text: str) -> dict[str, float]:
    """Active WebRTC calls by worker (``serve --workers N``); empty for one process."""
    out: dict[str, float] = {}
    for key, v in samples(text, "gateway_active_calls").items():
        labels = dict(kv.split("=", 1) for kv in key.split(",") if "=" in kv)
        if "worker" in labels and labels.get("transport") == "webrtc":
            out[labels["worker"]] = v
    return out


def diff_buckets(after: Buckets, before: Buckets | None) -> Buckets:
    prev = dict(before or [])
    return [(le, c - prev.get(le, 0.0)) for le, c in after]


def bucket_quantile(b: Buckets, q: float) -> float | None:
    """Quantile of a cumulative histogram, linear within the bucket it falls in (as
    Prometheus' histogram_quantile). In the +Inf bucket: the highest finite bound."""
    if not b or b[-1][1] <= 0:
        return None
    rank = q * b[-1][1]
    lo, prev = 0.0, 0.0
    for le, c in b:
        if c >= rank:
            if math.isinf(le):
                return lo
            return lo + (le - lo) * ((rank - prev) / (c - prev) if c > prev else 0.0)
        lo, prev = le, c
    return lo


def top_bucket(b: Buckets) -> float | None:
    """Upper bound of the highest bucket that got an observation (the +Inf bucket reports
    the last finite bound): the worst case, to bucket resolution."""
    prev, top = 0.0, None
    finite = 0.0
    for le, c in b:
        if c > prev:
            top = finite if math.isinf(le) else le
        prev = c
        if not math.isinf(le):
            finite = le
    return top


# -- processes --------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http_get(url: str, timeout: float = 5.0) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as r:  # noqa: S310 (local URL)
        return str(r.read().decode())


def wait_http(url: str, proc: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args!r} exited with {proc.returncode}")
        with contextlib.suppress(OSError):
            http_get(url, 1.0)
            return
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer in {timeout} s")


def stop(proc: subprocess.Popen[Any], timeout: float = 10.0) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class LineProc:
    """A child process speaking one JSON object a line on stdout (a thread reads them), and
    taking one-word commands on stdin (``stop`` to finish)."""

    def __init__(self, argv: list[str], log: IO[bytes], env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=log, text=True)
        self.lines: queue.Queue[dict[str, Any] | None] = queue.Queue(maxsize=1000)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with contextlib.suppress(ValueError):
                self.lines.put(json.loads(line))
        self.lines.put(None)

    def expect(self, event: str, timeout: float) -> dict[str, Any]:
        msg = self.lines.get(timeout=timeout)
        if msg is None:
            raise RuntimeError(f"{self.proc.args!r} exited ({self.proc.poll()}) before "
                               f"'{event}'")
        if msg.get("event") != event:
            raise RuntimeError(f"expected '{event}', got {str(msg)[:300]}")
        return msg

    def send(self, cmd: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(cmd + "\n")
        self.proc.stdin.flush()

    def close(self, timeout: float = 20.0) -> None:
        with contextlib.suppress(OSError, ValueError):
            self.send("stop")
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            stop(self.proc)
        self._reader.join(2)


class ClientProc(LineProc):
    """One ``bench.clients`` process (``calls`` callers). ``callers`` defaults to aiortc's for
    the other benches that start callers (console_cost, sideband), whose figures were taken
    with them; ``bench.calls`` passes its ``--callers``."""

    def __init__(self, base: str, calls: int, log: IO[bytes], env: dict[str, str],
                 encode_live: bool = False, prefix: list[str] | None = None,
                 api: str = "realtime", callers: str = "aiortc") -> None:
        self.calls = calls
        super().__init__(
            [*(prefix or []), sys.executable, "-m", "bench.clients", "--base", base,
             "--api-key", API_KEY, "--calls", str(calls), "--api", api, "--callers", callers,
             *(["--encode-live"] if encode_live else [])], log, env)


@dataclass
class Snapshot:
    t: float
    cpu: float
    main_cpu: float
    main_wait: float
    sys_cpu: float
    machine: tuple[float, float, float]
    client_cpu: float
    echo_cpu: float
    metrics: str
    echo: dict[str, Any]
    clients: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Procs:
    echo: subprocess.Popen[bytes]
    server: subprocess.Popen[bytes]
    base: str
    echo_url: str
    clients: list[ClientProc] = field(default_factory=list)

    def snapshot(self) -> Snapshot:
        for c in self.clients:
            c.send("mark")
        pid = self.server.pid
        pids = tree_pids(pid)  # read once: /proc is walked for it
        snap = Snapshot(time.monotonic(), tree_cpu_s(pids),
                        sum(main_thread_cpu_s(p) for p in pids),
                        sum(main_thread_wait_s(p) for p in pids),
                        tree_cpu_s(pids, system_only=True), machine_cpu(),
                        sum(proc_cpu_s(c.proc.pid) for c in self.clients),
                        proc_cpu_s(self.echo.pid), http_get(self.base + "/metrics"),
                        json.loads(http_get(self.echo_url + "/stats")))
        snap.clients = [c.expect("mark", 20) for c in self.clients]
        return snap


#: Where the gateway's source was frozen for this bench run (see ``snapshot_gateway``).
SNAPSHOT: list[Path] = []


#: Servers that run the gateway's source at another git revision (``--revision``).
REVISIONS: dict[str, Path] = {}


def pythonpath(server: str | None = None) -> str:
    first = [REVISIONS[server]] if server in REVISIONS else SNAPSHOT
    return os.pathsep.join([*(str(p) for p in first), str(ROOT)])


def snapshot_revision(name: str, rev: str, logdir: Path) -> str:
    """Extract ``gateway/`` as it was at ``rev`` (``git archive``) for server ``name``: a
    change measured against its parent in one interleaved run. Returns the full hash."""
    dest = logdir / f"rev-{name}"
    dest.mkdir()
    full = subprocess.run(["git", "rev-parse", "--verify", rev + "^{commit}"], cwd=ROOT,
                          text=True, capture_output=True, check=True, timeout=10).stdout.strip()
    archive = subprocess.run(["git", "archive", full, "gateway"], cwd=ROOT,
                             capture_output=True, check=True, timeout=60).stdout
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True, timeout=60)
    REVISIONS[name] = dest
    return full


def snapshot_gateway(logdir: Path) -> dict[str, Any]:
    """Copy ``gateway/`` aside and run every server from the copy: the tree is edited while
    a bench runs (a full run takes ~20 min), and one run must measure one revision. The
    copy comes first on PYTHONPATH, ahead of the editable install."""
    src = logdir / "src"
    shutil.copytree(ROOT / "gateway", src / "gateway",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    SNAPSHOT[:] = [src]
    digest = hashlib.sha256()
    for f in sorted((src / "gateway").rglob("*.py")):
        digest.update(str(f.relative_to(src)).encode() + b"\0" + f.read_bytes())
    head = dirty = ""
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, text=True,
                              capture_output=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "gateway"], cwd=ROOT,
                               text=True, capture_output=True, timeout=10).stdout
    return {"git_head": head, "gateway_dirty_files": len(dirty.splitlines()),
            "gateway_sha256": digest.hexdigest()[:16]}


def server_command(server: str, port: int, upstream: str, extra_env: dict[str, str],
                   variants: dict[str, dict[str, str]] | None = None
                   ) -> tuple[list[str], dict[str, str], str]:
    env = dict(os.environ, PYTHONPATH=pythonpath(server))
    if server == "gateway" or server in (variants or {}):
        env.update({"GATEWAY_HOST": "127.0.0.1", "GATEWAY_PORT": str(port),
                    "GATEWAY_API_KEYS": API_KEY, "GATEWAY_TOKEN_SECRET": "bench-secret",
                    "GATEWAY_UPSTREAM_URL": upstream, "OPENAI_API_KEY": "x",
                    "GATEWAY_SERVER_MAX_CALLS": "200"})
        env.update(extra_env)
        env.update((variants or {}).get(server, {}))
        # A variant with BENCH_WORKERS=N runs ``serve --workers N`` (its CPU and memory are the
        # whole process tree's: supervisor, workers and their private redis-server).
        workers = env.pop("BENCH_WORKERS", "1")
        return ([sys.executable, "-m", "gateway", "serve",
                 *(["--workers", workers] if int(workers) > 1 else [])], env, "/healthz")
    if server == "pipecat":  # bench/pipecat_server.py, with the Pipecat venv's interpreter
        return ([str(PIPECAT_PYTHON), "-m", "bench.pipecat_server", "--port", str(port),
                 "--upstream", upstream], env, "/metrics")
    return ([sys.executable, "-m", "bench.naive_relay", "--port", str(port), "--upstream",
             upstream], env, "/metrics")


def wait_quiet(max_wait_s: float, limit_cores: float = 0.3, sample_s: float = 2.0
               ) -> tuple[float, float]:
    """Wait (up to ``max_wait_s``) until the machine is nearly idle before a run: on a
    shared host other people's work would otherwise be measured as our contention.
    Returns (seconds waited, busy cores in the last sample)."""
    t0 = time.monotonic()
    while True:
        a = machine_cpu()
        time.sleep(sample_s)
        b = machine_cpu()
        busy = (b[0] - a[0]) / sample_s
        waited = time.monotonic() - t0
        if busy <= limit_cores or waited >= max_wait_s:
            return waited, busy


def run_one(server: str, n: int, args: argparse.Namespace, logdir: Path, tag: str
            ) -> dict[str, Any]:
    env = dict(os.environ, PYTHONPATH=pythonpath())
    waited, busy_before = wait_quiet(args.wait_quiet) if args.wait_quiet > 0 else (0.0, -1.0)
    up_port, port = free_port(), free_port()
    upstream = f"ws://127.0.0.1:{up_port}/v1/realtime"
    cmd, server_env, ready = server_command(server, port, upstream, args.extra_env,
                                            args.variants)
    log = open(logdir / f"{tag}.log", "wb")  # noqa: SIM115 (closed in finally)
    started: list[subprocess.Popen[Any]] = []
    procs: Procs | None = None
    spy: subprocess.Popen[bytes] | None = None
    try:
        # --pin: the server alone on CPU 0, its load generators on CPU 1 (taskset execs the
        # command, so the pids measured are the processes themselves).
        on_server, on_load = (["taskset", "-c", "0"], ["taskset", "-c", "1"]) if args.pin \
            else ([], [])
        echo = subprocess.Popen([*on_load, sys.executable, "-m", "bench.echo_upstream",
                                 "--port", str(up_port)], cwd=ROOT, env=env, stdout=log,
                                stderr=log)
        started.append(echo)
        # The server's working directory is scratch: nothing it writes lands in the repo.
        srv = subprocess.Popen([*on_server, *cmd], cwd=logdir, env=server_env, stdout=log,
                               stderr=log)
        started.append(srv)
        procs = Procs(echo, srv, f"http://127.0.0.1:{port}", f"http://127.0.0.1:{up_port}")
        wait_http(procs.echo_url + "/stats", echo, 30)
        wait_http(procs.base + ready, srv, 60)
        workers = int((args.variants or {}).get(server, {}).get("BENCH_WORKERS", "1"))
        for i in range(workers if workers > 1 else 0):
            # Every worker up before the callers come (the kernel spreads connections).
            wait_http(f"http://127.0.0.1:{internal_port(port, i)}{ready}", srv, 60)
        time.sleep(1.0)
        pids = tree_pids(srv.pid)  # the tree is whole once every worker is ready
        idle = tree_status(pids)
        idle_cpu = tree_cpu_s(pids)
        per = max(1, args.calls_per_client)
        sizes = [per] * (n // per) + ([n % per] if n % per else [])
        t_setup = time.monotonic()
        for size in sizes:
            # A variant with BENCH_API=live (and a Live profile) calls over GPT-Live;
            # Pipecat is called with its own signalling.
            api = "pipecat" if server == "pipecat" else \
                (args.variants or {}).get(server, {}).get("BENCH_API", "realtime")
            # A variant with BENCH_CALLERS=aiortc|light drives its server with those callers
            # (the callers' own cost compared within one run).
            callers = (args.variants or {}).get(server, {}).get("BENCH_CALLERS", args.callers)
            procs.clients.append(ClientProc(procs.base, size, log, env, args.encode_live,
                                            on_load, api, callers))
        for c in procs.clients:
            c.expect("ready", 30 + 3 * n)
        setup_s = time.monotonic() - t_setup
        time.sleep(args.settle)
        first = procs.snapshot()
        spy = start_profiler(args, srv.pid, logdir / f"{tag}.stacks") if args.profile else None
        per_second: list[tuple[float, float, int]] = []  # (t, cpu, rss kB) each second
        end = first.t + args.seconds
        while (now := time.monotonic()) < end:
            time.sleep(min(1.0, end - now))
            pids = tree_pids(srv.pid)
            per_second.append((time.monotonic(), tree_cpu_s(pids), tree_status(pids)["VmRSS"]))
        status = tree_status(tree_pids(srv.pid))
        last = procs.snapshot()
        if spy is not None:
            spy.wait(30)
        (logdir / f"{tag}.metrics.txt").write_text(last.metrics)
        r = analyse(server, n, first, last, idle, status, per_second, idle_cpu,
                    setup_s=setup_s)
        r["machine"]["busy_before_cores"] = busy_before
        r["machine"]["waited_for_quiet_s"] = round(waited, 1)
        if spy is not None:
            r["profile"] = summarise_profile(logdir / f"{tag}.stacks")
        return r
    finally:
        if spy is not None and spy.poll() is None:
            spy.kill()
        if procs is not None:
            for c in procs.clients:
                c.close()
        for p in reversed(started):
            stop(p)
        log.close()


def start_profiler(args: argparse.Namespace, pid: int, out: Path) -> subprocess.Popen[bytes]:
    """py-spy over the window (``pip install py-spy``; profiling only). Non-blocking sampling
    perturbs the process little, but a profiled run's CPU figures are marked as such."""
    spy = Path(sys.executable).with_name("py-spy")
    return subprocess.Popen(
        [str(spy), "record", "--pid", str(pid), "--duration", str(int(args.seconds)),
         "--rate", "100", "--nonblocking", "--threads", "--format", "raw", "-o", str(out),
         *(["--gil"] if args.profile == "gil" else [])],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


#: Leaf frames of a thread that is waiting, not working (py-spy's own idle detection misses
#: these with --nonblocking).
IDLE_LEAVES = ("EpollSelector.select (", "Condition.wait (", "_worker (concurrent/futures",
               "Event.wait (", "Queue.get (")
#: Where a busy sample's time goes (see ``category``); the rest is "asyncio / other".
CATEGORIES = (
    ("opus encode", ("Encoder.encode (", "Encoder._packet (")),
    ("opus decode", ("Decoder.decode (",)),
    ("srtp", ("pylibsrtp",)),
    ("socket send", ("sendto (", "_SelectorSocketTransport.write (")),
    ("thread hand-off", ("call_soon_threadsafe", "_write_to_self", "_read_from_self",
                         "Condition.notify", "ThreadPoolExecutor.submit", "run_in_executor")),
    ("metrics", ("prometheus_client",)),
    ("json / base64", ("json/", "base64 (", "b64encode", "b64decode")),
    ("gateway audio", ("gateway/audio/", "naive_relay.py", "AudioResampler")),
    ("gateway recording", ("gateway/recording/",)),
    ("gateway call logic", ("gateway/",)),
    ("pipecat", ("pipecat/",)),
    ("aiortc / aioice", ("aiortc/", "aioice/")),
    ("aiohttp", ("aiohttp/",)),
)


def category(names: list[str]) -> str:
    """The category of the frame nearest the leaf that matches one (numpy under the
    resampler counts as gateway audio; aiortc under a gateway task counts as aiortc)."""
    for fr in reversed(names):
        for cat, needles in CATEGORIES:
            if any(nd in fr for nd in needles):
                return cat
    return "asyncio / other"


def summarise_profile(path: Path, top: int = 20) -> dict[str, Any]:
    """Collapsed stacks -> where the busy samples went: by thread kind, by category, and
    per function (self and inclusive), as % of busy samples."""
    self_n: dict[str, float] = {}
    incl: dict[str, float] = {}
    threads: dict[str, float] = {}
    cats: dict[str, float] = {}
    busy = idle = 0.0
    with contextlib.suppress(OSError), open(path) as f:
        for line in f:
            stack, _, count = line.rstrip().rpartition(" ")
            frames = stack.split(";")
            if len(frames) < 2:
                continue
            n = float(count)
            if frames[-1].startswith(IDLE_LEAVES):
                idle += n
                continue
            busy += n
            kind = "main" if frames[0].endswith(": MainThread") else "other"  # "thread (t): x"
            threads[kind] = threads.get(kind, 0.0) + n
            names = [re.sub(r":\d+\)$", ")", fr) for fr in frames[1:]]  # drop line numbers
            self_n[names[-1]] = self_n.get(names[-1], 0.0) + n
            for nm in set(names):
                incl[nm] = incl.get(nm, 0.0) + n
            cat = category(names)
            cats[cat] = cats.get(cat, 0.0) + n
    if not busy:
        return {}

    def share(d: dict[str, float], k: int = top) -> list[tuple[str, float]]:
        return [(name, round(100 * v / busy, 1))
                for name, v in sorted(d.items(), key=lambda kv: -kv[1])[:k]]

    return {"busy_samples": busy, "idle_samples": idle, "threads_pct": dict(share(threads)),
            "categories_pct": dict(share(cats, len(cats))), "self_pct": share(self_n),
            "inclusive_pct": share(incl)}


def _ms(x: float | None) -> float | None:
    return None if x is None else x * 1000


def _us(x: float | None) -> float | None:
    return None if x is None else x * 1e6


def analyse(server: str, n: int, a: Snapshot, b: Snapshot, idle: dict[str, int],
            status: dict[str, int], per_second: list[tuple[float, float, int]], idle_cpu: float,
            *, setup_s: float) -> dict[str, Any]:
    wall = b.t - a.t
    cpu = b.cpu - a.cpu
    lag = diff_buckets(*[histograms(s.metrics, "gateway_event_loop_lag_seconds").get("", [])
                         for s in (b, a)])
    fa = histograms(a.metrics, "gateway_frame_processing_seconds")
    fb = histograms(b.metrics, "gateway_frame_processing_seconds")
    frame = {d: diff_buckets(fb[f"direction={d}"], fa.get(f"direction={d}"))
             for d in ("in", "out") if f"direction={d}" in fb}
    sent = sum(c["sent"] for c in b.clients) - sum(c["sent"] for c in a.clients)
    recv = sum(c["received"] for c in b.clients) - sum(c["received"] for c in a.clients)
    loud = sum(c["loud"] for c in b.clients) - sum(c["loud"] for c in a.clients)
    expected = sum(50 * (cb["t"] - ca["t"]) * cb["calls"] for ca, cb in zip(a.clients, b.clients,
                                                                            strict=True))
    echo_ms = b.echo["audio_ms_in"] - a.echo["audio_ms_in"]
    per_s = [(c1 - c0) / (t1 - t0) for (t0, c0, _), (t1, c1, _) in
             zip([(a.t, a.cpu, 0), *per_second[:-1]], per_second, strict=True) if t1 > t0]
    busy, steal, total = (x1 - x0 for x0, x1 in zip(a.machine, b.machine, strict=True))
    client_lag = [c["lag_p99"] for c in b.clients if c["lag_p99"] is not None]
    rss_mb = status["VmRSS"] / 1024
    idle_mb = idle["VmRSS"] / 1024
    return {
        "server": server, "calls": n, "window_s": round(wall, 3),
        "cpu_s": round(cpu, 3), "cores": cpu / wall, "cores_per_call": cpu / wall / n,
        "main_thread_cores": (b.main_cpu - a.main_cpu) / wall,
        # Seconds a second the event loop was ready to run but another process had the CPU.
        "main_thread_runqueue_wait": (b.main_wait - a.main_wait) / wall,
        "system_cores": (b.sys_cpu - a.sys_cpu) / wall,
        "cores_per_s_median": statistics.median(per_s) if per_s else None,
        "rss_idle_mb": idle_mb, "rss_mb": rss_mb, "rss_per_call_mb": (rss_mb - idle_mb) / n,
        "rss_window_growth_mb": ((per_second[-1][2] - per_second[0][2]) / 1024
                                 if per_second else None),
        "threads": status["Threads"], "threads_idle": idle["Threads"],
        "loop_lag_p50_ms": _ms(bucket_quantile(lag, 0.5)),
        "loop_lag_p99_ms": _ms(bucket_quantile(lag, 0.99)),
        "loop_lag_samples": lag[-1][1] if lag else 0,
        "loop_lag_max_bucket_ms": _ms(top_bucket(lag)),
        "frame_in_p50_us": _us(bucket_quantile(frame.get("in", []), 0.5)),
        "frame_in_p99_us": _us(bucket_quantile(frame.get("in", []), 0.99)),
        "frame_out_p50_us": _us(bucket_quantile(frame.get("out", []), 0.5)),
        "frame_out_p99_us": _us(bucket_quantile(frame.get("out", []), 0.99)),
        "inbound_pct": 100 * echo_ms / (sent * 20) if sent else None,
        "outbound_pct": 100 * recv / expected if expected else None,
        "outbound_audio_pct": 100 * loud / expected if expected else None,
        "sent_frames": sent, "received_frames": recv, "echo_ms": echo_ms,
        "client": {
            "processes": len(b.clients), "cores": (b.client_cpu - a.client_cpu) / wall,
            "lag_p99_ms": _ms(max(client_lag)) if client_lag else None,
            "not_connected": sum(c["not_connected"] for c in b.clients),
            "rtp_lost": sum(c["rtp_lost"] for c in b.clients)
            - sum(c["rtp_lost"] for c in a.clients),
            "ts_gap_frames": sum(c["skipped"] for c in b.clients)
            - sum(c["skipped"] for c in a.clients),
            "outbound_drift_max_ms": max(c["late_max_ms"] for c in b.clients),
            "server_reported_lost": sum(c["remote_lost"] for c in b.clients)
            - sum(c["remote_lost"] for c in a.clients),
            "setup_s": setup_s,
        },
        "echo_cores": (b.echo_cpu - a.echo_cpu) / wall,
        "machine": {"busy_cores": busy / wall, "steal_cores": steal / wall,
                    "accounted_cores": total / wall,
                    # What else ran on the machine (other users of a shared host), approximate:
                    # /proc/stat is tick-sampled while per-process times are exact.
                    "foreign_cores": max(0.0, busy - cpu - (b.client_cpu - a.client_cpu)
                                         - (b.echo_cpu - a.echo_cpu)) / wall,
                    "cpus": os.cpu_count()},
        "setup_cpu_s": round(a.cpu - idle_cpu, 3),
        "server_counters": watched_deltas(a.metrics, b.metrics),
        "calls_per_worker": calls_per_worker(b.metrics),
    }


# -- summary ----------------------------------------------------------------------------

SUMMARY_FIELDS = ("cores_per_call", "cores", "main_thread_cores", "main_thread_runqueue_wait",
                  "rss_per_call_mb", "rss_mb",
                  "loop_lag_p50_ms", "loop_lag_p99_ms", "frame_in_p50_us", "frame_in_p99_us",
                  "frame_out_p50_us", "frame_out_p99_us", "inbound_pct", "outbound_pct",
                  "outbound_audio_pct")
RATIO_FIELDS = ("cores_per_call", "rss_per_call_mb", "loop_lag_p99_ms")
#: Servers every other one is compared with, within each repeat (when in the run).
REFERENCES = ("naive", "pipecat")


def _median(xs: list[float | None]) -> float | None:
    vals = [x for x in xs if x is not None]
    return statistics.median(vals) if vals else None


def summarise(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    keys = sorted({(r["calls"], r["server"]) for r in runs},
                  key=lambda k: (k[0], k[1] == "naive", k[1] != "gateway", k[1]))
    for n, server in keys:
        mine = [r for r in runs if r["calls"] == n and r["server"] == server]
        row: dict[str, Any] = {"server": server, "calls": n, "repeats": len(mine)}
        for f in SUMMARY_FIELDS:
            row[f] = _median([r.get(f) for r in mine])
        row["client_cores"] = _median([r["client"]["cores"] for r in mine])
        row["echo_cores"] = _median([r.get("echo_cores") for r in mine])
        row["client_lag_p99_ms"] = _median([r["client"]["lag_p99_ms"] for r in mine])
        row["machine_busy_cores"] = _median([r["machine"]["busy_cores"] for r in mine])
        row["foreign_cores"] = _median([r["machine"].get("foreign_cores") for r in mine])
        # A run during which the whole machine was busy measured the host, not the server.
        row["saturated_runs"] = sum(r["machine"]["busy_cores"] >= 0.95 * r["machine"]["cpus"]
                                    for r in mine)
        for reference in REFERENCES:
            if server == reference:
                continue
            for f in RATIO_FIELDS:
                # Ratio within one repeat (same machine moment), then the median of ratios.
                ratios = []
                for r in mine:
                    ref = [x for x in runs if x["server"] == reference and x["calls"] == n
                           and x["repeat"] == r["repeat"]]
                    if ref and r.get(f) is not None and ref[0].get(f):
                        ratios.append(r[f] / ref[0][f])
                if ratios or reference == "naive":
                    row[f"{f}_vs_{reference}"] = _median(list(ratios))
        rows.append(row)
    return rows


def _f(x: float | None, spec: str) -> str:
    return "-" if x is None else format(x, spec)


def table(rows: list[dict[str, Any]]) -> str:
    # "x pipecat" only in a run with Pipecat in it.
    vs_pipecat = any("cores_per_call_vs_pipecat" in r for r in rows)
    head = ("| server | N | cores/call | x naive | " + ("x pipecat | " if vs_pipecat else "")
            + "RSS/call MB | loop lag p50 / p99 ms | "
            "frame in p50 / p99 µs | frame out p50 / p99 µs | in % | out % | out audio % | "
            "client / echo cores | loop waited for CPU s/s | machine busy / other load cores | "
            "runs saturated |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        lines.append(
            f"| {r['server']} | {r['calls']} | {_f(r['cores_per_call'], '.4f')} | "
            f"{_f(r.get('cores_per_call_vs_naive'), '.2f')} | "
            + (f"{_f(r.get('cores_per_call_vs_pipecat'), '.2f')} | " if vs_pipecat else "") +
            f"{_f(r['rss_per_call_mb'], '.2f')} | "
            f"{_f(r['loop_lag_p50_ms'], '.2f')} / {_f(r['loop_lag_p99_ms'], '.1f')} | "
            f"{_f(r['frame_in_p50_us'], '.0f')} / {_f(r['frame_in_p99_us'], '.0f')} | "
            f"{_f(r['frame_out_p50_us'], '.0f')} / {_f(r['frame_out_p99_us'], '.0f')} | "
            f"{_f(r['inbound_pct'], '.1f')} | {_f(r['outbound_pct'], '.1f')} | "
            f"{_f(r['outbound_audio_pct'], '.1f')} | {_f(r['client_cores'], '.2f')} / "
            f"{_f(r.get('echo_cores'), '.2f')} | {_f(r.get('main_thread_runqueue_wait'), '.2f')} | "
            f"{_f(r['machine_busy_cores'], '.2f')} / {_f(r['foreign_cores'], '.2f')} | "
            f"{r['saturated_runs']}/{r['repeats']} |")
    return "\n".join(lines)


# -- machine ----------------------------------------------------------------------------


def machine_info() -> dict[str, Any]:
    model = ""
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem = ""
    with contextlib.suppress(OSError), open("/proc/meminfo") as f:
        mem = f.readline().split(":", 1)[1].strip()
    versions: dict[str, str] = {"python": platform.python_version()}
    for dist in ("aiortc", "aioice", "av", "aiohttp", "numpy", "prometheus-client", "uvloop"):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            versions[dist] = importlib.metadata.version(dist)
    return {"nproc": len(os.sched_getaffinity(0)), "cpu_model": model, "mem_total": mem,
            "kernel": platform.release(), "versions": {**versions, "libopus": opus.version()}}


def pipecat_versions() -> dict[str, str]:
    """The Pipecat venv's versions of what it runs (its interpreter asked, not ours)."""
    code = ("import importlib.metadata as m, json, platform, sys; print(json.dumps("
            "{'python': platform.python_version(), **{d: m.version(d) for d in sys.argv[1:]}}))")
    out = subprocess.run([str(PIPECAT_PYTHON), "-c", code, *PIPECAT_DISTS], capture_output=True,
                         text=True, check=True, timeout=60).stdout
    return dict(json.loads(out))


# -- main -------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.calls", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--calls", default="1,5,10,20", help="comma-separated N (default 1,5,10,20)")
    p.add_argument("--seconds", type=float, default=20.0, help="measured window per run")
    p.add_argument("--settle", type=float, default=2.0,
                   help="seconds after every call connected before the window opens")
    p.add_argument("--repeat", type=int, default=None,
                   help="interleaved repeats; medians reported (default 3, quick 3)")
    p.add_argument("--servers", default="gateway,naive")
    p.add_argument("--calls-per-client", type=int, default=10,
                   help="calls per client process (a client process tops out near one core)")
    p.add_argument("--callers", choices=("light", "aiortc"), default="light",
                   help="light (default): aiortc sets each call up (signalling, ICE, DTLS, "
                        "data channel), then one 20 ms clock per caller process sends every "
                        "call's RTP and judges what arrives without aiortc's per-call sender "
                        "and receiver (bench/light_media.py); aiortc: aiortc's own")
    p.add_argument("--encode-live", action="store_true",
                   help="callers encode their tone live (default: a pre-encoded Opus loop, "
                        "which saves the shared machine ~0.01 core per call; needs "
                        "--callers aiortc)")
    p.add_argument("--gateway-env", action="append", default=[], metavar="KEY=VALUE",
                   help="extra environment for the gateway (e.g. to measure a setting)")
    p.add_argument("--variant", action="append", default=[], metavar="NAME:KEY=VALUE,...",
                   help="a gateway with other settings, run as server NAME in the same bench "
                        "(e.g. --variant asyncio:GATEWAY_SERVER_EVENT_LOOP=asyncio --servers "
                        "gateway,asyncio,naive): a setting's effect measured within one run")
    p.add_argument("--revision", action="append", default=[], metavar="NAME=REV",
                   help="the gateway's source at git revision REV, run as server NAME in the "
                        "same bench (e.g. --revision before=HEAD~3 --servers before,gateway): "
                        "a change against its parent within one run")
    p.add_argument("--pin", action="store_true",
                   help="server alone on CPU 0, echo upstream and callers on CPU 1: what one "
                        "process does with a core of its own (a 2-core host)")
    p.add_argument("--wait-quiet", type=float, default=None, metavar="S",
                   help="before each run, wait up to S seconds for the machine to be nearly "
                        "idle (a shared host); 0: don't wait (default 60, quick 0: the "
                        "guard is a ratio within one run and needs no quiet machine)")
    p.add_argument("--profile", choices=("all", "gil"), default=None,
                   help="sample the server with py-spy during each window (threads; 'gil': "
                        "only samples holding the GIL); summary in the JSON, stacks in the logs")
    p.add_argument("--quick", action="store_true",
                   help="N=5, 8 s, gateway and naive; exit 1 if the cost ratio is over the limit")
    p.add_argument("--max-ratio", type=float, default=0.6,
                   help="quick mode: highest allowed gateway/naive cores per call")
    p.add_argument("--skip-above", action="append", default=[], metavar="NAME=N",
                   help="don't run server NAME above N calls (e.g. pipecat=20: past where it "
                        "keeps up, the others go on to larger N in the same run)")
    p.add_argument("--out", type=Path, default=None, help="JSON output (default bench/results)")
    args = p.parse_args(argv)
    if args.quick:
        args.calls, args.seconds, args.servers = "5", 8.0, "gateway,naive"
        args.settle = min(args.settle, 1.5)
    args.repeat = args.repeat or 3
    if args.encode_live and args.callers == "light":
        p.error("--encode-live needs --callers aiortc (light callers send a pre-encoded loop)")
    if args.wait_quiet is None:
        args.wait_quiet = 0.0 if args.quick else 60.0
    args.ns = [int(x) for x in args.calls.split(",") if x.strip()]
    args.server_list = [s for s in args.servers.split(",") if s]
    args.variants = {}
    for spec in args.variant:  # NAME:KEY=VALUE[,KEY=VALUE...]: the gateway with other settings
        name, _, kvs = spec.partition(":")
        args.variants[name] = dict(kv.split("=", 1) for kv in kvs.split(",") if kv)
    args.revisions = dict(spec.split("=", 1) for spec in args.revision)
    for name in args.revisions:
        args.variants.setdefault(name, {})
    for s in args.server_list:
        if s not in SERVERS and s not in args.variants:
            p.error(f"unknown server {s!r} (known: {', '.join(SERVERS)} and --variant names)")
    if "pipecat" in args.server_list and not PIPECAT_PYTHON.exists():
        p.error(f"server 'pipecat' runs in its own venv and {PIPECAT_PYTHON} is missing: "
                "make bench-pipecat-venv (or set BENCH_PIPECAT_PYTHON)")
    args.extra_env = dict(kv.split("=", 1) for kv in args.gateway_env)
    args.skip_above = {k: int(v) for k, v in (kv.split("=", 1) for kv in args.skip_above)}
    args.out = args.out or RESULTS / ("calls-quick.json" if args.quick else "calls.json")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logdir = Path(tempfile.mkdtemp(prefix="bench-calls-"))
    command = "python -m bench.calls " + " ".join(sys.argv[1:] if argv is None else argv)
    started = datetime.datetime.now(datetime.UTC)
    print(f"{command}\nlogs: {logdir}", flush=True)
    source = snapshot_gateway(logdir)
    for name, rev in args.revisions.items():
        source[f"revision_{name}"] = snapshot_revision(name, rev, logdir)
    print(f"gateway source: {source}", flush=True)
    runs: list[dict[str, Any]] = []
    failures: list[str] = []
    for rep in range(args.repeat):
        for n in args.ns:
            order = args.server_list if rep % 2 == 0 else list(reversed(args.server_list))
            order = [s for s in order if n <= args.skip_above.get(s, n)]
            for server in order:
                tag = f"{server}-n{n}-r{rep}"
                try:
                    r = run_one(server, n, args, logdir, tag)
                except Exception as e:  # one broken run is reported, the rest go on
                    failures.append(f"{tag}: {e!r}")
                    print(f"  {tag}: FAILED {e!r} (log {logdir / (tag + '.log')})", flush=True)
                    continue
                r["repeat"] = rep
                runs.append(r)
                c = r["client"]
                print(f"  {tag}: {r['cores_per_call']:.4f} cores/call (main thread "
                      f"{r['main_thread_cores']:.2f} cores, waited for a CPU "
                      f"{r['main_thread_runqueue_wait']:.2f} s/s), lag p99 "
                      f"{_f(r['loop_lag_p99_ms'], '.1f')} ms, in {_f(r['inbound_pct'], '.1f')} %,"
                      f" out {_f(r['outbound_pct'], '.1f')} % (skipped {c['ts_gap_frames']}, "
                      f"drift {c['outbound_drift_max_ms']:.0f} ms), clients "
                      f"{c['cores']:.2f} cores (lag p99 {_f(c['lag_p99_ms'], '.0f')} ms), echo "
                      f"{r['echo_cores']:.2f}, machine busy {r['machine']['busy_cores']:.2f}"
                      f" (other load {r['machine']['foreign_cores']:.2f})",
                      flush=True)
    rows = summarise(runs)
    result: dict[str, Any] = {
        "benchmark": "calls", "command": command, "date": started.isoformat(timespec="seconds"),
        "machine": machine_info(), "source": source,
        **({"pipecat_versions": pipecat_versions()} if "pipecat" in args.server_list else {}),
        "settings": {
            "calls": args.ns, "seconds": args.seconds, "settle": args.settle,
            "repeat": args.repeat, "servers": args.server_list,
            "calls_per_client": args.calls_per_client, "gateway_env": args.extra_env,
            "variants": args.variants, "skip_above": args.skip_above,
            "encode_live": args.encode_live, "callers": args.callers,
            "wait_quiet": args.wait_quiet, "pin": args.pin,
            "profile": args.profile},
        "summary": rows, "runs": runs, "failures": failures,
    }
    status = 1 if failures else 0
    if args.quick:
        g = next((r for r in rows if r["server"] == "gateway"), None)
        ratio = g.get("cores_per_call_vs_naive") if g else None
        ok = ratio is not None and ratio <= args.max_ratio
        result["guard"] = {"ratio": ratio, "max_ratio": args.max_ratio, "ok": ok}
        if not ok:
            status = 1
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print()
    print(table(rows))
    print(f"\nresults: {args.out}")
    if failures:
        print("failures:\n  " + "\n  ".join(failures))
    if args.quick:
        g = result["guard"]
        verdict = "OK" if g["ok"] else "FAIL"
        print(f"guard: gateway/naive cores per call = {_f(g['ratio'], '.2f')} "
              f"(limit {args.max_ratio}) {verdict}")
    return status


if __name__ == "__main__":
    raise SystemExit(main())
