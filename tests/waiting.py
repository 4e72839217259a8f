"""Waiting for state that lives in another object (a fake server, the gateway's tables).

Such state has no notifier to await, so this checks it at a short interval, bounded by a
deadline that names what was awaited when it fails.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable


async def until(cond: Callable[[], object], timeout_s: float, what: str,
                interval_s: float = 0.02) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not cond():  # noqa: ASYNC110 - see the module docstring
        if loop.time() > deadline:
            raise AssertionError(f"not within {timeout_s:g} s: {what}")
        await asyncio.sleep(interval_s)
