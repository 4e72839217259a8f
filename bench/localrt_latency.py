"""Local engine benchmark: turn latency, CPU per live stream, recogniser word error rate.

    python -m bench.localrt_latency                    # 2 rounds of 11 phrases, then 3 streams
    python -m bench.localrt_latency --rounds 1 --streams 2

The engine runs as its own process, started exactly as the gateway starts it
(``python -m gateway localrt``, shipped defaults). Clients speak the fixture phrases
(``tests/fixtures/speech``) over ``/v1/realtime`` **in real time** (20 ms appends on a wall-clock
schedule, silence between turns, as a microphone does), with server VAD at 500 ms:

- latency: from the moment the last voiced 20 ms of a phrase is sent to the first
  ``response.output_audio.delta`` received, per turn -> p50 / p95 (target: p50 <=
  silence_duration_ms + 300 ms);
- CPU per live stream: utime+stime of the engine process (``/proc/<pid>/stat``) over the
  wall time of a run, divided by its concurrent streams: one stream on a fresh engine
  ("cold": every reply synthesised), the same stream again ("warm": the engine's sentence
  cache answers the templated replies), then ``--streams`` streams on a fresh engine;
- WER: the transcripts the engine sent (``input_audio_transcription.completed``) against the
  fixtures' reference text, plus an offline pass of the same recogniser over the fixtures as
  PCM 24 kHz and as G.711 µ-law 8 kHz (a phone leg).

Results: ``bench/results/localrt.json``; a summary is printed.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import soxr

from tests.fixtures.make_speech import PHRASES, load

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "localrt.json"
CHUNK_MS = 20
SILENCE_MS = 500
VOICED = 300  # |sample| above this (~-41 dBFS) counts as voice when finding the speech end


@dataclass
class Turn:
    phrase: str
    latency_ms: float | None
    transcript: str
    reply: str = ""


@dataclass
class StreamRun:
    streams: int
    wall_s: float
    cpu_s: float
    turns: list[Turn] = field(default_factory=list)

    @property
    def cores_per_stream(self) -> float:
        return self.cpu_s / self.wall_s / self.streams


# -- the engine process ------------------------------------------------------------------------

def start_engine(*options: str) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway.localrt", "--host", "127.0.0.1", "--port", "0",
         "--log-level", "WARNING", *options], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    m = re.search(r"listening on http://([\d.]+:\d+)", line)
    if not m:
        proc.kill()
        raise RuntimeError(f"engine did not start: {line!r}")
    return proc, f"ws://{m.group(1)}/v1/realtime?model=bench"


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# -- one real-time client -----------------------------------------------------------------------

def wire_audio(name: str) -> tuple[bytes, float]:
    """A phrase as PCM16 24 kHz bytes, and where its voice ends (ms from its start)."""
    samples, rate = load(name)
    pcm = np.asarray(soxr.resample(samples, rate, 24_000), dtype=np.int16)
    voiced = np.nonzero(np.abs(pcm.astype(np.int32)) > VOICED)[0]
    end_ms = (voiced[-1] + 1) / 24.0 if len(voiced) else 0.0
    return pcm.astype("<i2").tobytes(), end_ms


async def run_stream(url: str, phrases: list[str]) -> list[Turn]:
    audio = {name: wire_audio(name) for name in set(phrases)}
    chunk = 48 * CHUNK_MS
    events: list[tuple[float, dict[str, Any]]] = []
    got = asyncio.Event()
    loop = asyncio.get_running_loop()
    async with aiohttp.ClientSession() as http, http.ws_connect(
            url, headers={"Authorization": "Bearer bench"}, max_msg_size=0) as ws:

        async def read() -> None:
            async for msg in ws:
                if msg.type == aiohttp.WSMsgType.TEXT:
                    events.append((loop.time(), json.loads(msg.data)))
                    got.set()

        reader = asyncio.create_task(read())
        try:
            await ws.send_json({"type": "session.update", "session": {
                "type": "realtime", "output_modalities": ["audio"],
                "audio": {"input": {"format": {"type": "audio/pcm", "rate": 24000},
                                    "transcription": {"model": "local"},
                                    "turn_detection": {"type": "server_vad",
                                                       "silence_duration_ms": SILENCE_MS}},
                          "output": {"format": {"type": "audio/pcm", "rate": 24000}}}}})
            t_next = loop.time()

            async def send(data: bytes) -> float:
                """Appends on a real-time schedule; returns when the last one left."""
                nonlocal t_next
                for at in range(0, len(data), chunk):
                    t_next += CHUNK_MS / 1000
                    await asyncio.sleep(max(0.0, t_next - loop.time()))
                    await ws.send_str(json.dumps({"type": "input_audio_buffer.append",
                                                  "audio": base64.b64encode(
                                                      data[at:at + chunk]).decode()}))
                return loop.time()

            turns: list[Turn] = []
            for name in phrases:
                data, end_ms = audio[name]
                cut = int(end_ms / CHUNK_MS + 1) * chunk
                mark = len(events)
                await send(data[:cut])
                t_end = loop.time()  # the last voiced chunk has just left
                await send(data[cut:])
                turn = Turn(name, None, "")
                deadline = loop.time() + 15
                while loop.time() < deadline:  # silence, as a microphone sends, until done
                    new = [e for _, e in events[mark:]]
                    if any(e["type"] == "response.done" for e in new):
                        break
                    await send(bytes(chunk * 5))
                for t, e in events[mark:]:
                    if e["type"] == "conversation.item.input_audio_transcription.completed":
                        turn.transcript = e["transcript"]
                    elif e["type"] == "response.output_audio.delta" and turn.latency_ms is None:
                        turn.latency_ms = (t - t_end) * 1000
                    elif e["type"] == "response.output_audio_transcript.done":
                        turn.reply = e["transcript"]
                turns.append(turn)
                await send(bytes(chunk * 15))  # a breath before the next phrase
            return turns
        finally:
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)


async def measure(url: str, pid: int, streams: int, phrases: list[str]) -> StreamRun:
    cpu0, t0 = cpu_seconds(pid), time.monotonic()
    rotations = [phrases[i:] + phrases[:i] for i in range(streams)]
    results = await asyncio.gather(*(run_stream(url, r) for r in rotations))
    run = StreamRun(streams, time.monotonic() - t0, cpu_seconds(pid) - cpu0)
    for turns in results:
        run.turns.extend(turns)
    return run


# -- word error rate ----------------------------------------------------------------------------

def words(text: str) -> list[str]:
    return re.sub(r"[^a-z0-9' ]", " ", text.lower()).split()


def edit_distance(ref: list[str], hyp: list[str]) -> int:
    row = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        prev, row[0] = row[0], i
        for j, h in enumerate(hyp, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (r != h))
    return row[-1]


def wer(pairs: list[tuple[str, str]]) -> float:
    errors = sum(edit_distance(words(ref), words(hyp)) for ref, hyp in pairs)
    return errors / max(1, sum(len(words(ref)) for ref, _ in pairs))


def offline_wer() -> dict[str, Any]:
    """The engine's own input path (resampler, silero, both decoders) over every fixture."""
    from gateway.audio.g711 import ulaw_encode
    from gateway.localrt.engine import Engine
    from gateway.localrt.listener import Listener, SpeechStopped
    from gateway.localrt.sessionconfig import TurnDetection

    engine = Engine()
    out: dict[str, Any] = {}
    try:
        for fmt, rate in (("audio/pcm", 24_000), ("audio/pcmu", 8_000)):
            listener = Listener(engine.vads.acquire(), engine.asr.recognizer())
            listener.configure(fmt, TurnDetection("server_vad"))  # type: ignore[arg-type]
            pairs, detail = [], {}
            for name, (_, ref) in PHRASES.items():
                samples, src = load(name)
                pcm = np.asarray(soxr.resample(samples, src, rate), dtype=np.int16)
                pcm = np.concatenate((pcm, np.zeros(rate, dtype=np.int16)))
                wire = pcm.astype("<i2").tobytes() if fmt == "audio/pcm" else ulaw_encode(pcm)
                step = len(wire) // len(pcm) * rate // 50
                heard = []
                for at in range(0, len(wire), step):
                    for ev in listener.push(wire[at:at + step]):
                        if isinstance(ev, SpeechStopped):
                            heard.append(engine.asr.finalize(ev.utterance).text)
                hyp = " ".join(heard)
                pairs.append((ref, hyp))
                detail[name] = hyp
            engine.vads.release(listener.close())
            out[fmt] = {"wer": round(wer(pairs), 4), "transcripts": detail}
    finally:
        engine.close()
    return out


# -- main ---------------------------------------------------------------------------------------

def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(q / 100 * (len(s) - 1))))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=2,
                        help="times one stream goes through the 11 phrases")
    parser.add_argument("--streams", type=int, default=3, help="concurrent streams, 2nd run")
    args = parser.parse_args(argv)

    runs: dict[str, StreamRun] = {}
    proc, url = start_engine()
    try:
        # A fresh engine: every reply is synthesised for the first time (cold sentence cache).
        runs["cold"] = asyncio.run(measure(url, proc.pid, 1, list(PHRASES)))
        if args.rounds > 1:  # the same phrases again: templated replies now come from cache
            runs["warm"] = asyncio.run(measure(url, proc.pid, 1,
                                               list(PHRASES) * (args.rounds - 1)))
    finally:
        proc.terminate()
        proc.wait(20)
    if args.streams > 1:
        proc, url = start_engine()
        try:
            runs["concurrent"] = asyncio.run(measure(url, proc.pid, args.streams,
                                                     list(PHRASES)))
        finally:
            proc.terminate()
            proc.wait(20)
    single = StreamRun(1, 0, 0, [t for k in ("cold", "warm") if k in runs
                                 for t in runs[k].turns])
    latencies = [t.latency_ms for t in single.turns if t.latency_ms is not None]
    live_pairs = [(PHRASES[t.phrase][1], t.transcript) for t in single.turns]
    offline = offline_wer()
    result: dict[str, Any] = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "load_avg_at_end": os.getloadavg()},
        "silence_duration_ms": SILENCE_MS,
        "latency_ms": {"turns": len(latencies), "missing": len(single.turns) - len(latencies),
                       "p50": round(statistics.median(latencies), 1),
                       "p95": round(pct(latencies, 95), 1),
                       "min": round(min(latencies), 1), "max": round(max(latencies), 1),
                       "target_p50": SILENCE_MS + 300},
        "cpu": {"target": 0.15, **{
            f"cores_per_stream_{k}": round(r.cores_per_stream, 4) for k, r in runs.items()},
            "streams_concurrent": args.streams if "concurrent" in runs else None},
        "wer": {"live_pcm24k": round(wer(live_pairs), 4),
                "offline_pcm24k": offline["audio/pcm"]["wer"],
                "offline_pcmu8k": offline["audio/pcmu"]["wer"]},
        "turns": [asdict(t) for t in single.turns],
        "offline_transcripts": {k: v["transcripts"] for k, v in offline.items()},
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    lat, cpu, w = result["latency_ms"], result["cpu"], result["wer"]
    print(f"local engine, {lat['turns']} turns, server VAD {SILENCE_MS} ms")
    print(f"  end of speech -> first audio: p50 {lat['p50']} ms, p95 {lat['p95']} ms "
          f"(target p50 <= {lat['target_p50']} ms)")
    print("  CPU per live stream (cores): " + ", ".join(
        f"{k} {v}" for k, v in cpu.items() if k.startswith("cores")) + " (target 0.15)")
    print(f"  WER: live {w['live_pcm24k']:.1%}, offline PCM 24 kHz {w['offline_pcm24k']:.1%}, "
          f"offline µ-law 8 kHz {w['offline_pcmu8k']:.1%}")
    print(f"  -> {RESULTS.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
