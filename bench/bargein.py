"""Barge-in benchmark (issue 5): how fast agent audio stops, and how exact the truncation is.

Real parts: an aiortc client peer, the gateway in this process, the scripted GA upstream.
For each trial the upstream speaks a 4 s tone at 2x real time; after a random 0.6-1.8 s of
playback it reports ``speech_started``. Measured:
  - cut-off: speech_started received by the gateway -> first silent frame sent (in-process
    hooks on the outbound track, so no network or jitter buffer is counted);
  - truncation error: the ``audio_end_ms`` the gateway sent upstream minus the agent audio the
    client peer actually received for that item (loud samples / 48 per ms).
Run: python -m bench.bargein --trials 20
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np

from gateway.api.appkeys import CALLS
from tests.fake_upstream import running_fake
from tests.gateway_fixtures import running_gateway
from tests.peers import ClientPeer, PcmSourceTrack, tone

OUT = Path(__file__).parent / "results" / "bargein.json"


def pct(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(round(q / 100 * (len(s) - 1))))]


async def run(trials: int) -> dict[str, Any]:
    cutoffs: list[float] = []
    errors: list[float] = []
    rng = random.Random(1)
    async with running_fake() as (fake, url), running_gateway(url) as gw:
        peer = ClientPeer(PcmSourceTrack(tone(200, -45)))
        try:
            await peer.connect(gw.http, f"{gw.base}/v1/realtime/calls", await gw.mint())
            await peer.next_event("session.created")
            call = next(iter(gw.app[CALLS]))
            marks: dict[str, float] = {}

            def on_interrupt(item: str, heard: int, st: object) -> None:
                marks["cut"] = time.perf_counter()
                marks["heard"] = heard

            def on_frame(frame: object, offset: float) -> None:
                if frame is None and "cut" in marks and "silent" not in marks:
                    marks["silent"] = time.perf_counter()

            call.hooks.interrupted.append(on_interrupt)  # type: ignore[attr-defined]
            call.hooks.agent_audio.append(on_frame)  # type: ignore[attr-defined]
            t = np.arange(24000 * 4) / 24000
            speech = (9000 * np.sin(2 * np.pi * 700 * t)).astype(np.int16)
            for _ in range(trials):
                marks.clear()
                peer.received.clear()
                fake.say(speech, "a long answer", speed=2.0)
                await peer.next_event("output_audio_buffer.started")
                await asyncio.sleep(rng.uniform(0.6, 1.8))
                await fake.speech_started()
                await peer.next_event("output_audio_buffer.cleared")
                await asyncio.sleep(0.6)  # let in-flight packets arrive
                received = peer.received_audio().astype(np.float64)
                # Agent audio heard: 5 ms blocks carrying the tone (RMS far above the -45 dBFS
                # caller tone that is not in this direction anyway).
                blocks = received[: len(received) // 240 * 240].reshape(-1, 240)
                loud_ms = float(np.count_nonzero(np.sqrt((blocks ** 2).mean(axis=1)) > 2000)) * 5
                cutoffs.append((marks["silent"] - marks["cut"]) * 1000)
                errors.append(marks["heard"] - loud_ms)
                await peer.next_event("response.done")
        finally:
            await peer.close()
    return {
        "trials": trials,
        "cutoff_ms": {"p50": statistics.median(cutoffs), "p99": pct(cutoffs, 99),
                      "max": max(cutoffs)},
        "truncation_error_ms": {"p50": statistics.median(errors),
                                "abs_p99": pct([abs(e) for e in errors], 99),
                                "all": [round(e, 1) for e in errors]},
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=20)
    args = ap.parse_args()
    res = asyncio.run(run(args.trials))
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(res, indent=2))
    print(json.dumps({k: v for k, v in res.items() if k != "truncation_error_ms"}, indent=2))
    e = res["truncation_error_ms"]
    print(f"truncation error: p50 {e['p50']:.1f} ms, |p99| {e['abs_p99']:.1f} ms")


if __name__ == "__main__":
    main()
