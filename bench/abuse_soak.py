"""Abuse soak (issue 23): the attacks of ``bench.abuse_attacks`` for ``--minutes`` next to 10
healthy full-duplex calls, against a gateway process with the bench's echo upstream.

    python -m bench.abuse_soak [--minutes 5] [--calls 10] [--settle 60]

Asserts (exit 1 otherwise, the report says which): every healthy call stayed connected and
its frames were delivered both ways (caller -> upstream audio, and agent frames back, over
the abuse window, >= 99 % of real time, no RTP lost); the gateway's RSS back within 10 % of
its start (with the healthy calls up) and its open fds back to that baseline once the abuse
ends (there is no task-count endpoint: RSS and fds are what is read, from /proc/PID); no
5xx; no secret in any response or log line; every attack defeated. Per attack it reports
how often each outcome happened (``refused``/``closed``/``released_by_deadline``/
``closed_by_deadline``/``valid_...``/``accepted``): an attack the gateway does not defeat
shows as ``accepted``/``held_...`` (``NOT_DEFEATED``), is listed and fails the run. Writes
``bench/results/abuse-soak.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp

from bench import abuse_attacks as A
from bench.calls import (
    API_KEY,
    ClientProc,
    free_port,
    http_get,
    proc_cpu_s,
    proc_status,
    stop,
    wait_http,
)

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "results" / "abuse-soak.json"
TOML = f"""
default_profile = "default"
[profiles.default]
model = "gpt-realtime"
[profiles.locked]
model = "{A.LOCKED_MODEL}"
locked = ["instructions", "tools"]
"""


#: Outcomes that mean the gateway did not defeat an attack (``bench.abuse_attacks``).
NOT_DEFEATED = ("accepted", "held_open", "held_past_deadline", "answered_not_listed",
                "hung_client_side_timeout")


def fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def start(scratch: Path, log: Any) -> tuple[subprocess.Popen[bytes], subprocess.Popen[bytes],
                                              str, str]:
    up_port, port = free_port(), free_port()
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    (scratch / "gateway.toml").write_text(TOML)
    gw_env = dict(env, GATEWAY_CONFIG=str(scratch / "gateway.toml"), GATEWAY_HOST="127.0.0.1",
                  GATEWAY_PORT=str(port), GATEWAY_API_KEYS=API_KEY,
                  GATEWAY_ADMIN_TOKEN=A.ADMIN, GATEWAY_TOKEN_SECRET=A.TOKEN_SECRET,
                  TWILIO_AUTH_TOKEN=A.TWILIO, OPENAI_API_KEY=A.UPSTREAM_KEY,
                  GATEWAY_UPSTREAM_URL=f"ws://127.0.0.1:{up_port}/v1/realtime",
                  GATEWAY_DEMO_ENABLED="true", GATEWAY_SERVER_MAX_CALLS="60",
                  GATEWAY_RECORDINGS_DIR=str(scratch / "rec"))
    echo = subprocess.Popen([sys.executable, "-m", "bench.echo_upstream", "--port",
                             str(up_port)], cwd=ROOT, env=env, stdout=log, stderr=log)
    srv = subprocess.Popen([sys.executable, "-m", "gateway", "serve", "--config",
                            str(scratch / "gateway.toml")], cwd=scratch, env=gw_env,
                           stdout=log, stderr=log)
    wait_http(f"http://127.0.0.1:{up_port}/stats", echo, 30)
    wait_http(f"http://127.0.0.1:{port}/healthz", srv, 60)
    return echo, srv, f"http://127.0.0.1:{port}", f"http://127.0.0.1:{up_port}"


async def attack_loop(name: str, t: A.Target, seconds: float, outcomes: Counter[str],
                      stop_at: float, index: int = 0) -> None:
    fn, every = A.ATTACKS[name]
    rng = random.Random(f"{name}#{index}" if index else name)
    await asyncio.sleep(index * every)  # more than one loop of an attack: staggered
    loop = asyncio.get_running_loop()
    while loop.time() < stop_at:
        t0 = loop.time()
        try:
            async with asyncio.timeout(max(30.0, every * 2)):
                outcomes[await fn(t, rng)] += 1
        except TimeoutError:
            outcomes["hung_client_side_timeout"] += 1
        except (aiohttp.ClientError, OSError) as e:
            outcomes[f"closed:{type(e).__name__}"] += 1
        await A.end_calls(t)
        await asyncio.sleep(max(0.0, every - (loop.time() - t0)))


async def abuse(base: str, pid: int, seconds: float) -> tuple[dict[str, Counter[str]],
                                                                list[str]]:
    outcomes: dict[str, Counter[str]] = {n: Counter() for n in A.ATTACKS}
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(timeout=timeout) as http:
        t = A.Target(base, pid, http)
        stop_at = asyncio.get_running_loop().time() + seconds
        await asyncio.gather(*(attack_loop(n, t, seconds, outcomes[n], stop_at, i)
                               for n in A.ATTACKS for i in range(A.LOOPS.get(n, 1))))
        await A.end_calls(t)
        return outcomes, t.leaks


def settle(pid: int, rss0: int, fd0: int, max_s: float) -> tuple[float, int, int]:
    """Wait (up to ``max_s``) for fds back to baseline and RSS within 10 %."""
    t0 = time.monotonic()
    while True:
        rss, fd = proc_status(pid)["VmRSS"], fds(pid)
        if (fd <= fd0 and rss <= rss0 * 1.10) or time.monotonic() - t0 > max_s:
            return time.monotonic() - t0, rss, fd
        time.sleep(1.0)


def delivery(a: dict[str, Any], b: dict[str, Any], echo_a: dict[str, Any],
             echo_b: dict[str, Any], calls: int) -> dict[str, Any]:
    secs = b["t"] - a["t"]
    expected = calls * secs / 0.02
    return {"window_s": round(secs, 1),
            "frames_sent": b["sent"] - a["sent"], "frames_expected": round(expected),
            "upstream_audio_ratio": round((echo_b["audio_ms_in"] - echo_a["audio_ms_in"])
                                          / 20 / max(1, b["sent"] - a["sent"]), 4),
            "frames_received_ratio": round((b["received"] - a["received"]) / expected, 4),
            "loud_ratio": round((b["loud"] - a["loud"]) / max(1, b["received"] - a["received"]),
                                4),
            "rtp_lost": b["rtp_lost"] - a["rtp_lost"], "skipped": b["skipped"] - a["skipped"],
            "not_connected": b["not_connected"]}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.abuse_soak", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--minutes", type=float, default=5.0)
    p.add_argument("--calls", type=int, default=10)
    p.add_argument("--settle", type=float, default=60.0,
                   help="max seconds to wait for RSS/fds after the abuse")
    p.add_argument("--out", type=Path, default=OUT)
    args = p.parse_args(argv)
    scratch = Path(tempfile.mkdtemp(prefix="gw-abuse-"))
    log = open(scratch / "servers.log", "wb")  # noqa: SIM115 (closed in finally)
    procs: list[subprocess.Popen[bytes]] = []
    client: ClientProc | None = None
    try:
        echo, srv, base, echo_url = start(scratch, log)
        procs += [echo, srv]
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        client = ClientProc(base, args.calls, log, env)
        client.expect("ready", 60 + 5 * args.calls)
        time.sleep(3)
        rss0, fd0 = proc_status(srv.pid)["VmRSS"], fds(srv.pid)
        client.send("mark")
        m0, e0 = client.expect("mark", 30), json.loads(http_get(echo_url + "/stats"))
        t_abuse, cpu0 = time.monotonic(), proc_cpu_s(srv.pid)
        outcomes, leaks = asyncio.run(abuse(base, srv.pid, args.minutes * 60))
        abuse_s = time.monotonic() - t_abuse
        cores = (proc_cpu_s(srv.pid) - cpu0) / abuse_s
        rss_peak = proc_status(srv.pid)["VmRSS"]
        fd_peak = fds(srv.pid)
        client.send("mark")
        m1, e1 = client.expect("mark", 30), json.loads(http_get(echo_url + "/stats"))
        waited, rss1, fd1 = settle(srv.pid, rss0, fd0, args.settle)
        alive = srv.poll() is None
    finally:
        if client is not None:
            client.close()
        for proc in reversed(procs):
            stop(proc)
        log.close()
    text = (scratch / "servers.log").read_text(errors="replace")
    leaks += [f"log: secret #{i}" for i, s in enumerate(A.SECRETS) if s in text]
    d = delivery(m0, m1, e0, e1, args.calls)
    server_errors = {n: sum(v for k, v in c.items() if k.startswith("server_error"))
                     for n, c in outcomes.items()}
    accepted = sorted(n for n, c in outcomes.items() if any(k.startswith(NOT_DEFEATED)
                                                             for k in c))
    checks = {
        "gateway_alive": alive,
        "healthy_calls_connected": d["not_connected"] == 0,
        "caller_to_upstream_delivered": d["upstream_audio_ratio"] >= 0.99,
        "agent_to_caller_delivered": d["frames_received_ratio"] >= 0.99 and d["rtp_lost"] == 0,
        "rss_back_within_10pct": rss1 <= rss0 * 1.10,
        "fds_back_to_baseline": fd1 <= fd0,
        "no_5xx": sum(server_errors.values()) == 0,
        "no_secret": not leaks,
        "every_attack_defeated": not accepted,
    }
    result = {
        "minutes": args.minutes, "abuse_s": round(abuse_s, 1), "healthy_calls": args.calls,
        "gateway_cores_during_abuse": round(cores, 3),
        "malloc_mmap_threshold_bytes": os.environ.get(
            "GATEWAY_SERVER_MALLOC_MMAP_THRESHOLD_BYTES", "default (131072)"),
        "delivery": d, "rss_kb": {"start": rss0, "peak": rss_peak, "after": rss1},
        "fds": {"start": fd0, "peak": fd_peak, "after": fd1}, "settle_s": round(waited, 1),
        "tracebacks_in_log": text.count("Traceback"), "leaks": leaks,
        "slow_memory_sweeps_ms": [float(m) for m in re.findall(
            r"memory sweep after releases: \d+ unreachable objects, ([\d.]+) ms", text)],
        "outcomes": {n: dict(c) for n, c in outcomes.items()},
        "attacks_not_defeated": accepted, "checks": checks, "log": str(scratch / "servers.log"),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"abuse soak: {abuse_s:.0f} s of abuse next to {args.calls} healthy calls")
    print(f"  delivery: {d}")
    print(f"  gateway CPU during the abuse: {cores:.2f} cores")
    print(f"  RSS {rss0 / 1024:.0f} -> peak {rss_peak / 1024:.0f} -> {rss1 / 1024:.0f} MB after "
          f"{waited:.0f} s; fds {fd0} -> peak {fd_peak} -> {fd1}")
    for n, c in outcomes.items():
        print(f"  {n:40s} " + ", ".join(f"{k} x{v}" for k, v in sorted(c.items())))
    print(f"  attacks not defeated on this build: {', '.join(accepted) or 'none'}")
    for k, v in checks.items():
        print(f"  {'ok  ' if v else 'FAIL'} {k}")
    print(f"wrote {args.out}")
    with contextlib.suppress(OSError):
        if all(checks.values()):
            (scratch / "servers.log").unlink()
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
