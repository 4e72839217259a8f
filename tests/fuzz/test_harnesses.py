"""The short fuzz runs of ``make test``: 2,000 seeded inputs a harness (``make fuzz`` runs
each for 100,000+ under atheris). An exception out of a harness is a crash; each input also
has a time budget (a hang), and the process' memory may not keep growing over the run."""

from __future__ import annotations

import logging
import os
import resource
import time
from collections.abc import Iterator

import pytest

from tests.fuzz.harness import mutations
from tests.fuzz.registry import HARNESSES

CASES = int(os.environ.get("FUZZ_SHORT_CASES", "2000"))
#: One input that takes this long is a hang (the slowest, an SDP offer, takes ~5 ms).
HANG_S = 2.0


@pytest.fixture(autouse=True)
def quiet() -> Iterator[None]:
    # The code under test logs what it ignores (once per kind): thousands of bad inputs.
    logging.disable(logging.WARNING)
    yield
    logging.disable(logging.NOTSET)


def rss_kb() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


@pytest.mark.parametrize("name", sorted(HARNESSES))
def test_short_fuzz(name: str) -> None:
    h = HARNESSES[name]
    # A harness that allocates without bound fails here instead of taking the host down.
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    limit = 6 * 1024**3
    resource.setrlimit(resource.RLIMIT_AS, (limit if hard == resource.RLIM_INFINITY
                                            else min(limit, hard), hard))
    try:
        inputs = list(mutations(h, CASES))
        assert len(inputs) == CASES
        half = CASES // 2
        rss_half = 0
        for i, data in enumerate(inputs):
            t = time.monotonic()
            try:
                h.one_input(data)
            except Exception as e:
                raise AssertionError(f"{name}: input #{i} crashed: {data[:400]!r}") from e
            took = time.monotonic() - t
            assert took < HANG_S, f"{name}: input #{i} took {took:.1f} s: {data[:400]!r}"
            if i == half:
                rss_half = rss_kb()
        grown_mb = (rss_kb() - rss_half) / 1024
        assert grown_mb < 64, f"{name}: RSS grew {grown_mb:.0f} MB over the second half"
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
