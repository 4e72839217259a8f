"""Fixtures shared by every test. Every test runs under a task-leak check."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator

import pytest


@pytest.fixture(autouse=True)
async def no_leaked_tasks() -> AsyncIterator[None]:
    """Fail a test that leaves tasks running on its event loop.

    Tasks that aiortc/aioice own internally are still ours to stop: closing a peer
    connection must end them, so they count too.
    """
    before = set(asyncio.all_tasks())
    yield
    current = asyncio.current_task()
    deadline = asyncio.get_running_loop().time() + 2.0
    while True:
        leaked = [t for t in asyncio.all_tasks() - before if t is not current and not t.done()]
        if not leaked or asyncio.get_running_loop().time() > deadline:
            break
        await asyncio.sleep(0.02)
    if leaked:
        names = ", ".join(sorted({t.get_coro().__qualname__ for t in leaked}))  # type: ignore[union-attr]
        pytest.fail(f"test leaked {len(leaked)} task(s): {names}")


@pytest.fixture(scope="session")
def local_engine_url() -> Iterator[str]:
    """The embedded local engine, started as its own process, as `make run` does."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway", "localrt", "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    deadline = time.monotonic() + 90
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if "listening on" in line:
            break
        if time.monotonic() > deadline:
            break
    else:
        pass
    if proc.poll() is not None or not any("listening on" in x for x in lines):
        proc.kill()
        raise RuntimeError("local engine did not start:\n" + "".join(lines[-30:]))
    # Keep draining its output so the pipe never fills and blocks the engine.
    threading.Thread(target=lambda: [None for _ in proc.stdout or []], daemon=True).start()
    try:
        yield f"ws://127.0.0.1:{port}/v1/realtime"
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
