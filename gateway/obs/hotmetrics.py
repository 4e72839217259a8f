"""Counters and histograms for what happens every 20 ms frame of every call.

prometheus_client's ``Histogram.observe`` takes a lock and costs ~1.1 µs, a counter's
``inc`` ~0.5 µs; a call touches about ten of them per frame pair. These keep plain numbers
instead (a bisect and two additions) and are rendered by a collector at scrape time, with
the same names, labels, buckets and exposition as the prometheus_client types they replace.
Only the event-loop thread may touch them (no lock: nothing else runs there concurrently).
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterator, Sequence

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.utils import floatToGoString


class HotHistogramChild:
    __slots__ = ("_bounds", "counts", "sum")

    def __init__(self, bounds: list[float]) -> None:
        self._bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last one is +Inf
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self._bounds, value)] += 1
        self.sum += value


class HotCounterChild:
    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0.0

    def inc(self, amount: float = 1.0) -> None:
        if amount < 0:
            raise ValueError("counters only go up")
        self.value += amount


class _Hot:
    def __init__(self, name: str, documentation: str, labelnames: Sequence[str],
                 registry: CollectorRegistry) -> None:
        self.name = name
        self.documentation = documentation
        self.labelnames = tuple(labelnames)
        registry.register(self)  # type: ignore[arg-type]  # a Collector by protocol

    def _check(self, values: tuple[str, ...]) -> None:
        if len(values) != len(self.labelnames):
            raise ValueError(f"{self.name}: expected labels {self.labelnames}, got {values}")


class HotHistogram(_Hot):
    def __init__(self, name: str, documentation: str, labelnames: Sequence[str], *,
                 buckets: Sequence[float], registry: CollectorRegistry) -> None:
        self._bounds = [float(b) for b in buckets if b != math.inf]
        self._le: list[str] = [floatToGoString(b)  # type: ignore[no-untyped-call]
                               for b in [*self._bounds, math.inf]]
        self._children: dict[tuple[str, ...], HotHistogramChild] = {}
        super().__init__(name, documentation, labelnames, registry)

    def labels(self, *values: str) -> HotHistogramChild:
        self._check(values)
        child = self._children.get(values)
        if child is None:
            child = self._children[values] = HotHistogramChild(self._bounds)
        return child

    def describe(self) -> Iterator[Metric]:
        yield HistogramMetricFamily(self.name, self.documentation, labels=list(self.labelnames))

    def collect(self) -> Iterator[Metric]:
        # Samples added by hand, as prometheus_client's Histogram renders them: _count
        # always, _sum only when no bound is negative (HistogramMetricFamily drops both).
        family = Metric(self.name, self.documentation, "histogram")
        for values, child in list(self._children.items()):
            labels = dict(zip(self.labelnames, values, strict=True))
            cumulative = 0
            for le, n in zip(self._le, child.counts, strict=True):
                cumulative += n
                family.add_sample(f"{self.name}_bucket", {**labels, "le": le}, float(cumulative))
            family.add_sample(f"{self.name}_count", labels, float(cumulative))
            if not self._bounds or self._bounds[0] >= 0:
                family.add_sample(f"{self.name}_sum", labels, child.sum)
        yield family


class HotCounter(_Hot):
    def __init__(self, name: str, documentation: str, labelnames: Sequence[str], *,
                 registry: CollectorRegistry) -> None:
        self._children: dict[tuple[str, ...], HotCounterChild] = {}
        super().__init__(name.removesuffix("_total"), documentation, labelnames, registry)

    def labels(self, *values: str) -> HotCounterChild:
        self._check(values)
        child = self._children.get(values)
        if child is None:
            child = self._children[values] = HotCounterChild()
        return child

    def describe(self) -> Iterator[Metric]:
        yield CounterMetricFamily(self.name, self.documentation, labels=list(self.labelnames))

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(self.name, self.documentation, labels=list(self.labelnames))
        for values, child in list(self._children.items()):
            family.add_metric(list(values), child.value)
        yield family
