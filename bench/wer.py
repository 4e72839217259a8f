"""Recogniser WER across voices, speaking rates, noise and the phone path, with CPU per audio
second, memory, start-up time and turn latency, for each recogniser the engine offers.

    python -m bench.wer                      # every recogniser setting, the whole test set
    python -m bench.wer --asr whisper --quick
    python -m bench.wer --no-latency
    python -m bench.wer --asr whisper,whisper-prev --cache /tmp/wer-clips.pkl \
        --conditions clean,fast,snr10,phone --voices espeak-us-m,espeak-scot  # iterating

Each recogniser is measured in its own process (clean memory numbers): the test set is
synthesised (bench/wer_corpus.py) and streamed through the engine's own input path (wire
format -> soxr -> silero VAD -> recogniser, 20 ms appends, ``Listener`` as a session drives
it), so Whisper's decode-at-the-pause and pocketsphinx's streaming both run as in a call.
Turn latency: the engine as its own process, the fixture phrases streamed in real time
(bench/localrt_latency.py's client), speech end -> first response audio, silence 500 ms.
Results go to bench/results/wer.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import pickle
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from dataclasses import replace
from pathlib import Path
from typing import Any

from bench.wer_corpus import CONDITIONS, SETS, Clip, clips, wer

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "wer.json"
#: What each round turned on, turned off again: the default before round 7 (no third decode
#: when the two disagree, a beam's hypothesis cut short can win), and before round 6 (also
#: the second decode slowed by WSOLA, pitch kept). Older settings build on these.
_BEFORE_7: dict[str, Any] = {"asr_third_by": "", "asr_short_share": 0.0}
_BEFORE_6: dict[str, Any] = {**_BEFORE_7, "asr_stretch_by": "wsola"}
#: name -> EngineConfig fields that differ from the defaults (each is also a server flag)
BACKENDS: dict[str, dict[str, Any]] = {
    "whisper": {},
    # round 7's low-SNR filter of the third decode's audio (not the default: dev gain, test
    # loss)
    "whisper-thirdlow": {"asr_third_low_snr": 13.0},
    "whisper-prev6": _BEFORE_7,
    "whisper-prev5": _BEFORE_6,
    # round 5's SNR-adaptive Wiener filter (not the default; measured on test as "whisper"
    # against "whisper-prev4", the default then and now)
    "whisper-lowsnr": {**_BEFORE_6, "asr_low_snr": 13.0},
    # the default before round 4 (no candidate expansion scored by teacher forcing)
    "whisper-prev3": {**_BEFORE_6, "asr_expand": 0},
    # the default before round 3 (no per-word bonus in the n-best ranking)
    "whisper-prev2": {**_BEFORE_6, "asr_word_bonus": 0.0, "asr_expand": 0},
    # the default before the dev/test round (no Wiener filter, no stretched second decode)
    "whisper-prev": {**_BEFORE_7, "asr_wiener": 0.0, "asr_stretch": 1.0,
                     "asr_word_bonus": 0.0, "asr_expand": 0},
    # the Wiener filter without the stretched second decode (half the decoder CPU)
    "whisper-wiener": {**_BEFORE_7, "asr_stretch": 1.0, "asr_word_bonus": 0.0,
                       "asr_expand": 0},
    # before rescoring and pre-emphasis (the "previous default" of the round before)
    "whisper-norescore": {"asr_lm_weight": 0.0, "asr_preemphasis": 0.0, "asr_wiener": 0.0,
                          "asr_stretch": 1.0, "asr_word_bonus": 0.0, "asr_expand": 0},
    "whisper-greedy": {"asr_beam_size": 1, "asr_lm_weight": 0.0, "asr_wiener": 0.0,
                       "asr_stretch": 1.0, "asr_word_bonus": 0.0, "asr_expand": 0},
    "pocketsphinx": {"asr": "pocketsphinx"}}
_FLAGS = {"asr": "--asr", "asr_beam_size": "--asr-beam", "asr_lm_weight": "--asr-lm-weight",
          "asr_preemphasis": "--asr-preemphasis", "asr_wiener": "--asr-wiener",
          "asr_stretch": "--asr-stretch", "asr_stretch_by": "--asr-stretch-by",
          "asr_third_by": "--asr-third-by", "asr_short_share": "--asr-short-share",
          "asr_third_low_snr": "--asr-third-low-snr",
          "asr_word_bonus": "--asr-word-bonus",
          "asr_expand": "--asr-expand", "asr_low_snr": "--asr-low-snr",
          "asr_low_floor": "--asr-low-floor"}


def backend_flags(name: str) -> list[str]:
    """The engine's command-line flags for a recogniser setting (its turn latency is
    measured on the engine as its own process)."""
    return [arg for field, value in BACKENDS[name].items()
            for arg in (_FLAGS[field], str(value))]


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def transcribe(asr: Any, vads: Any, item: Clip) -> str:
    """One clip through the engine's input path; the turns' transcripts joined."""
    from gateway.localrt.listener import Listener, SpeechStopped
    from gateway.localrt.sessionconfig import TurnDetection

    listener = Listener(vads.acquire(), asr.recognizer())
    listener.configure(item.fmt, TurnDetection("server_vad"))  # type: ignore[arg-type]
    step = (48 if item.fmt == "audio/pcm" else 8) * 20
    heard = []
    for at in range(0, len(item.wire), step):
        for ev in listener.push(item.wire[at:at + step]):
            if isinstance(ev, SpeechStopped):
                heard.append(asr.finalize(ev.utterance).text)
    vads.release(listener.close())
    return " ".join(heard)


def test_set(args: argparse.Namespace) -> list[Clip]:
    """The clips, synthesised, or read from ``--cache`` (written there the first time: the
    synthesis is deterministic, so a cached set is the same set)."""
    voices = args.voices.split(",") if args.voices else None
    conditions = args.conditions.split(",") if args.conditions else None
    if args.quick:
        conditions = conditions or ["clean", "snr10", "phone"]
    if args.cache and Path(args.cache).exists():
        items: list[Clip] = pickle.loads(Path(args.cache).read_bytes())
    else:
        items = clips(phrases=4 if args.quick else None, phrase_set=args.set)
        if args.cache:
            Path(args.cache).write_bytes(pickle.dumps(items))
    in_domain, open_ = SETS[args.set]
    phrases = set(in_domain + open_)
    quick = set(in_domain[:4] + open_[:4])
    if not all(c.reference in phrases for c in items):
        raise SystemExit(f"{args.cache} holds clips that are not the {args.set} set's")
    return [c for c in items if (voices is None or c.voice in voices)
            and (conditions is None or c.condition in conditions)
            and (not args.quick or c.reference in quick)]


def measure_recogniser(name: str, args: argparse.Namespace) -> dict[str, Any]:
    """Runs in a child process: load, then decode the test set."""
    from gateway.localrt.config import EngineConfig
    from gateway.localrt.recognition import load
    from gateway.localrt.vad import SileroPool

    items = test_set(args)
    vads = SileroPool(1)
    cfg = replace(EngineConfig(), **BACKENDS[name])
    rss0, t0 = rss_mb(), time.perf_counter()
    asr = load(cfg)
    startup_s, rss_load = time.perf_counter() - t0, rss_mb() - rss0
    transcribe(asr, vads, items[0])  # first-call allocations, as the engine's warm-up does
    groups: dict[str, list[tuple[str, str]]] = defaultdict(list)
    cpu, audio = 0.0, 0.0
    examples: dict[str, str] = {}
    for item in items:
        c0 = time.process_time()
        hyp = transcribe(asr, vads, item)
        cpu += time.process_time() - c0
        audio += item.seconds
        group = f"{item.voice}|{item.condition}|{'domain' if item.domain else 'open'}"
        groups[group].append((item.reference, hyp))
        if hyp != item.reference:
            examples.setdefault(group, f"{item.reference!r} -> {hyp!r}")
    asr.close()
    return {"startup_s": round(startup_s, 2), "rss_mb": round(rss_load, 1),
            "peak_rss_mb": round(rss_mb(), 1),
            "cpu_per_audio_s": round(cpu / audio, 3), "audio_s": round(audio, 1),
            "wer": {g: round(wer(pairs), 4) for g, pairs in groups.items()},
            "errors": examples}


def turn_latency(name: str) -> dict[str, Any]:
    from bench.localrt_latency import SILENCE_MS, run_stream, start_engine
    from tests.fixtures.make_speech import PHRASES

    proc, url = start_engine(*backend_flags(name))
    try:
        turns = asyncio.run(run_stream(url, list(PHRASES)))
    finally:
        proc.terminate()
        proc.wait(10)
    lat = sorted(t.latency_ms for t in turns if t.latency_ms is not None)
    return {"silence_ms": SILENCE_MS, "turns": len(turns),
            "p50_ms": round(statistics.median(lat), 1) if lat else None,
            "max_ms": round(lat[-1], 1) if lat else None,
            "budget_ms": SILENCE_MS + 300}


def summarise(kind: str, r: dict[str, Any]) -> None:
    table: dict[str, dict[str, float]] = defaultdict(dict)
    for group, value in r["wer"].items():
        voice, condition, kind_of = group.split("|")
        table[voice][f"{condition}/{kind_of}"] = value
    conds = [c for c in CONDITIONS if any(f"{c}/domain" in row for row in table.values())]
    print(f"\n== {kind}: start-up {r['startup_s']} s, +{r['rss_mb']} MB RSS, "
          f"CPU {r['cpu_per_audio_s']} s per audio s ({r['audio_s']} s of audio)")
    if "latency" in r:
        lat = r["latency"]
        print(f"   turn latency p50 {lat['p50_ms']} ms, max {lat['max_ms']} ms "
              f"(budget {lat['budget_ms']} ms = silence {lat['silence_ms']} + 300)")
    print("   WER in-domain / open, %")
    print(f"   {'voice':18}" + "".join(f"{c:>13}" for c in conds))
    for voice, row in table.items():
        cells = "".join(f"{row.get(c + '/domain', 0) * 100:6.1f}/"
                        f"{row.get(c + '/open', 0) * 100:5.1f} " for c in conds)
        print(f"   {voice:18}{cells}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--asr", default=",".join(BACKENDS),
                        help=f"comma-separated, of: {', '.join(BACKENDS)}")
    parser.add_argument("--set", choices=list(SETS), default="test",
                        help="phrase set: dev (tune settings on it) or test (report on it)")
    parser.add_argument("--quick", action="store_true", help="4+4 phrases, 3 conditions")
    parser.add_argument("--voices", help="comma-separated voice labels (default: all)")
    parser.add_argument("--conditions", help=f"comma-separated, of: {', '.join(CONDITIONS)}")
    parser.add_argument("--cache", help="pickle of the synthesised set (written if absent)")
    parser.add_argument("--no-latency", action="store_true")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(measure_recogniser(args.child, args)))
        return 0
    if args.cache:
        test_set(args)  # synthesised once, before the children read it
    results: dict[str, Any] = {"cores": os.cpu_count(), "load_avg": os.getloadavg()[0]}
    subset = ["--set", args.set, *(["--quick"] if args.quick else []),
              *(["--voices", args.voices] if args.voices else []),
              *(["--conditions", args.conditions] if args.conditions else []),
              *(["--cache", args.cache] if args.cache else [])]
    for kind in args.asr.split(","):
        out = subprocess.run([sys.executable, "-m", "bench.wer", "--child", kind, *subset],
                             cwd=ROOT, check=True, capture_output=True, text=True).stdout
        r = json.loads(out.strip().splitlines()[-1])
        if not args.no_latency:
            r["latency"] = turn_latency(kind)
        r["load_avg"] = round(os.getloadavg()[0], 2)
        r["date"] = time.strftime("%Y-%m-%d %H:%M")
        results[kind] = r
        summarise(kind, r)
    if not (args.quick or args.voices or args.conditions or args.set != "test"):
        # settings not measured this time keep their last full run (each has its date)
        old = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
        RESULTS.write_text(json.dumps({**old, **results}, indent=1) + "\n")
        print(f"\nwrote {RESULTS.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
