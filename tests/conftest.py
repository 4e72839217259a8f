"""Fixtures shared by every test. Every test runs under a task-leak check."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

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
