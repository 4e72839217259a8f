"""``serve --workers N``: N gateway instances on one host behind one listening port.

One CPython process tops out near one core (GIL), so capacity grows by processes. The
supervisor here starts N workers that all bind the public port with ``SO_REUSEPORT`` (the
kernel spreads new connections across them) and each its own internal port on loopback.
They share state through the registry interface, exactly as instances on several hosts do:
a private ``redis-server`` on a Unix socket is started for them unless ``[registry]`` already
names one. A request about a call that lands on the wrong worker is forwarded to its owner,
and ``/metrics`` on any worker merges every worker's series (label ``worker``).
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from gateway.config import Config

log = logging.getLogger("gateway.workers")
INTERNAL_PORT_OFFSET = 100


def internal_port(public_port: int, index: int) -> int:
    return public_port + INTERNAL_PORT_OFFSET + index


def _start_redis(tmp: Path) -> subprocess.Popen[bytes]:
    exe = shutil.which("redis-server")
    if exe is None:
        raise SystemExit("--workers needs shared state: install redis-server (make sysdeps) "
                         "or set [registry] backend = \"redis\" with a url")
    sock = tmp / "redis.sock"
    proc = subprocess.Popen([exe, "--port", "0", "--unixsocket", str(sock),
                             "--unixsocketperm", "700", "--save", "", "--appendonly", "no"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while not sock.exists():  # noqa: ASYNC110 - not async: a start-up wait with a deadline
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit("the private redis-server did not start")
        time.sleep(0.05)
    return proc


def run(config: Config, workers: int, argv: list[str], base_env: dict[str, str]) -> int:
    """Supervise ``workers`` worker processes until SIGTERM/SIGINT; returns their worst exit."""
    tmp = Path(tempfile.mkdtemp(prefix="gateway-workers-"))
    redis: subprocess.Popen[bytes] | None = None
    env = dict(base_env)
    if config.registry.backend == "memory":
        redis = _start_redis(tmp)
        env["GATEWAY_REGISTRY_BACKEND"] = "redis"
        env["GATEWAY_REGISTRY_URL"] = f"unix://{tmp / 'redis.sock'}"
        log.info("workers share a private redis-server on %s", tmp / "redis.sock")
    port = config.server.port
    peers = ",".join(f"http://127.0.0.1:{internal_port(port, i)}" for i in range(workers))
    procs: list[subprocess.Popen[bytes]] = []
    for i in range(workers):
        wenv = dict(env, GATEWAY_SERVER_INSTANCE_ID=f"w{i}",
                    GATEWAY_SERVER_INTERNAL_URL=f"http://127.0.0.1:{internal_port(port, i)}",
                    GATEWAY_SERVER_WORKER_PEERS=peers, GATEWAY_SERVER_WORKER_INDEX=str(i),
                    GATEWAY_SERVER_REUSE_PORT="true")
        procs.append(subprocess.Popen([sys.executable, "-m", "gateway", "serve", *argv],
                                      env=wenv))
    stopping = False

    def stop(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    worst = 0
    try:
        for p in procs:
            rc = p.wait()
            worst = max(worst, abs(rc))
            if not stopping:  # one worker died: take the others down too (no half service)
                log.error("worker exited with %d; stopping the others", rc)
                stop(signal.SIGTERM, None)
    finally:
        if redis is not None:
            redis.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                redis.wait(5)
        shutil.rmtree(tmp, ignore_errors=True)
    return worst
