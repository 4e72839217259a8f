"""A real gateway process (and the bench's echo upstream) on 127.0.0.1 for the fuzzers."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from bench.calls import free_port, stop, wait_http

ROOT = Path(__file__).resolve().parents[2]
API_KEY = "sk-gw-fuzz-key"
ADMIN = "admin-fuzz-token"
TWILIO = "twilio-fuzz-auth-token"
#: Every secret the gateway knows: none may appear in any response.
SECRETS = (API_KEY, ADMIN, TWILIO, "fuzz-token-secret", "sk-upstream-fuzz-never-shown")


@dataclass
class GatewayProc:
    base: str
    pid: int
    proc: subprocess.Popen[bytes]
    log: Path


@contextlib.contextmanager
def gateway_process(extra_env: dict[str, str] | None = None) -> Iterator[GatewayProc]:
    """Echo upstream + ``python -m gateway serve`` with every feature on (demo, admin,
    Twilio, recordings), both in a scratch directory; stopped (SIGTERM) on exit."""
    scratch = Path(tempfile.mkdtemp(prefix="gw-fuzz-"))
    up_port, port = free_port(), free_port()
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    gw_env = dict(env, GATEWAY_HOST="127.0.0.1", GATEWAY_PORT=str(port),
                  GATEWAY_API_KEYS=API_KEY, GATEWAY_ADMIN_TOKEN=ADMIN,
                  GATEWAY_TOKEN_SECRET="fuzz-token-secret", TWILIO_AUTH_TOKEN=TWILIO,
                  OPENAI_API_KEY="sk-upstream-fuzz-never-shown",
                  GATEWAY_UPSTREAM_URL=f"ws://127.0.0.1:{up_port}/v1/realtime",
                  GATEWAY_DEMO_ENABLED="true", GATEWAY_RECORDINGS_DIR=str(scratch / "rec"))
    gw_env.update(extra_env or {})
    log = scratch / "gateway.log"
    started: list[subprocess.Popen[bytes]] = []
    with open(log, "wb") as out:
        try:
            echo = subprocess.Popen([sys.executable, "-m", "bench.echo_upstream", "--port",
                                     str(up_port)], cwd=ROOT, env=env, stdout=out, stderr=out)
            started.append(echo)
            srv = subprocess.Popen([sys.executable, "-m", "gateway", "serve"], cwd=scratch,
                                   env=gw_env, stdout=out, stderr=out)
            started.append(srv)
            wait_http(f"http://127.0.0.1:{up_port}/stats", echo, 30)
            wait_http(f"http://127.0.0.1:{port}/healthz", srv, 60)
            yield GatewayProc(f"http://127.0.0.1:{port}", srv.pid, srv, log)
        finally:
            for p in reversed(started):
                stop(p)
    shutil.rmtree(scratch, ignore_errors=True)
