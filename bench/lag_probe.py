"""The gateway's event-loop lag probe for the reference servers of ``bench.calls`` (the naive
relay, Pipecat): a timer every 100 ms observes how late it fired, so loop lag is read the same
way for every server under test."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Protocol

PERIOD_S = 0.1


class Observer(Protocol):
    def observe(self, amount: float) -> None: ...


def start_lag_probe(histogram: Observer) -> Callable[[], None]:
    """Start the probe on the running loop; returns the function that stops it."""
    loop = asyncio.get_running_loop()
    handle: asyncio.TimerHandle | None = None

    def tick(expected: float) -> None:
        nonlocal handle
        histogram.observe(max(0.0, loop.time() - expected))
        handle = loop.call_at(loop.time() + PERIOD_S, tick, loop.time() + PERIOD_S)

    handle = loop.call_at(loop.time() + PERIOD_S, tick, loop.time() + PERIOD_S)

    def stop() -> None:
        if handle is not None:
            handle.cancel()

    return stop
