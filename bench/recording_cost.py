"""What recording costs: CPU per call-second (writer thread included) and disk per hour.

Feeds a 60 s two-sided call (turns alternating, speech-like synthetic audio, a quiet floor
in between, offsets jittered like a real loop) in 20 ms frames as fast as the writer takes
them, and measures the process CPU time (``time.process_time``: every thread) from
``CallRecorder.start`` to ``wait_closed`` (finalize and checksums included), for the WAV
alone and with the Ogg/Opus copy. The loop-side cost of one ``caller_audio`` call is timed
separately (``time.thread_time`` on the loop thread).

    python -m bench.recording_cost [--seconds 60] [--repeat 3]

Writes ``bench/results/recording.json`` and prints a summary.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from gateway.audio.formats import FRAME_BYTES, FRAME_MS, FRAME_SAMPLES, SAMPLE_RATE
from gateway.recording import CallRecorder

RESULTS = Path(__file__).with_name("results") / "recording.json"


def speechlike(seconds: float, seed: int) -> npt.NDArray[np.int16]:
    """Voiced harmonics on a wandering pitch, syllable-rate envelope, a little breath noise."""
    rng = np.random.default_rng(seed)
    n = round(seconds * SAMPLE_RATE)
    t = np.arange(n) / SAMPLE_RATE
    pitch = 140 + 40 * np.sin(2 * np.pi * 0.7 * t + rng.uniform(0, 6))
    phase = 2 * np.pi * np.cumsum(pitch) / SAMPLE_RATE
    x = np.zeros(n)
    for k in range(1, 12):
        x += np.sin(k * phase) / k
    env = np.clip(np.sin(2 * np.pi * 4 * t + rng.uniform(0, 6)), 0, None) ** 0.5
    x = x * env + rng.normal(0, 0.05, n)
    peak = float(np.max(np.abs(x)))
    out: npt.NDArray[np.int16] = (x * (0.4 * 32767 / peak)).astype(np.int16)
    return out


def call_frames(seconds: int) -> tuple[list[bytes], list[bytes]]:
    """Caller and agent frames: turns of ~3-5 s alternate; the listener side sends a quiet floor
    (caller, as WebRTC does) or nothing (agent: silence is never 'played')."""
    rng = np.random.default_rng(1)
    caller = np.asarray(rng.integers(-40, 41, seconds * SAMPLE_RATE), dtype=np.int16)
    agent = np.zeros(seconds * SAMPLE_RATE, dtype=np.int16)
    pos, turn = 0, 0
    while pos < len(caller):
        length = int(rng.uniform(3, 5) * SAMPLE_RATE)
        seg = speechlike(length / SAMPLE_RATE, turn)[: len(caller) - pos]
        (caller if turn % 2 == 0 else agent)[pos:pos + len(seg)] = seg
        pos += length + int(0.6 * SAMPLE_RATE)
        turn += 1

    def split(x: npt.NDArray[np.int16]) -> list[bytes]:
        return [x[i:i + FRAME_SAMPLES].tobytes() for i in range(0, len(x), FRAME_SAMPLES)]

    return split(caller), split(agent)


async def one_call(root: Path, seconds: int, opus: bool, n: int) -> dict[str, Any]:
    caller, agent = call_frames(seconds)
    rng = np.random.default_rng(2)
    jitter = rng.uniform(-3, 3, len(caller))
    cpu0 = time.process_time()
    rec = CallRecorder.start(root, f"bench_{n}", started_at=time.time(),
                             metadata={"transport": "bench"}, opus_copy=opus)
    for i, (c, a) in enumerate(zip(caller, agent, strict=True)):
        t = i * FRAME_MS + jitter[i]
        rec.caller_audio(c, t)
        if a.count(0) != FRAME_BYTES:
            rec.agent_audio(a, t)
        if i % 250 == 249:  # 5 s at a time: as fast as the writer goes, nothing dropped
            await rec.flush()
    rec.close("bench", {})
    await rec.wait_closed()
    cpu = time.process_time() - cpu0
    assert rec.dropped["caller_ms"] == 0 == rec.dropped["agent_ms"], rec.dropped
    d = rec.directory
    wav = (d / "audio.wav").stat().st_size
    ogg = (d / "audio.opus").stat().st_size if opus else 0
    return {"cpu_s": cpu, "wav_bytes": wav, "opus_bytes": ogg}


def loop_side_us(root: Path, calls: int = 20_000) -> float:
    """Per ``caller_audio`` call, on the loop thread only (the mailbox append)."""
    async def run() -> float:
        rec = CallRecorder.start(root, "bench_loop", started_at=time.time(), metadata={},
                                 queue_items=calls + 10, queue_bytes=(calls + 10) * FRAME_BYTES)
        frame = bytes(FRAME_BYTES)
        t0 = time.thread_time()
        for i in range(calls):
            rec.caller_audio(frame, i * FRAME_MS)
        dt = time.thread_time() - t0
        rec.close("bench", {})
        await rec.wait_closed()
        return dt / calls * 1e6

    return asyncio.run(run())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--seconds", type=int, default=60)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="recbench-"))
    try:
        runs: dict[str, list[dict[str, Any]]] = {"wav": [], "wav+opus": []}
        n = 0
        for _ in range(args.repeat):
            for name, opus in (("wav", False), ("wav+opus", True)):
                n += 1
                runs[name].append(asyncio.run(one_call(tmp, args.seconds, opus, n)))
        loop_us = loop_side_us(tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    frames_per_s = 1000 / FRAME_MS
    result: dict[str, Any] = {
        "benchmark": "recording_cost",
        "call_seconds": args.seconds,
        "repeat": args.repeat,
        "machine": {"python": platform.python_version(), "cpu": platform.processor() or
                    platform.machine(), "cores": os.cpu_count()},
        "loop_side_us_per_audio_call": round(loop_us, 2),
    }
    for name, rs in runs.items():
        cpu = statistics.median(r["cpu_s"] for r in rs)
        per_call_s = cpu / args.seconds
        result[name] = {
            "cpu_s_median": round(cpu, 4),
            "cpu_ms_per_call_second": round(per_call_s * 1000, 3),
            "cpu_us_per_20ms_frame": round(per_call_s / frames_per_s * 1e6, 1),
            "share_of_20ms_frame_budget_pct": round(per_call_s * 100, 3),
            "calls_per_core": int(1 / per_call_s) if per_call_s else None,
        }
    wav_b = runs["wav"][0]["wav_bytes"]
    ogg_b = statistics.median(r["opus_bytes"] for r in runs["wav+opus"])
    hour = 3600 / args.seconds
    result["disk_per_hour_mb"] = {"wav": round(wav_b * hour / 1e6, 1),
                                  "opus": round(ogg_b * hour / 1e6, 2)}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")

    w, o = result["wav"], result["wav+opus"]
    print(f"recording cost over a {args.seconds} s call (median of {args.repeat}):")
    print(f"  WAV only    : {w['cpu_ms_per_call_second']:.2f} ms CPU per call-second = "
          f"{w['share_of_20ms_frame_budget_pct']:.2f} % of a 20 ms frame budget "
          f"({w['cpu_us_per_20ms_frame']:.0f} us/frame)")
    print(f"  WAV + Opus  : {o['cpu_ms_per_call_second']:.2f} ms CPU per call-second = "
          f"{o['share_of_20ms_frame_budget_pct']:.2f} % of a 20 ms frame budget "
          f"({o['cpu_us_per_20ms_frame']:.0f} us/frame)")
    print(f"  loop side   : {loop_us:.2f} us per caller_audio/agent_audio call")
    print(f"  disk / hour : WAV {result['disk_per_hour_mb']['wav']} MB, "
          f"Opus {result['disk_per_hour_mb']['opus']} MB")
    print(f"  -> {RESULTS}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
