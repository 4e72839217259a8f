"""Memory after calls (gateway/allocator.py): the pinned mmap threshold keeps threads' arenas
from holding freed memory after one large block; the sweep after releases collects a closed
call's cycles and trims, deferred and rate-limited."""

from __future__ import annotations

import asyncio
import gc
import json
import subprocess
import sys
import weakref
from pathlib import Path
from typing import Any, cast

import pytest

from gateway import allocator
from gateway.cluster.registry import LocalCalls

ROOT = Path(__file__).resolve().parent.parent
glibc = pytest.mark.skipif(allocator.mallinfo() is None, reason="glibc's malloc only")

#: In a fresh process: one 4 MiB block freed (what a client's 2 MB message does), then six
#: threads at once hashing a 300 KB file the way a recording's manifest is written (1 MiB
#: reads). Prints how much the arenas grew and how much of it is free.
ARENAS = """
import json, sys, threading
from pathlib import Path
from gateway import allocator
from gateway.recording.manifest import sha256_file
if sys.argv[1] == "pin":
    assert allocator.pin_mmap_threshold()
path = Path(sys.argv[2])
path.write_bytes(bytes(range(256)) * 1200)
big = bytearray(4 << 20)
del big
before = allocator.mallinfo()
gate = threading.Barrier(6)
def work():
    gate.wait()
    for _ in range(3):
        sha256_file(path)
threads = [threading.Thread(target=work) for _ in range(6)]
for t in threads: t.start()
for t in threads: t.join()
after = allocator.mallinfo()
print(json.dumps({"grew": after.arena - before.arena, "free": after.fordblks}))
"""


def arenas_after_threads(mode: str, tmp_path: Path) -> dict[str, int]:
    out = subprocess.run([sys.executable, "-c", ARENAS, mode, str(tmp_path / "f.bin")],
                         cwd=ROOT, capture_output=True, text=True, timeout=60, check=True)
    return dict(json.loads(out.stdout))


@glibc
def test_pinned_threshold_keeps_thread_arenas_small(tmp_path: Path) -> None:
    dynamic = arenas_after_threads("dynamic", tmp_path)
    pinned = arenas_after_threads("pin", tmp_path)
    # glibc's dynamic threshold: the freed 4 MiB block raised it, the 1 MiB reads came out of
    # the threads' arenas and stayed there, free (what the abuse soak's RSS kept).
    assert dynamic["grew"] > 4 << 20, dynamic  # ~1.6 MB a thread's arena (9.7 MB measured)
    # Pinned: the reads are mmapped and unmapped; each new arena stays at its start size
    # (~132 KB; 0.8 MB for six measured).
    assert pinned["grew"] < 2 << 20, pinned
    assert pinned["free"] < dynamic["free"] - (2 << 20), (pinned, dynamic)


@glibc
def test_trim_returns_the_main_arenas_free_pages() -> None:
    code = """
from gateway import allocator
def rss():
    with open("/proc/self/status") as f:
        return next(int(x.split()[1]) * 1024 for x in f if x.startswith("VmRSS"))
allocator.pin_mmap_threshold()
blocks = [bytes(2000) for _ in range(20_000)]  # ~40 MB of malloc'd (not obmalloc) blocks
del blocks[:-1]  # the last one stays: the free space is below it, not at the top
assert allocator.mallinfo().fordblks > 20 << 20
before = rss()
assert allocator.trim()
print(before - rss())
"""
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                         text=True, timeout=60, check=True)
    assert int(out.stdout) > 20 << 20  # the free pages under a live block went back


def test_sweep_collects_cycles_the_tuned_collector_leaves() -> None:
    class Node:
        other: Node

    a, b = Node(), Node()
    a.other, b.other = b, a  # a cycle: reference counting never frees it
    gone = weakref.ref(a)
    gc.disable()  # as after tune_gc: no collection comes by on its own
    try:
        del a, b
        assert gone() is not None
        assert allocator.sweep() >= 2
        assert gone() is None
    finally:
        gc.enable()


def test_config_pins_glibcs_start_value_by_default() -> None:
    from gateway import config as config_mod

    assert config_mod.load(None, {}).server.malloc_mmap_threshold_bytes == 128 * 1024
    env = {"GATEWAY_SERVER_MALLOC_MMAP_THRESHOLD_BYTES": "0"}
    assert config_mod.load(None, env).server.malloc_mmap_threshold_bytes == 0


async def test_the_sweep_follows_its_setting() -> None:
    """On by default (every 30 s at most), off with 0: the call list then tells no one."""
    from gateway.api.appkeys import CALLS
    from tests.fake_upstream import running_fake
    from tests.gateway_fixtures import running_gateway

    async with running_fake() as (_, url):
        async with running_gateway(url) as gw:
            hook = gw.app[CALLS]._on_remove
            assert hook is not None
            assert cast(Any, hook).__self__.min_interval_s == 30.0
        env = {"GATEWAY_SERVER_RELEASE_SWEEP_INTERVAL_S": "0"}
        async with running_gateway(url, env=env) as gw:
            assert gw.app[CALLS]._on_remove is None


async def test_release_sweep_is_deferred_and_rate_limited() -> None:
    runs: list[float] = []
    loop = asyncio.get_running_loop()

    def counted() -> int:
        runs.append(loop.time())
        return 0

    trimmer = allocator.ReleaseSweep(delay_s=0.05, min_interval_s=0.4, sweep_fn=counted)
    t0 = loop.time()
    for _ in range(5):  # a burst of releases: one sweep, after the delay
        trimmer.released()
    await asyncio.sleep(0.2)
    assert len(runs) == 1 and runs[0] - t0 >= 0.05
    trimmer.released()  # soon after a sweep: not before min_interval_s has passed
    await asyncio.sleep(0.1)
    assert len(runs) == 1
    await asyncio.sleep(0.3)
    assert len(runs) == 2 and runs[1] - runs[0] >= 0.4 - 0.005
    trimmer.released()
    trimmer.close()  # a pending sweep is cancelled with the app
    await asyncio.sleep(0.5)
    assert len(runs) == 2 and trimmer.sweeps == 2


class _Call:
    def __init__(self, call_id: str) -> None:
        self.call_id = call_id

    async def close(self, reason: str = "") -> None:
        return None


def test_local_calls_tell_each_release_once() -> None:
    told: list[int] = []
    calls = LocalCalls(4, on_remove=lambda: told.append(1))
    calls.reserve()
    calls.add(_Call("rtc_a"))
    calls.remove("rtc_a")
    calls.remove("rtc_a")  # already gone: not a release
    calls.remove("rtc_never")
    assert told == [1]
