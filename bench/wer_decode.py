"""Decoding settings compared on the utterances the engine's input path hands the
recogniser, without the input path: for tuning on the development set (``--set dev``).

    python -m bench.wer_decode --set dev --cache /tmp/wer-dev.pkl \
        --utterances /tmp/wer-dev-utt.pkl --conditions fast,snr10,phone \
        --try 'default' --try 'n_best=5,beam_size=5'

The first run streams each clip through the input path (wire format -> soxr -> silero VAD,
as bench/wer.py does) and keeps the utterances; later runs decode them with each ``--try``
(``whisper.Decoding`` fields, ``name=value`` comma-separated, ``prompt=`` last). WER is the
mean over the cells (voice x condition). CPU is the decoder's alone: indicative, not the
bench's figure.
"""

from __future__ import annotations

import argparse
import pickle
import statistics
import sys
import time
from collections import defaultdict
from dataclasses import fields
from pathlib import Path
from typing import Any

import numpy as np

from bench.wer import test_set
from bench.wer_corpus import Clip, jittered, wer

Utterances = list[tuple[Clip, list[np.ndarray[Any, Any]]]]


def collect(items: list[Clip]) -> Utterances:
    """Each clip's utterances as the listener ends them (the recogniser only records)."""
    from gateway.localrt.listener import Listener, SpeechStopped
    from gateway.localrt.sessionconfig import TurnDetection
    from gateway.localrt.vad import SileroPool
    from gateway.localrt.whisper import Heard
    from gateway.localrt.whisper_asr import WhisperRecognizer

    class Deaf:
        def transcribe(self, samples: Any) -> Heard:
            return Heard("", 0.0, "", 0.0)

    vads = SileroPool(1)
    out: Utterances = []
    for item in items:
        listener = Listener(vads.acquire(), WhisperRecognizer(Deaf()))  # type: ignore[arg-type]
        listener.configure(item.fmt, TurnDetection("server_vad"))  # type: ignore[arg-type]
        step = (48 if item.fmt == "audio/pcm" else 8) * 20
        utts = []
        for at in range(0, len(item.wire), step):
            for ev in listener.push(item.wire[at:at + step]):
                if isinstance(ev, SpeechStopped):
                    utts.append(ev.utterance.audio.copy())
        vads.release(listener.close())
        out.append((item, utts))
    return out


def parse(spec: str) -> dict[str, Any]:
    from gateway.localrt.whisper import Decoding

    kinds = {f.name: f.type for f in fields(Decoding)}
    out: dict[str, Any] = {}
    if "prompt=" in spec:  # last: the prompt's text may hold commas
        spec, out["prompt"] = spec.split("prompt=", 1)
    for part in filter(None, spec.split(",")):
        if part == "default":
            continue
        key, value = part.split("=", 1)
        if key not in kinds:
            raise SystemExit(f"not a Decoding field: {key}")
        kind = str(kinds[key])
        out[key] = (value == "1" if "bool" in kind else int(value) if kind == "int"
                    else value if "str" in kind else float(value))
    return out


def decode(utts: Utterances, spec: str) -> dict[str, Any]:
    from gateway.localrt.whisper import Decoding, WhisperModel

    model = WhisperModel(1, Decoding(**parse(spec)))
    cells: dict[tuple[str, str, bool], list[tuple[str, str]]] = defaultdict(list)
    cpu, audio = 0.0, 0.0
    misses = []
    for item, samples in utts:
        c0 = time.process_time()
        hyp = " ".join(model.transcribe(s).text for s in samples).strip()
        cpu += time.process_time() - c0
        audio += sum(len(s) for s in samples) / 16_000
        cells[(item.voice, item.condition, item.domain)].append((item.reference, hyp))
        if item.domain and hyp != item.reference:
            misses.append(f"{item.voice}|{item.condition}: {item.reference!r} -> {hyp!r}")
    rates = {k: wer(v) for k, v in cells.items()}
    dom = [r for (v, c, d), r in rates.items() if d and not v.startswith("piper")]
    opn = [r for (v, c, d), r in rates.items() if not d and not v.startswith("piper")]
    return {"spec": spec, "domain_mean": statistics.mean(dom), "open_mean": statistics.mean(opn),
            "cells": {f"{v}|{c}|{'domain' if d else 'open'}": r
                      for (v, c, d), r in rates.items()},
            "cpu": cpu / max(audio, 1e-9), "misses": misses}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--set", default="dev")
    parser.add_argument("--cache", required=True)
    parser.add_argument("--utterances", required=True)
    parser.add_argument("--voices")
    parser.add_argument("--conditions")
    parser.add_argument("--try", dest="tries", action="append", default=[])
    parser.add_argument("--show", action="store_true", help="print the in-domain misses")
    parser.add_argument("--jitter", type=int, default=0,
                        help="seed of a +-1 LSB perturbation of every utterance (0: none): "
                             "how far a setting's WER moves on a change nobody can hear")
    args = parser.parse_args(argv)
    args.quick = False
    path = Path(args.utterances)
    if path.exists():
        utts: Utterances = pickle.loads(path.read_bytes())
    else:
        every = argparse.Namespace(**{**vars(args), "voices": None, "conditions": None})
        utts = collect(test_set(every))
        path.write_bytes(pickle.dumps(utts))
    voices = args.voices.split(",") if args.voices else None
    conditions = args.conditions.split(",") if args.conditions else None
    utts = [(c, s) for c, s in utts if (voices is None or c.voice in voices)
            and (conditions is None or c.condition in conditions)]
    utts = jittered(utts, args.jitter)
    for spec in args.tries or ["default"]:
        r = decode(utts, spec)
        by_cond: dict[str, list[float]] = defaultdict(list)
        for key, rate in r["cells"].items():
            voice, cond, kind = key.split("|")
            if kind == "domain" and not voice.startswith("piper"):
                by_cond[cond].append(rate)
        conds = " ".join(f"{c} {statistics.mean(v) * 100:.1f}" for c, v in by_cond.items())
        print(f"{spec[:50]:50} domain {r['domain_mean'] * 100:5.1f} % open "
              f"{r['open_mean'] * 100:5.1f} % cpu {r['cpu']:.3f} | {conds}", flush=True)
        if args.show:
            print("\n".join(r["misses"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
