"""Merging the /metrics of every worker of a host into one exposition (label ``worker``)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

import aiohttp
from prometheus_client.core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector


class MergedMetrics(Collector):
    def __init__(self, families_by_worker: dict[str, list[Metric]]) -> None:
        self._by_worker = families_by_worker

    def collect(self) -> Iterable[Metric]:
        merged: dict[str, Metric] = {}
        for worker, families in self._by_worker.items():
            for fam in families:
                out = merged.get(fam.name)
                if out is None:
                    out = merged[fam.name] = Metric(fam.name, fam.documentation, fam.type,
                                                    fam.unit)
                for s in fam.samples:
                    out.add_sample(s.name, {**s.labels, "worker": worker}, s.value,
                                   s.timestamp, s.exemplar)
        return list(merged.values())


async def fetch_all(http: aiohttp.ClientSession, own_text: str, own_worker: str,
                    peers: dict[str, str], timeout_s: float = 2.0) -> MergedMetrics:
    """Own metrics plus each peer's (``GET <peer>/metrics?local=1``); an unreachable peer is
    left out rather than failing the scrape."""
    async def one(url: str) -> str | None:
        try:
            async with asyncio.timeout(timeout_s):
                async with http.get(f"{url}/metrics", params={"local": "1"}) as r:
                    return await r.text() if r.status == 200 else None
        except (TimeoutError, aiohttp.ClientError, OSError):
            return None

    names = list(peers)
    texts = await asyncio.gather(*(one(peers[n]) for n in names))
    by_worker = {own_worker: list(text_string_to_metric_families(own_text))}
    for name, text in zip(names, texts, strict=True):
        if text is not None:
            by_worker[name] = list(text_string_to_metric_families(text))
    return MergedMetrics(by_worker)
