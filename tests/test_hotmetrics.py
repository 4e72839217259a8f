"""The per-frame metric types expose exactly what prometheus_client's own types would."""

from __future__ import annotations

import random

import pytest
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from gateway.obs.hotmetrics import HotCounter, HotHistogram
from gateway.obs.metrics import DBFS_BUCKETS, FRAME_BUCKETS


def exposition(registry: CollectorRegistry) -> list[str]:
    return [line for line in generate_latest(registry).decode().splitlines()
            if "_created" not in line]  # prometheus_client's creation-time gauges


@pytest.mark.parametrize("buckets", [DBFS_BUCKETS, FRAME_BUCKETS])
def test_histogram_matches_prometheus_client(buckets: tuple[float, ...]) -> None:
    ours, theirs = CollectorRegistry(), CollectorRegistry()
    hot = HotHistogram("x_seconds", "doc", ["direction"], buckets=buckets, registry=ours)
    ref = Histogram("x_seconds", "doc", ["direction"], buckets=buckets, registry=theirs)
    rng = random.Random(1)
    lo, hi = buckets[0] * 2 if buckets[0] < 0 else 0.0, buckets[-1] * 1.5
    values = [rng.uniform(lo, hi) for _ in range(500)] + list(buckets)  # and on the bounds
    for d in ("in", "out"):
        hot.labels(d)
        ref.labels(d)
    for v in values:
        hot.labels("in").observe(v)
        ref.labels("in").observe(v)
    assert exposition(ours) == exposition(theirs)


def test_counter_matches_prometheus_client_and_refuses_to_go_down() -> None:
    ours, theirs = CollectorRegistry(), CollectorRegistry()
    hot = HotCounter("gateway_audio_seconds_total", "doc", ["direction"], registry=ours)
    ref = Counter("gateway_audio_seconds_total", "doc", ["direction"], registry=theirs)
    for d, amount in (("in", 0.02), ("out", 0.04), ("in", 0.02)):
        hot.labels(d).inc(amount)
        ref.labels(d).inc(amount)
    assert exposition(ours) == exposition(theirs)
    with pytest.raises(ValueError):
        hot.labels("in").inc(-1)
    with pytest.raises(ValueError):
        hot.labels("in", "extra")


def test_a_name_cannot_be_registered_twice() -> None:
    r = CollectorRegistry()
    HotCounter("dup_total", "doc", ["a"], registry=r)
    with pytest.raises(ValueError):
        Counter("dup_total", "doc", ["a"], registry=r)
