"""What metrics and level metering cost per call (issue 7, item 8: target <= 3 % of a call).

Times ``CallSession.on_caller_audio`` per 20 ms frame (PCM16 24 kHz, 480 samples, speech-like
audio with pauses) in two variants, interleaved over several repeats:

- **metered**: as shipped: RMS/peak/clip measured (``gateway.audio.levels.measure``), RMS and
  peak histograms observed, clipped samples counted, the frame's processing time observed;
- **bare**: the same method with that removed: ``measure`` returns a constant and the
  session's metrics are no-op instruments (a no-op call is left where each observation was,
  so the difference slightly under-counts).

The difference is the metering cost of one frame in one direction. Micro-benchmarks of each
part (level measurement, a labelled observe, an observe on a cached child) explain it, and a
cheaper level measurement (one int->float conversion, peak from min/max, the clip count only
when the peak reaches the clip level) is timed beside it as a what-if.

A call's metering is the inbound frame's metering plus, outbound, today one observe per frame
(the encode time); once outbound levels are metered like inbound ones, twice the inbound cost
("full duplex"). That is set against a call's cost per 20 ms: the field notes' codec floor
(Opus decode + encode + resampling, ~0.3 ms per full-duplex 20 ms frame), and the gateway's
measured cores per call from ``bench/results/calls.json`` (``python -m bench.calls``) when
present.

    python -m bench.metrics_cost [--frames 5000] [--repeat 7]

Writes ``bench/results/metrics_cost.json`` and prints a summary.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import time
import timeit
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from prometheus_client import generate_latest

import gateway.call.session as session_mod
from gateway import config as config_mod
from gateway.audio.formats import FRAME_MS, FRAME_SAMPLES, SAMPLE_RATE
from gateway.audio.levels import CLIP_LEVEL, FLOOR_DBFS, Level, measure
from gateway.call import policy
from gateway.call.session import CallSession
from gateway.obs.metrics import Metrics

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "metrics_cost.json"
CALLS_RESULTS = ROOT / "bench" / "results" / "calls.json"
#: docs field notes, "Costs per 20 ms frame": Opus decode 54 + resample in 24 + resample out
#: ~20 + Opus encode 186 us: "about 0.3 ms of CPU per 20 ms" for one full-duplex session.
CODEC_FLOOR_US = 300.0
TARGET_PCT = 3.0
FRAMES_PER_S = 1000 / FRAME_MS


# -- a call's worth of caller audio ------------------------------------------------------


def speechlike_frames(n: int, seed: int = 1) -> list[npt.NDArray[np.int16]]:
    """Voiced harmonics on a wandering pitch with a syllable envelope, 3-5 s turns and quiet
    (not digitally silent) pauses, a few clipped frames: what a caller's microphone sends."""
    rng = np.random.default_rng(seed)
    total = n * FRAME_SAMPLES
    t = np.arange(total) / SAMPLE_RATE
    pitch = 140 + 40 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(pitch) / SAMPLE_RATE
    voice = sum(np.sin(k * phase) / k for k in range(1, 10))
    env = np.clip(np.sin(2 * np.pi * 4 * t), 0, None) ** 0.5
    talking = (np.floor(t / 4.0) % 2) == 0  # 4 s talking, 4 s listening
    x = np.where(talking, voice * env * 9000, 0) + rng.normal(0, 30, total)
    x[: SAMPLE_RATE // 10] *= 8  # a hot start: clipped samples
    pcm = np.clip(x, -32768, 32767).astype(np.int16)
    return [pcm[i:i + FRAME_SAMPLES] for i in range(0, total, FRAME_SAMPLES)]


# -- the session under test --------------------------------------------------------------


class _Upstream:
    """Takes the session's appends and drops them (what a healthy upstream queue costs)."""

    def send_audio(self, b64audio: str) -> bool:
        return True

    def send(self, event: dict[str, Any]) -> None:
        return None


class _Null:
    """An instrument that does nothing: labels() returns itself."""

    def labels(self, *values: str) -> _Null:
        return self

    def observe(self, value: float) -> None:
        return None

    def inc(self, amount: float = 1.0) -> None:
        return None


class _NullMetrics:
    def __getattr__(self, name: str) -> _Null:
        return _Null()


_SILENT_LEVEL = Level(-30.0, -20.0, 0)


def new_session(metrics: Any) -> CallSession:
    cfg = config_mod.load(None, {"GATEWAY_TOKEN_SECRET": "bench"})
    profile = cfg.profiles[cfg.default_profile]
    call = CallSession(call_id="rtc_bench", config=cfg, profile=profile, metrics=metrics,
                       transport="webrtc", dialect="ga",
                       session=policy.base_session(profile, lambda name: None),
                       tool_lookup=lambda name: None)
    call.upstream = _Upstream()  # type: ignore[assignment]
    return call


@contextmanager
def unmetered(call: CallSession) -> Iterator[None]:
    saved = call.metrics
    call.metrics = _NullMetrics()  # type: ignore[assignment]
    session_mod.measure = lambda pcm: _SILENT_LEVEL  # type: ignore[assignment]
    try:
        yield
    finally:
        session_mod.measure = measure
        call.metrics = saved


def time_frames(call: CallSession, frames: list[npt.NDArray[np.int16]]) -> float:
    """CPU seconds per frame (``thread_time``: this thread's CPU, so that other processes on
    the machine do not count)."""
    feed = call.on_caller_audio
    t0 = time.thread_time()
    for f in frames:
        feed(f)
    return (time.thread_time() - t0) / len(frames)


# -- a cheaper level measurement (what-if) -----------------------------------------------


def measure_lean(samples: npt.NDArray[np.int16]) -> Level:
    if len(samples) == 0:
        return Level(FLOOR_DBFS, FLOOR_DBFS, 0)
    f = samples.astype(np.float32)
    rms = math.sqrt(float(np.dot(f, f)) / len(f))
    peak = max(int(samples.max()), -int(samples.min()))
    clipped = int(np.count_nonzero(np.abs(f) >= CLIP_LEVEL)) if peak >= CLIP_LEVEL else 0

    def db(x: float) -> float:
        return max(20 * math.log10(x / 32768.0), FLOOR_DBFS) if x > 0 else FLOOR_DBFS

    return Level(db(rms), db(float(peak)), clipped)


def micro_us(fn: Callable[[], object], number: int = 20_000, repeat: int = 5) -> float:
    """Median CPU microseconds per call."""
    runs = timeit.repeat(fn, number=number, repeat=repeat, timer=time.thread_time)
    return statistics.median(runs) / number * 1e6


# -- a call's cost -----------------------------------------------------------------------


def measured_call_cost() -> dict[str, Any] | None:
    """The gateway's cores per call from bench.calls; the cheapest N (the most demanding
    denominator) of the runs that delivered all their frames."""
    if not CALLS_RESULTS.exists():
        return None
    data = json.loads(CALLS_RESULTS.read_text())
    rows = [r for r in data.get("summary", []) if r.get("server") == "gateway"
            and r.get("cores_per_call") and (r.get("outbound_pct") or 0) >= 99]
    if not rows:
        return None
    best = min(rows, key=lambda r: r["cores_per_call"])
    return {"source": str(CALLS_RESULTS.relative_to(ROOT)), "date": data.get("date"),
            "calls": best["calls"], "cores_per_call": best["cores_per_call"],
            "us_per_20ms_frame": best["cores_per_call"] * FRAME_MS * 1000}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--frames", type=int, default=5000, help="frames per timed pass")
    ap.add_argument("--repeat", type=int, default=7)
    args = ap.parse_args(argv)

    load_at_start = os.getloadavg()[0]
    frames = speechlike_frames(args.frames)
    metrics = Metrics()
    call = new_session(metrics)
    time_frames(call, frames[:500])  # warm up both paths
    with unmetered(call):
        time_frames(call, frames[:500])
    metered, bare = [], []
    for i in range(args.repeat):
        order = (True, False) if i % 2 == 0 else (False, True)
        for with_metrics in order:
            if with_metrics:
                metered.append(time_frames(call, frames))
            else:
                with unmetered(call):
                    bare.append(time_frames(call, frames))
    metered_us = statistics.median(metered) * 1e6
    bare_us = statistics.median(bare) * 1e6
    inbound_us = max(0.0, metered_us - bare_us)

    probe = frames[len(frames) // 4]
    hist = metrics.audio_level
    child = hist.labels("in")
    micro = {
        "measure": micro_us(lambda: measure(probe)),
        "measure_lean": micro_us(lambda: measure_lean(probe)),
        "observe_labelled": micro_us(lambda: hist.labels("in").observe(-20.0)),
        "observe_child": micro_us(lambda: child.observe(-20.0)),
        "perf_counter_pair": micro_us(lambda: (time.perf_counter(), time.perf_counter())),
    }
    for f in frames[::50]:  # the what-if measures the same thing
        lean, real = measure_lean(f), measure(f)
        assert (lean.peak_dbfs, lean.clipped) == (real.peak_dbfs, real.clipped)
        assert abs(lean.rms_dbfs - real.rms_dbfs) < 1e-4
    # What on_caller_audio does per frame: measure, 3 labelled observes (+ a rare clip inc).
    parts_us = micro["measure"] + 3 * micro["observe_labelled"] + micro["perf_counter_pair"]
    lean_us = micro["measure_lean"] + 3 * micro["observe_child"] + micro["perf_counter_pair"]

    # /metrics: one scrape of a populated registry, amortised over a 5 s scrape interval and
    # the 10 calls an instance carries (bench.calls: the loop is near its limit at N = 10).
    scrape_s = statistics.median(timeit.repeat(lambda: generate_latest(metrics.registry),
                                               number=50, repeat=5,
                                               timer=time.thread_time)) / 50
    scrape_us_per_call_frame = scrape_s * 1e6 / (5 * FRAMES_PER_S) / 10

    current_us = inbound_us + micro["observe_child"]  # outbound: the encode-time observe
    duplex_us = 2 * inbound_us
    lean_duplex_us = 2 * lean_us
    call_cost = measured_call_cost()

    def shares(us: float) -> dict[str, float | None]:
        return {"of_codec_floor_pct": round(100 * us / CODEC_FLOOR_US, 2),
                "of_measured_call_pct": round(100 * us / call_cost["us_per_20ms_frame"], 2)
                if call_cost else None}

    result: dict[str, Any] = {
        "benchmark": "metrics_cost",
        "command": "python -m bench.metrics_cost "
                   f"--frames {args.frames} --repeat {args.repeat}",
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": {"python": platform.python_version(), "cpu": platform.processor() or
                    platform.machine(), "cores": os.cpu_count(),
                    "loadavg_1m_at_start": round(load_at_start, 2)},
        "clock": "time.thread_time (CPU of the benchmark thread)",
        "frames_per_pass": args.frames,
        "repeat": args.repeat,
        "on_caller_audio_us_per_frame": {"metered": round(metered_us, 2),
                                         "bare": round(bare_us, 2),
                                         "metering": round(inbound_us, 2)},
        "micro_us": {k: round(v, 3) for k, v in micro.items()},
        "metering_parts_us_per_frame": round(parts_us, 2),
        "lean_metering_us_per_frame": round(lean_us, 2),
        "scrape_ms": round(scrape_s * 1000, 3),
        "scrape_us_per_call_frame": round(scrape_us_per_call_frame, 4),
        "per_call_us_per_20ms": {
            "current": round(current_us, 2),
            "full_duplex": round(duplex_us, 2),
            "full_duplex_lean": round(lean_duplex_us, 2),
        },
        "call_cost": {"codec_floor_us_per_20ms": CODEC_FLOOR_US, "measured": call_cost},
        "share": {"current": shares(current_us), "full_duplex": shares(duplex_us),
                  "full_duplex_lean": shares(lean_duplex_us)},
        "target_pct": TARGET_PCT,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")

    print(f"on_caller_audio per 20 ms frame, CPU (median of {args.repeat} x {args.frames}; "
          f"load average {load_at_start:.1f}):")
    print(f"  metered {metered_us:6.2f} us   bare {bare_us:6.2f} us   "
          f"metering {inbound_us:6.2f} us")
    print("  parts: " + ", ".join(f"{k} {v:.2f} us" for k, v in micro.items()))
    print(f"  scrape {scrape_s * 1000:.2f} ms -> {scrape_us_per_call_frame:.3f} us per call-frame")
    for name, us in (("current", current_us), ("full duplex", duplex_us),
                     ("full duplex, lean", lean_duplex_us)):
        s = shares(us)
        measured = (f", {s['of_measured_call_pct']:.2f} % of the measured call "
                    f"({call_cost['us_per_20ms_frame']:.0f} us)" if call_cost else "")
        print(f"  {name:18s}: {us:6.2f} us per call per 20 ms = "
              f"{s['of_codec_floor_pct']:.2f} % of the codec floor ({CODEC_FLOOR_US:.0f} us)"
              f"{measured}")
    print(f"  -> {RESULTS}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
