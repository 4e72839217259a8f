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


async def until_ready(urls: list[str], proc: asyncio.subprocess.Process | None, *,
                      timeout_s: float = 120.0, what: str = "the server is ready",
                      path: str = "/readyz") -> None:
    """Wait until every URL's ``path`` answers 200: a start-up wait on a busy machine.

    The deadline is generous because a loaded machine can take long to start Python
    processes; what keeps it from hiding a broken start is that it fails at once, with the
    exit code, when the process it waits for has died.
    """
    import aiohttp

    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    pending = list(urls)
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as http:
        while pending:
            if proc is not None and proc.returncode is not None:
                raise AssertionError(f"{what}: the process exited with {proc.returncode}")
            still = []
            for url in pending:
                try:
                    async with http.get(url + path) as r:
                        if r.status != 200:
                            still.append(url)
                except (aiohttp.ClientError, TimeoutError):
                    still.append(url)
            pending = still
            if pending and loop.time() > deadline:
                raise AssertionError(f"not within {timeout_s:g} s: {what} ({pending})")
            if pending:
                await asyncio.sleep(0.2)
