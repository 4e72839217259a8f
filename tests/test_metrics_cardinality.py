"""1,000 calls leave the number of series in /metrics bounded, and no label carries an id
or a secret.

The calls are real and cheap: Realtime WebSocket calls through the gateway to the fake
upstream, several at a time, each opening, sending one append and closing. They are mixed
like production traffic, so that every bounded label value the traffic can produce appears
within the first ten calls: GA with an API key, beta, an ek_ token in the subprotocol (a
minted token), a client mistake (an error event), a clipped append, and a refused
connection (HTTP 401).
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import time
from collections import defaultdict
from typing import Any

import numpy as np
import websockets
from prometheus_client.parser import text_string_to_metric_families

from gateway.api.appkeys import CALLS
from tests.fake_upstream import running_fake
from tests.gateway_fixtures import ADMIN, API_KEY, Gateway, running_gateway
from tests.waiting import until

FIRST = 10
TOTAL = 1000
CONCURRENCY = 16
#: Series a later call may still add (e.g. one more way for a call to end: the outcome's
#: _total and _created); anything per call would add thousands.
SLACK = 4
#: Distinct values one label of one metric may take (histogram buckets excluded).
MAX_VALUES_PER_LABEL = 20

ID_LIKE = re.compile(r"(?<![A-Za-z0-9])(rtc|ek|sess|rs|sk)[_-][A-Za-z0-9]")
SECRETS = (API_KEY, ADMIN, "test-secret", "sk-upstream-secret-never-shown")

Series = frozenset[tuple[str, frozenset[tuple[str, str]]]]


def series(text: str) -> Series:
    return frozenset((s.name, frozenset(s.labels.items()))
                     for fam in text_string_to_metric_families(text) for s in fam.samples)


async def scrape(gw: Gateway) -> str:
    async with gw.http.get(f"{gw.base}/metrics") as r:
        assert r.status == 200
        return await r.text()


async def ws_call(gw: Gateway, i: int, tokens: list[str]) -> None:
    kind = i % 10
    ws_base = gw.base.replace("http://", "ws://") + "/v1/realtime"
    url = f"{ws_base}?model=gpt-realtime"
    headers: dict[str, str] = {"Authorization": f"Bearer {API_KEY}"}
    subprotocols: list[Any] | None = None
    if kind == 9:  # a wrong key: refused before any call exists
        try:
            async with websockets.connect(url, additional_headers={
                    "Authorization": f"Bearer sk-wrong-{i}"}, open_timeout=10):
                raise AssertionError("a wrong key was accepted")
        except websockets.InvalidStatus as e:
            assert e.response.status_code == 401
        return
    if kind == 6:  # a beta-era client
        url = f"{ws_base}?model=gpt-4o-realtime-preview"
        headers["OpenAI-Beta"] = "realtime=v1"
    if kind == 7:  # a browser-style client: a minted ek_ token as a subprotocol
        token = await gw.mint()
        tokens.append(token)
        headers = {}
        subprotocols = ["realtime", f"openai-insecure-api-key.{token}"]
    rng = np.random.default_rng(i)
    seconds = rng.uniform(0.04, 0.2)
    level = 10 ** rng.uniform(1, 4)
    pcm = (rng.standard_normal(int(24000 * seconds)) * level).astype(np.int16)
    if kind == 3:  # a hot microphone
        pcm = np.clip(pcm.astype(np.int32) * 1000, -32768, 32767).astype(np.int16)
    async with websockets.connect(url, additional_headers=headers, subprotocols=subprotocols,
                                  open_timeout=10, max_size=None) as ws:
        first = json.loads(await ws.recv())
        assert first["type"] == "session.created", first
        if kind == 8:  # a client mistake: an event type that does not exist
            await ws.send(json.dumps({"type": f"no.such.event.{i}", "event_id": f"c{i}"}))
            err = json.loads(await ws.recv())
            assert err["type"] == "error", err
        await ws.send(json.dumps({"type": "input_audio_buffer.append",
                                  "audio": base64.b64encode(pcm.tobytes()).decode()}))


async def run_calls(gw: Gateway, start: int, stop: int, tokens: list[str]) -> None:
    queue = iter(range(start, stop))

    async def worker() -> None:
        for i in queue:
            await ws_call(gw, i, tokens)

    async with asyncio.TaskGroup() as tg:
        for _ in range(CONCURRENCY):
            tg.create_task(worker())
    # Calls end on the gateway after the client's close: wait until all are gone.
    await until(lambda: not gw.app[CALLS], 20, "every call ended on the gateway")


def calls_ended(text: str) -> float:
    return sum(s.value for fam in text_string_to_metric_families(text)
               if fam.name == "gateway_calls" for s in fam.samples
               if s.name == "gateway_calls_total")


async def test_thousand_calls_leave_series_bounded() -> None:
    tokens: list[str] = []
    async with running_fake() as (fake, url), running_gateway(url) as gw:
        t0 = time.monotonic()
        await run_calls(gw, 0, FIRST, tokens)
        after_first = await scrape(gw)
        await run_calls(gw, FIRST, TOTAL, tokens)
        after_all = await scrape(gw)
        elapsed = time.monotonic() - t0

    connected = TOTAL - TOTAL // 10  # every tenth is refused
    assert calls_ended(after_first) == FIRST - FIRST // 10
    assert calls_ended(after_all) == connected, "not every call ran and ended"
    assert len(fake.conns) >= connected

    first, every = series(after_first), series(after_all)
    grown = sorted(f"{n}{dict(lb)}" for n, lb in every - first)
    assert len(every) - len(first) <= SLACK, \
        f"{len(first)} series after {FIRST} calls, {len(every)} after {TOTAL}: {grown[:20]}"

    values: dict[tuple[str, str], set[str]] = defaultdict(set)
    for name, labels in every:
        for k, v in labels:
            values[(name, k)].add(v)
    for (name, label), vals in values.items():
        if label != "le":
            assert len(vals) <= MAX_VALUES_PER_LABEL, (name, label, sorted(vals)[:30])
        for v in vals:
            assert not ID_LIKE.search(v), f"{name}{{{label}={v!r}}} looks like an id"

    assert tokens and all(t.startswith("ek_") for t in tokens)
    for secret in (*SECRETS, *tokens):
        assert secret not in after_all, "a secret is in /metrics"
    print(f"\n{len(first)} series after {FIRST} calls, {len(every)} after {TOTAL} "
          f"({connected} connected); {elapsed:.1f} s")
