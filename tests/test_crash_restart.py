"""``kill -9`` of a gateway that started the embedded engine, then a restart on the same
ports (issue 23, finding 8): the engine dies with the gateway, so the restart comes up."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.gateway_fixtures import API_KEY, free_port
from tests.waiting import until, until_ready

ROOT = Path(__file__).resolve().parent.parent


def children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(x) for x in text.split()]


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
async def test_sigkill_of_the_gateway_takes_its_engine_and_a_restart_comes_up(
        tmp_path: Path) -> None:
    port, engine_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if k != "OPENAI_API_KEY"}
    env.update(GATEWAY_API_KEYS=API_KEY, GATEWAY_TOKEN_SECRET="s", GATEWAY_PORT=str(port),
               GATEWAY_RECORDINGS_DIR=str(tmp_path), GATEWAY_DEMO_ENABLED="true")
    argv = [sys.executable, "-m", "gateway", "serve", "--with-local-engine-if-no-key",
            "--local-engine-port", str(engine_port)]
    base = f"http://127.0.0.1:{port}"
    procs: list[asyncio.subprocess.Process] = []
    engines: list[int] = []
    try:
        for attempt in range(2):
            proc = await asyncio.create_subprocess_exec(
                *argv, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            procs.append(proc)
            # Up means: the gateway answers, and its engine (a child) does too.
            await until_ready([base, f"http://127.0.0.1:{engine_port}"], proc,
                              path="/healthz", what=f"start {attempt + 1} is up")
            mine = children(proc.pid)
            assert mine, "the engine runs as the gateway's child"
            engines += mine
            os.kill(proc.pid, signal.SIGKILL)
            await proc.wait()
            # The engine goes with it (no orphan holding its port for the restart).
            await until(lambda pids=tuple(engines): not any(alive(p) for p in pids), 30,
                        "the engine died with the gateway")
    finally:
        for p in procs:
            if p.returncode is None:
                p.kill()
                await p.wait()
        for pid in engines:  # only when the test failed: never leave an orphan behind
            if alive(pid):
                os.kill(pid, signal.SIGKILL)


def test_make_run_honours_the_documented_variables() -> None:
    """``GATEWAY_PORT=18080 make run`` listens on 18080 (the Makefile's PORT used to win);
    PORT/HOST on make's command line still work; PORT/HOST from the environment do not."""
    def dry_run(extra_env: dict[str, str], *args: str) -> str:
        env = {k: v for k, v in os.environ.items()
               if k not in ("GATEWAY_PORT", "GATEWAY_HOST", "PORT", "HOST")}
        env.update(extra_env)
        out = subprocess.run(["make", "-n", "-o", "install", "run", *args], cwd=ROOT, env=env,
                             capture_output=True, text=True, check=True).stdout
        return next(line for line in out.splitlines() if "GATEWAY_PORT=" in line)

    line = dry_run({"GATEWAY_PORT": "18080", "GATEWAY_HOST": "0.0.0.0", "PORT": "5000",
                    "HOST": "my-laptop"})
    assert "GATEWAY_PORT=18080" in line and "GATEWAY_HOST=0.0.0.0" in line, line
    assert "GATEWAY_PORT=8080" in dry_run({}) and "GATEWAY_HOST=127.0.0.1" in dry_run({})
    assert "GATEWAY_PORT=9000" in dry_run({"GATEWAY_PORT": "18080"}, "PORT=9000")
