"""A real Prometheus scrapes the gateway during a real call; every dashboard panel's PromQL
then runs against that Prometheus and returns data.

The Debian ``prometheus`` binary is started on a free port with the shipped scrape config
(``grafana/prometheus.yml``, its target and interval rewritten for the test gateway and a 1 s
interval). The call is a real aiortc client peer through the gateway to the scripted fake
upstream: caller tone (with a clipped burst), two agent turns, two server-side tool rounds, a
barge-in, a client mistake and an upstream refusal, then the caller's microphone goes silent
(dead mic), the agent prompts, and the call ends by idle hang-up. A bad SDP offer before the
call is a setup failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import numpy.typing as npt
import pytest
from prometheus_client.parser import text_string_to_metric_families

from gateway.api.appkeys import CALLS
from tests.fake_upstream import FakeUpstream, running_fake
from tests.gateway_fixtures import free_port, running_gateway
from tests.peers import FRAME, RATE, ClientPeer, PcmSourceTrack
from tests.waiting import until

ROOT = Path(__file__).resolve().parent.parent
DASHBOARD = ROOT / "grafana" / "dashboards" / "voice-gateway.json"
SCRAPE_CONFIG = ROOT / "grafana" / "prometheus.yml"
PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"

#: Grafana's variables, as a query against this Prometheus would see them.
VARIABLES = {"$__rate_interval": "1m", "$__interval": "15s", "$__range": "1m",
             "$job": "gateway", "$instance": ".+"}

#: Panels this call cannot produce data for, and why. Their metrics must still exist.
MAY_BE_EMPTY = {
    "Upstream reconnects and resumes":
        "nothing reconnects in this call: the reasons are client_resumed (a dropped WebRTC "
        "caller rejoins, tests/test_resume.py), rollover and the lost upstream's error code "
        "(gateway/continuity.py, tests/test_upstream_recovery.py)",
}

ENV = {
    # Short guards, so that one call shows a dead mic, an idle prompt and an idle hang-up.
    "GATEWAY_GUARDS_DEAD_MIC_S": "2.5", "GATEWAY_GUARDS_IDLE_PROMPT_S": "3",
    "GATEWAY_GUARDS_IDLE_HANGUP_S": "4.5",
    # WebRTC loss, jitter and RTT: the default sampling (every 5 s) gives three samples in
    # this call. (At 1 s the leg's stats task dies on the first sample, taken before any
    # RTCP receiver report: remote-inbound-rtp with roundTripTime None. Reported.)
}

PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and",
                "or", "unless", "offset", "atan2"}


# -- the dashboard --------------------------------------------------------------------------


def dashboard_targets() -> list[tuple[str, str]]:
    """(panel title, PromQL) for every query of every panel, rows included."""
    dash = json.loads(DASHBOARD.read_text())
    out: list[tuple[str, str]] = []

    def walk(panels: list[dict[str, Any]]) -> None:
        for p in panels:
            walk(p.get("panels") or [])
            for t in p.get("targets") or []:
                out.append((p["title"], t["expr"]))

    walk(dash["panels"])
    return out


def substitute(expr: str) -> str:
    for var, value in sorted(VARIABLES.items(), key=lambda kv: -len(kv[0])):
        expr = expr.replace(var, value)
    assert "$" not in expr, f"unsubstituted variable in {expr}"
    return expr


def metric_names(expr: str) -> set[str]:
    """Metric names a PromQL expression selects: what is left once strings, label matchers,
    ranges, grouping clauses, function calls and keywords are taken out."""
    e = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    e = re.sub(r"\{[^}]*\}", " ", e)
    e = re.sub(r"\[[^\]]*\]", " ", e)
    e = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", e)
    names = set()
    for m in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", e):
        rest = e[m.end():].lstrip()
        if rest.startswith("(") or m.group() in PROMQL_WORDS:
            continue
        if m.start() > 0 and (e[m.start() - 1].isdigit() or e[m.start() - 1] == "."):
            continue  # the exponent of a number, 1e3
        names.add(m.group())
    return names


def exposed_names(text: str) -> set[str]:
    """Every series name /metrics can carry: the samples present, and for a declared family
    with no labelled child yet (# TYPE only) the names its samples will have. A histogram's
    ``_sum`` counts only when present: prometheus-client leaves it out of histograms with
    negative buckets (the dBFS levels)."""
    names = set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            if kind == "histogram":
                names |= {f"{name}_bucket", f"{name}_count", f"{name}_created"}
            elif kind == "counter":
                names |= {name, name.removesuffix("_total") + "_created"}
            else:
                names.add(name)
        elif line and not line.startswith("#"):
            names.add(re.split(r"[{ ]", line, maxsplit=1)[0])
    return names


def test_dashboard_is_well_formed() -> None:
    dash = json.loads(DASHBOARD.read_text())
    assert 36 <= dash["schemaVersion"] <= 41
    assert dash["uid"] == "voice-gateway"
    variables = {v["name"]: v for v in dash["templating"]["list"]}
    assert variables["DS_PROMETHEUS"]["type"] == "datasource"
    assert variables["DS_PROMETHEUS"]["query"] == "prometheus"
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    for p in dash["panels"]:
        g = p["gridPos"]
        assert 0 <= g["x"] and g["x"] + g["w"] <= 24, p["title"]
        if p["type"] == "row":
            continue
        assert p["datasource"] == {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}, p["title"]
        assert p["targets"] and all(t["expr"].strip() for t in p["targets"]), p["title"]
    titles = {t for t, _ in dashboard_targets()}
    assert set(MAY_BE_EMPTY) <= titles
    # The list (item 6) is all there.
    for want in ("Active calls by transport", "Call rate by outcome", "Turn latency",
                 "Upstream time to first audio", "Frame processing time", "Event-loop lag",
                 "Audio level (RMS)", "Interruptions", "Idle prompts, hang-ups and dead "
                 "microphones", "Tool latency", "Upstream errors", "Inbound packet loss",
                 "Jitter", "CPU", "Resident memory"):
        assert want in titles, want


def test_metric_name_extraction() -> None:
    assert metric_names('histogram_quantile(0.99, sum by (le, direction) (rate('
                        'gateway_frame_processing_seconds_bucket{job=~"$job"}[1m])))') == {
                            "gateway_frame_processing_seconds_bucket"}
    assert metric_names("sum(rate(a_total[5m])) / sum(rate(b_count[5m])) * 60 > 1e3") == {
        "a_total", "b_count"}


def test_shipped_scrape_config_is_valid() -> None:
    promtool = shutil.which("promtool") or "/usr/bin/promtool"
    if not os.path.exists(promtool):
        pytest.skip("promtool is not installed (Debian package prometheus)")
    out = subprocess.run([promtool, "check", "config", str(SCRAPE_CONFIG)],
                         capture_output=True, text=True, timeout=30, check=False)
    assert out.returncode == 0, out.stdout + out.stderr
    text = SCRAPE_CONFIG.read_text()
    assert '"127.0.0.1:8080"' in text and "job_name: gateway" in text
    assert "scrape_interval: 5s" in text


# -- Prometheus -----------------------------------------------------------------------------


@pytest.fixture
def reap() -> Iterator[list[int]]:
    """Pids of processes a test started: killed at teardown if still running (a timeout or
    an error before the test's own cleanup ran)."""
    pids: list[int] = []
    yield pids
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, ChildProcessError):
            done, _ = os.waitpid(pid, os.WNOHANG)
            if done == 0:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)


class Prometheus:
    def __init__(self, base: str, http: aiohttp.ClientSession) -> None:
        self.base = base
        self.http = http

    async def query(self, expr: str) -> list[dict[str, Any]]:
        async with self.http.get(f"{self.base}/api/v1/query", params={"query": expr}) as r:
            body = await r.json()
        assert r.status == 200 and body["status"] == "success", (expr, body)
        return list(body["data"]["result"])

    async def last_scrape(self) -> float:
        """Time of the newest successful scrape of the gateway (0 before the first)."""
        # timestamp() of a selector, not of an expression: `up == 1` would carry the
        # evaluation time instead of the scrape's.
        res = await self.query('timestamp(up{job="gateway"})')
        if not res or not all(s["value"][1] == "1" for s in await self.query(
                'up{job="gateway"}')):
            return 0.0
        return max(float(s["value"][1]) for s in res)

    async def wait_scrapes(self, after: float, n: int = 1, timeout_s: float = 20.0) -> float:
        """Wait for ``n`` successful scrapes that started after ``after`` (unix time)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        for _ in range(n):
            while (ts := await self.last_scrape()) <= after:
                if loop.time() > deadline:
                    raise AssertionError(f"Prometheus did not scrape the gateway within "
                                         f"{timeout_s:g} s")
                await asyncio.sleep(0.2)
            after = ts
        return after


def prometheus_command(tmp_path: Path, target: str, port: int) -> list[str]:
    """The shipped scrape config, pointed at ``target`` and scraping every second."""
    assert os.path.exists(PROMETHEUS), "Prometheus is needed: apt-get install -y prometheus"
    shipped = SCRAPE_CONFIG.read_text()
    config = shipped.replace('"127.0.0.1:8080"', f'"{target}"').replace(": 5s", ": 1s")
    assert target in config and ": 5s" not in config
    (tmp_path / "prometheus.yml").write_text(config)
    return [PROMETHEUS, f"--config.file={tmp_path / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}"]


@contextlib.asynccontextmanager
async def running_prometheus(tmp_path: Path, target: str, http: aiohttp.ClientSession,
                             reap: list[int]) -> AsyncIterator[Prometheus]:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log_path = tmp_path / "prometheus.log"
    with log_path.open("wb") as log:
        proc = await asyncio.create_subprocess_exec(
            *prometheus_command(tmp_path, target, port),
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
    reap.append(proc.pid)
    try:
        async with asyncio.timeout(20):
            while True:
                assert proc.returncode is None, log_path.read_text()
                with contextlib.suppress(aiohttp.ClientError):
                    async with http.get(f"{base}/-/ready") as r:
                        if r.status == 200:
                            break
                await asyncio.sleep(0.1)
        yield Prometheus(base, http)
    finally:
        if proc.returncode is None:
            proc.terminate()
            try:
                async with asyncio.timeout(10):
                    await proc.wait()
            except TimeoutError:
                proc.kill()
                await proc.wait()


# -- the call -------------------------------------------------------------------------------


class Mic:
    """The caller's microphone: a 440 Hz tone at -20 dBFS, a clipped burst, or silence."""

    def __init__(self) -> None:
        self.mode = "tone"
        self._amp = 32768 * 10 ** (-20 / 20) * np.sqrt(2)

    def frame(self, i: int) -> npt.NDArray[np.int16]:
        if self.mode == "silence":
            return np.zeros(FRAME, np.int16)
        t = (np.arange(FRAME) + i * FRAME) / RATE
        x = np.sin(2 * np.pi * 440 * t)
        if self.mode == "clip":  # a hot mic: driven 4x past full scale
            return np.clip(4 * 32767 * x, -32768, 32767).astype(np.int16)
        return (self._amp * x).astype(np.int16)


def agent_speech(seconds: float, freq: float) -> npt.NDArray[np.int16]:
    t = np.arange(int(24000 * seconds)) / 24000
    return (8000 * np.sin(2 * np.pi * freq * t)).astype(np.int16)


def count(peer: ClientPeer, etype: str) -> int:
    return sum(1 for e in peer.all_events if e["type"] == etype)


async def next_event(peer: ClientPeer, etype: str, timeout_s: float = 10.0) -> dict[str, Any]:
    try:
        return await peer.next_event(etype, timeout_s)
    except TimeoutError:
        seen = [e["type"] for e in peer.all_events][-30:]
        raise AssertionError(f"no {etype} within {timeout_s} s; last events: {seen}") from None


async def speech_stopped(fake: FakeUpstream) -> None:
    await fake.conn.send({"type": "input_audio_buffer.speech_stopped", "audio_end_ms": 1500,
                          "item_id": f"item_caller_{time.monotonic_ns()}"})


async def tool_round(fake: FakeUpstream, peer: ClientPeer, n: int) -> None:
    """The model calls the server-side tool lookup_customer; the gateway runs it against the
    demo database and asks for a response, which the agent speaks."""
    c = fake.conn
    creates = sum(1 for e in c.received if e["type"] == "response.create")
    stopped = count(peer, "output_audio_buffer.stopped")
    rid, iid, call_id = f"resp_tool{n}", f"item_tool{n}", f"call_tool{n}"
    args = json.dumps({"account_id": "10001"})
    item = {"id": iid, "type": "function_call", "name": "lookup_customer", "call_id": call_id,
            "arguments": "", "status": "in_progress"}
    response = {"id": rid, "object": "realtime.response", "status": "in_progress",
                "output": []}
    await c.send({"type": "response.created", "response": response})
    await c.send({"type": "response.output_item.added", "response_id": rid, "output_index": 0,
                  "item": item})
    await c.send({"type": "response.function_call_arguments.done", "response_id": rid,
                  "item_id": iid, "output_index": 0, "call_id": call_id,
                  "name": "lookup_customer", "arguments": args})
    await c.send({"type": "response.done", "response": dict(
        response, status="completed", output=[dict(item, arguments=args, status="completed")])})
    await until(lambda: sum(1 for e in c.received if e["type"] == "response.create") > creates,
                10, f"the gateway's response.create after tool output {n}")
    await until(lambda: count(peer, "output_audio_buffer.stopped") > stopped, 10,
                f"the agent's answer after tool round {n}")


async def one_call(gw: Any, fake: FakeUpstream, prom: Prometheus) -> None:
    url = f"{gw.base}/v1/realtime/calls?gateway_events=true"
    # A setup failure first: a body that is not an SDP offer.
    async with gw.http.post(url, data="v=0\r\ns=-\r\n", headers={
            "Authorization": f"Bearer {await gw.mint()}",
            "Content-Type": "application/sdp"}) as r:
        assert r.status == 400, await r.text()

    mic = Mic()
    peer = ClientPeer(PcmSourceTrack(mic.frame))
    try:
        await peer.connect(gw.http, url, await gw.mint())
        await next_event(peer, "session.created")
        peer.send({"type": "no.such.event", "event_id": "evt_bad"})  # a client error
        assert (await next_event(peer, "error"))["error"]["code"] == "unknown_event_type"

        # Turn 1: the caller speaks (a clipped burst in it), stops; the agent answers.
        await fake.speech_started()
        mic.mode = "clip"
        await asyncio.sleep(0.4)
        mic.mode = "tone"
        await speech_stopped(fake)
        stopped = count(peer, "output_audio_buffer.stopped")
        fake.say(agent_speech(0.8, 600), "hello, how can I help?")
        await until(lambda: count(peer, "output_audio_buffer.stopped") > stopped, 10,
                    "turn 1 played")
        await fake.speech_started()  # the caller talks on: no idle prompt meanwhile
        await tool_round(fake, peer, 1)
        # The client cancels when nothing is active: the upstream refuses (an upstream error).
        peer.send({"type": "response.cancel", "event_id": "evt_cancel"})
        assert (await next_event(peer, "error"))["error"]["code"] == \
            "response_cancel_not_active"
        # Histograms with a labelled child born at its first observation (turn latency,
        # tool latency) need a second observation in a later scrape to show a rate.
        await prom.wait_scrapes(after=time.time())

        # Turn 2: a long answer the caller cuts off (barge-in), then another tool round.
        await speech_stopped(fake)
        started = count(peer, "output_audio_buffer.started")
        fake.say(agent_speech(5.0, 800), "a long answer", speed=2.0)
        await until(lambda: count(peer, "output_audio_buffer.started") > started, 10,
                    "turn 2 playing")
        await asyncio.sleep(1.0)
        await fake.speech_started()
        await next_event(peer, "output_audio_buffer.cleared")
        await until(lambda: any(e["type"] == "response.done" and
                                e["response"]["status"] == "cancelled"
                                for e in peer.all_events), 10, "the cut response cancelled")
        await tool_round(fake, peer, 2)

        # The microphone goes digitally silent: dead mic, the agent asks; nobody answers:
        # idle prompt, then idle hang-up.
        mic.mode = "silence"
        await next_event(peer, "gateway.microphone.silent")
        await until(lambda: not len(gw.app[CALLS]), 30, "the idle hang-up")
    finally:
        await peer.close()


async def test_every_dashboard_panel_returns_data(tmp_path: Path, reap: list[int]) -> None:
    targets = dashboard_targets()
    async with running_fake() as (fake, url), running_gateway(url, env=ENV) as gw, \
            running_prometheus(tmp_path, gw.base.removeprefix("http://"), gw.http,
                               reap) as prom:
        await prom.wait_scrapes(after=time.time())
        await one_call(gw, fake, prom)
        ended = time.time()
        # Two scrapes after the call ended: counters born at its end (calls by outcome,
        # audio seconds) need two samples for rate()/increase().
        await prom.wait_scrapes(after=ended, n=2)

        async with gw.http.get(f"{gw.base}/metrics") as r:
            exposition = await r.text()
        exposed = exposed_names(exposition)
        ends = {s.labels["outcome"]: s.value for f in text_string_to_metric_families(exposition)
                if f.name == "gateway_calls" for s in f.samples if s.name.endswith("_total")}
        assert ends == {"idle_timeout": 1.0}, ends

        # The dashboard references only metrics the gateway exports.
        referenced = set().union(*(metric_names(e) for _, e in targets))
        assert referenced, "no metric names found in the dashboard"
        assert referenced <= exposed, f"not in /metrics: {sorted(referenced - exposed)}"

        empty, not_finite = [], []
        for title, expr in targets:
            result = await prom.query(substitute(expr))
            if not result:
                if title not in MAY_BE_EMPTY:
                    raw = {n: await prom.query(f"{n}[1m]") for n in metric_names(expr)}
                    empty.append(f"{title}: {expr}\n    raw samples: {raw}")
                continue
            values = [float(s["value"][1]) for s in result]
            if not any(math.isfinite(v) for v in values):
                not_finite.append(f"{title}: {expr} -> {result}")
        assert not empty, "panels without data:\n" + "\n".join(empty)
        assert not not_finite, "panels with only NaN:\n" + "\n".join(not_finite)
