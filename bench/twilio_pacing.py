"""Twilio pacing benchmark: how evenly the gateway paces a phone call's outbound ``media``.

    python -m bench.twilio_pacing                          # 1 and 10 calls, 10 s windows
    python -m bench.twilio_pacing --calls 1,5,20 --seconds 20
    python -m bench.twilio_pacing --prefill-ms 0 --burst-ms 20     # real-time echo: latency

Three processes: the echo upstream (``bench/echo_upstream.py``: every append comes back as
agent audio, so a µ-law session echoes the caller's bytes unchanged), the gateway, and this
process, which plays N Twilio Media Streams callers: a signed webhook, the TwiML's stream,
``connected``/``start``, then 20 ms µ-law frames, each tagged with its number. By default
the first ``--prefill-ms`` go at once and the rest in ``--burst-ms`` bursts at real-time
average rate, so agent audio reaches the gateway faster than real time and in bursts, as a
model's deltas do, and every outbound frame is one the gateway had to hold and pace. Marks
are echoed when a real Twilio would have played the audio before them.

Measured over the window, per run (all calls pooled):

- ``jitter_ms``: |interval between outbound ``media`` messages - 20 ms|, p50 / p99 / max;
  ``mean_interval_ms`` (drift) and ``frames_delivered`` (/ 50 per second per call);
- ``twilio_buffer_ms``: audio Twilio holds ahead of its playback at each arrival, p50 / max
  (the pacing lead: never the whole answer at once), and ``underruns`` (Twilio ran dry);
- ``round_trip_ms``: frame sent by the caller -> the same frame back, p50 / p99: both
  directions' added latency plus the echo's; meaningful with ``--prefill-ms 0``;
- ``gateway_cores_per_call``: gateway utime+stime from /proc over the window.

Arrival times are taken in this process, so its own event-loop jitter is included: the
numbers are an upper bound on the gateway's.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import secrets
import statistics
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from twilio.request_validator import RequestValidator

from bench.calls import free_port, proc_cpu_s, stop, wait_http

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
AUTH_TOKEN = "bench-twilio-token"
PUBLIC = "https://bench.invalid"
FRAME = 160
FRAME_S = 0.020


@dataclass
class Caller:
    """One phone call as Twilio makes it, with the arrival time of each outbound frame."""

    index: int
    http: aiohttp.ClientSession
    base: str
    burst_frames: int
    prefill_frames: int
    validator: RequestValidator = field(default_factory=lambda: RequestValidator(AUTH_TOKEN))
    arrivals: list[float] = field(default_factory=list)
    rtt: list[float] = field(default_factory=list)
    buffered: list[float] = field(default_factory=list)
    underruns: int = 0
    sent_at: list[float] = field(default_factory=list)
    recording: bool = False
    received_frames: int = 0

    async def start(self) -> None:
        call_sid = "CA" + secrets.token_hex(16)
        form = {"CallSid": call_sid, "From": f"+1555000{self.index:04d}", "To": "+15005550006",
                "AccountSid": "AC" + secrets.token_hex(16), "Direction": "inbound"}
        sig = self.validator.compute_signature(PUBLIC + "/twilio/incoming", form)
        async with self.http.post(self.base + "/twilio/incoming", data=form,
                                  headers={"X-Twilio-Signature": sig}) as r:
            text = await r.text()
            if r.status != 200:
                raise RuntimeError(f"webhook: {r.status} {text}")
        stream = ET.fromstring(text).find("./Connect/Stream")
        assert stream is not None
        url = stream.attrib["url"]
        params = {p.attrib["name"]: p.attrib["value"] for p in stream.findall("Parameter")}
        local = f"ws://{urlsplit(self.base).netloc}{urlsplit(url).path}"
        self.ws = await self.http.ws_connect(local, headers={
            "X-Twilio-Signature": self.validator.compute_signature(url, {})})
        self.sid = "MZ" + secrets.token_hex(16)
        self._out: asyncio.Queue[str] = asyncio.Queue()
        self._seq = 0
        self._play_clock = 0.0
        self._t0 = 0.0
        await self.ws.send_str(json.dumps({"event": "connected", "protocol": "Call",
                                           "version": "1.0.0"}))
        await self.ws.send_str(json.dumps({
            "event": "start", "sequenceNumber": "1", "streamSid": self.sid,
            "start": {"streamSid": self.sid, "callSid": call_sid, "tracks": ["inbound"],
                      "accountSid": form["AccountSid"], "customParameters": params,
                      "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000,
                                      "channels": 1}}}))
        self._tasks = [asyncio.create_task(self._sender()), asyncio.create_task(self._mic()),
                       asyncio.create_task(self._reader())]

    async def _sender(self) -> None:
        while True:
            await self.ws.send_str(await self._out.get())

    async def _mic(self) -> None:
        """Frame k is tagged with k; the prefill goes at once, then ``burst_frames`` at a
        time, on average in real time."""
        loop = asyncio.get_running_loop()
        body = bytes((0x20 + (i * 37) % 96) for i in range(FRAME - 4))  # loud, non-silent
        self._t0 = loop.time()
        k = 0
        while True:
            for _ in range(self.burst_frames if k else max(1, self.prefill_frames)):
                frame = k.to_bytes(4, "big") + body
                self._seq += 1
                self.sent_at.append(loop.time())
                self._out.put_nowait(json.dumps({
                    "event": "media", "sequenceNumber": str(self._seq), "streamSid": self.sid,
                    "media": {"track": "inbound", "chunk": str(k + 1),
                              "timestamp": str(k * 20),
                              "payload": base64.b64encode(frame).decode()}}))
                k += 1
            due = self._t0 + (k - self.prefill_frames + self.burst_frames) * FRAME_S
            await asyncio.sleep(max(0.0, due - loop.time()))

    async def _reader(self) -> None:
        loop = asyncio.get_running_loop()
        async for msg in self.ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                continue
            m = json.loads(msg.data)
            now = loop.time()
            if m["event"] == "media":
                dry = self._play_clock < now - 0.001
                self._play_clock = max(self._play_clock, now) + FRAME_S
                if self.recording:
                    data = base64.b64decode(m["media"]["payload"])
                    k = int.from_bytes(data[:4], "big")
                    self.underruns += dry and bool(self.arrivals)
                    self.arrivals.append(now)
                    self.buffered.append(self._play_clock - now)
                    self.rtt.append(now - self.sent_at[k])
                    self.received_frames += 1
            elif m["event"] == "mark":
                echo = json.dumps({"event": "mark", "streamSid": self.sid,
                                   "sequenceNumber": "0", "mark": m["mark"]})
                loop.call_at(self._play_clock, self._out.put_nowait, echo)

    async def close(self) -> None:
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.ws.close()


def pct(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, round(q * (len(s) - 1)))] if s else float("nan")


async def measure(base: str, server_pid: int, n: int, settle: float, seconds: float,
                  burst_frames: int, prefill_frames: int) -> dict[str, Any]:
    async with aiohttp.ClientSession() as http:
        callers = [Caller(i, http, base, burst_frames, prefill_frames) for i in range(n)]
        try:
            for c in callers:
                await c.start()
            await asyncio.sleep(settle)
            cpu0, t0 = proc_cpu_s(server_pid), time.monotonic()
            for c in callers:
                c.recording = True
            await asyncio.sleep(seconds)
            for c in callers:
                c.recording = False
            cpu1, t1 = proc_cpu_s(server_pid), time.monotonic()
            async with http.get(base + "/metrics") as r:
                metrics = await r.text()
        finally:
            for c in callers:
                with contextlib.suppress(Exception):
                    await c.close()
    dev = [abs(b - a - FRAME_S) * 1000 for c in callers
           for a, b in zip(c.arrivals, c.arrivals[1:], strict=False)]
    intervals = [(c.arrivals[-1] - c.arrivals[0]) / (len(c.arrivals) - 1) * 1000
                 for c in callers if len(c.arrivals) > 1]
    rtt = [x * 1000 for c in callers for x in c.rtt]
    buffered = [x * 1000 for c in callers for x in c.buffered]
    window = t1 - t0
    return {
        "calls": n, "seconds": round(window, 2), "burst_ms": burst_frames * 20,
        "prefill_ms": prefill_frames * 20,
        "frames_delivered": round(sum(c.received_frames for c in callers)
                                  / (n * window * 50), 3),
        "jitter_ms": {"p50": round(pct(dev, 0.5), 2), "p99": round(pct(dev, 0.99), 2),
                      "max": round(max(dev, default=float("nan")), 2)},
        "mean_interval_ms": round(statistics.mean(intervals), 3) if intervals else None,
        "twilio_buffer_ms": {"p50": round(pct(buffered, 0.5), 1),
                             "max": round(max(buffered, default=float("nan")), 1)},
        "underruns": sum(c.underruns for c in callers),
        "round_trip_ms": {"p50": round(pct(rtt, 0.5), 1), "p99": round(pct(rtt, 0.99), 1)},
        "gateway_cores_per_call": round((cpu1 - cpu0) / window / n, 4),
        "upstream_drops": sum(float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines()
                              if line.startswith("gateway_upstream_errors_total{")
                              and 'code="send_queue_full"' in line),
        # A shared host's other work shows up as jitter: keep the load next to the numbers.
        "loadavg_1m": round(os.getloadavg()[0], 2),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.twilio_pacing")
    p.add_argument("--calls", default="1,10", help="comma-separated numbers of calls")
    p.add_argument("--seconds", type=float, default=10.0, help="measured window per run")
    p.add_argument("--settle", type=float, default=2.0)
    p.add_argument("--burst-ms", type=int, default=200,
                   help="caller audio sent in bursts of this much (multiple of 20)")
    p.add_argument("--prefill-ms", type=int, default=1000,
                   help="caller audio sent at once at the start (a backlog to pace)")
    p.add_argument("--record", action="store_true", help="keep call recording on")
    p.add_argument("--out", type=Path, default=RESULTS / "twilio-pacing.json")
    args = p.parse_args(argv)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    rows = []
    for n in [int(x) for x in args.calls.split(",")]:
        up_port, port = free_port(), free_port()
        echo = subprocess.Popen([sys.executable, "-m", "bench.echo_upstream", "--port",
                                 str(up_port)], cwd=ROOT, env=env,
                                stderr=subprocess.DEVNULL)
        gw_env = dict(env, GATEWAY_HOST="127.0.0.1", GATEWAY_PORT=str(port),
                      GATEWAY_TOKEN_SECRET="bench", OPENAI_API_KEY="x",
                      GATEWAY_UPSTREAM_URL=f"ws://127.0.0.1:{up_port}/v1/realtime",
                      TWILIO_AUTH_TOKEN=AUTH_TOKEN, GATEWAY_PUBLIC_URL=PUBLIC,
                      GATEWAY_GUARDS_IDLE_PROMPT_S="3600", GATEWAY_GUARDS_IDLE_HANGUP_S="3600",
                      GATEWAY_RECORDING_ENABLED="true" if args.record else "false")
        server = subprocess.Popen([sys.executable, "-m", "gateway", "serve"], cwd=ROOT,
                                  env=gw_env, stderr=subprocess.DEVNULL)
        try:
            wait_http(f"http://127.0.0.1:{up_port}/stats", echo, 20)  # type: ignore[arg-type]
            wait_http(f"http://127.0.0.1:{port}/healthz", server, 30)  # type: ignore[arg-type]
            row = asyncio.run(measure(f"http://127.0.0.1:{port}", server.pid, n, args.settle,
                                      args.seconds, max(1, args.burst_ms // 20),
                                      args.prefill_ms // 20))
        finally:
            stop(server)
            stop(echo)
        rows.append(row)
        print(json.dumps(row), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"runs": rows, "python": sys.version.split()[0],
                                    "cpus": os.cpu_count()}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
