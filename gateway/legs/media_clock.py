"""One 20 ms clock per event loop that sends every call's agent frame in one pass.

aiortc paces a call's outbound audio with a sender task awaiting a track coroutine that
sleeps until its frame is due: per call and per 20 ms, a timer, two coroutine resumptions and
a task step. With the owned datapath (:mod:`gateway.legs.datapath`) one task wakes every 20 ms
for the whole process and calls each call's :meth:`ClockSlot.tick` in turn (pop the frame,
encode, report it, packetize, protect, send): one timer per slot of time, not per call. Each
second of slots, every call also gets one :meth:`ClockSlot.rtcp` turn, spread over the
second so the reports do not bunch up.

The same rules as the per-call track (:mod:`gateway.legs.tracks`): a pass that is late runs
at once (frames catch up, none is lost); a stall over 200 ms skips the slots that went by,
and every call drops the audio those slots would have carried (:meth:`ClockSlot.skip`), so
an overloaded process stays in real time and bounded in memory.

The task exists while there are slots: the first :meth:`MediaClock.add` starts it, the last
:meth:`MediaClock.remove` cancels and awaits it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import weakref
from typing import Protocol

from ..audio.formats import FRAME_MS

log = logging.getLogger("gateway.webrtc")

PERIOD_S = FRAME_MS / 1000
STALL_S = 0.2
RTCP_EVERY = 50  # slots: one report a second per call


class ClockSlot(Protocol):
    def tick(self) -> None:
        """Send this call's frame for the current slot."""

    def skip(self, slots: int) -> None:
        """The process stalled: ``slots`` slots went by unsent."""

    def rtcp(self) -> None:
        """Send this call's periodic RTCP."""


class MediaClock:
    def __init__(self) -> None:
        self._slots: dict[ClockSlot, int] = {}  # slot -> its RTCP phase; insertion ordered
        self._rtcp: list[list[ClockSlot]] = [[] for _ in range(RTCP_EVERY)]
        self._next_phase = 0
        self._task: asyncio.Task[None] | None = None
        self.passes = 0
        self.skipped = 0
        self.failures = 0

    def __len__(self) -> int:
        return len(self._slots)

    def add(self, slot: ClockSlot) -> None:
        if slot in self._slots:
            return
        phase = self._next_phase
        self._next_phase = (phase + 7) % RTCP_EVERY  # 7 is coprime with 50: spread evenly
        self._slots[slot] = phase
        self._rtcp[phase].append(slot)
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(),
                                                                name="media-clock")

    async def remove(self, slot: ClockSlot) -> None:
        phase = self._slots.pop(slot, None)
        if phase is not None:
            self._rtcp[phase].remove(slot)
        if self._slots or self._task is None:
            return
        task, self._task = self._task, None
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        start = loop.time()
        n = 0
        while True:
            due = start + n * PERIOD_S
            now = loop.time()
            if due > now:
                await asyncio.sleep(due - now)
            elif now - due > STALL_S:
                skipped = int((now - due) / PERIOD_S)
                n += skipped
                self.skipped += skipped
                for slot in list(self._slots):
                    try:
                        slot.skip(skipped)
                    except Exception:
                        self._failed(slot)
            self._pass(n)
            n += 1

    def _pass(self, n: int) -> None:
        self.passes += 1
        for slot in list(self._slots):
            try:
                slot.tick()
            except Exception:  # one call's bug must not silence every other call
                self._failed(slot)
        for slot in list(self._rtcp[n % RTCP_EVERY]):
            try:
                slot.rtcp()
            except Exception:
                self._failed(slot)

    def _failed(self, slot: ClockSlot) -> None:
        self.failures += 1
        log.exception("media clock: a call's slot failed; it is taken off the clock")
        phase = self._slots.pop(slot, None)
        if phase is not None:
            self._rtcp[phase].remove(slot)


_clocks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, MediaClock] = \
    weakref.WeakKeyDictionary()


def media_clock() -> MediaClock:
    """The running loop's clock (one per loop: tests run several loops in one process)."""
    loop = asyncio.get_running_loop()
    clock = _clocks.get(loop)
    if clock is None:
        clock = _clocks[loop] = MediaClock()
    return clock
