"""Memory given back after calls end: glibc's mmap threshold pinned, and a full collection +
``malloc_trim`` once calls have been released.

glibc serves a request over its mmap threshold (128 KiB at start) with an mmap of its own,
unmapped on free. The threshold is dynamic: freeing such a block raises it to the block's size
(up to 32 MiB) and the trim threshold (how much free memory an arena keeps at its top) to
twice that. One 2 MB message from a client, or a recording's 1 MiB hash read in its writer
thread, is enough: from then on blocks up to that size come out of the arenas, and each of the
up to 8 x cores arenas (one a thread: recorders, decoders, executors) keeps ~2 x the
threshold at its top, which neither ``free`` (under the raised trim threshold) nor
``malloc_trim`` (it trims only the main arena's top) hands back. Measured in the abuse soak:
15 thread arenas at ~2 MB each plus 21 MB in the main arena, all free, all kept (BENCHMARKS.md
"Fuzzing and abuse soak"). :func:`pin_mmap_threshold` keeps the start-up threshold for the
process' life.

A closed call's objects are left in reference cycles (by type: its deadlines and metrics,
WebSocket writers, aiortc's peer objects, frames and tracebacks of its tasks; which links
close each cycle is not traced): only the cycle collector frees them, and its full
collection is rare by design after ``lifecycle.tune_gc`` (young-generation threshold 20,000).
Measured: 31.5k such objects (~7 MB of malloc plus pymalloc arenas) after 5 min of abuse, all
unreachable. :class:`ReleaseSweep` runs a full collection and then :func:`trim` a few seconds
after calls end, at most every 30 s, so what a released call held goes back to the kernel.
The malloc parts are no-ops off glibc.
"""

from __future__ import annotations

import asyncio
import ctypes
import gc
import logging
import time
from collections.abc import Callable

log = logging.getLogger("gateway.allocator")

M_MMAP_THRESHOLD = -3  # mallopt(3); setting it also turns the dynamic threshold off
DEFAULT_MMAP_THRESHOLD = 128 * 1024  # glibc's own start value


class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
        "fordblks", "keepcost")]


def _glibc() -> ctypes.CDLL | None:
    try:
        libc = ctypes.CDLL(None)
        libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
        libc.malloc_trim.argtypes = [ctypes.c_size_t]
        libc.mallinfo2.restype = MallInfo2
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to tune
        return None
    return libc


_LIBC = _glibc()


def pin_mmap_threshold(nbytes: int = DEFAULT_MMAP_THRESHOLD) -> bool:
    """Serve every block over ``nbytes`` with its own mmap for the rest of the process' life
    (no dynamic raise). False when the allocator is not glibc or refused the value."""
    return _LIBC is not None and bool(_LIBC.mallopt(M_MMAP_THRESHOLD, nbytes))


def trim() -> bool:
    """``malloc_trim(0)``: free pages of every arena back to the kernel (the main arena's
    top too). True when memory was returned."""
    return _LIBC is not None and bool(_LIBC.malloc_trim(0))


def mallinfo() -> MallInfo2 | None:
    """glibc's totals: ``arena`` (bytes in arenas), ``uordblks`` (in use), ``fordblks``
    (free, kept), ``hblkhd`` (in mmapped blocks)."""
    return None if _LIBC is None else _LIBC.mallinfo2()


#: A sweep this slow (the loop stalled for it) is logged at info.
SLOW_MS = 20.0


def sweep() -> int:
    """A full cycle collection, then ``malloc_trim``: what released calls held, returned.
    The number of unreachable objects found."""
    found = gc.collect()
    trim()
    return found


class ReleaseSweep:
    """``sweep_fn`` (:func:`sweep`) ``delay_s`` after a call is released (its recorder and
    transports have let go by then), at most once every ``min_interval_s``: one deadline,
    re-armed by the next release, never a poll. Runs on the loop: the collection is the
    interpreter's and holds the GIL wherever it runs (~8 ms for 30 s of the abuse soak's
    churn next to 10 calls; logged)."""

    def __init__(self, delay_s: float = 5.0, min_interval_s: float = 30.0,
                 sweep_fn: Callable[[], int] = sweep) -> None:
        self.delay_s = delay_s
        self.min_interval_s = min_interval_s
        self._sweep_fn = sweep_fn
        self._timer: asyncio.TimerHandle | None = None
        self._last = -float("inf")
        self.sweeps = 0

    def released(self) -> None:
        if self._timer is not None:
            return  # a sweep is due already: it will see this release's memory too
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # a release outside the loop (a test's teardown): no sweep
            return
        due = max(loop.time() + self.delay_s, self._last + self.min_interval_s)
        self._timer = loop.call_at(due, self._run)

    def _run(self) -> None:
        self._timer = None
        self._last = asyncio.get_running_loop().time()
        t0 = time.perf_counter()
        found = self._sweep_fn()
        self.sweeps += 1
        ms = (time.perf_counter() - t0) * 1000
        log.log(logging.INFO if ms >= SLOW_MS else logging.DEBUG,
                "memory sweep after releases: %d unreachable objects, %.1f ms", found, ms)

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
