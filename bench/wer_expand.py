"""Candidate expansion around the recogniser's n-best, scored by Whisper teacher forcing
(CTranslate2 ``Whisper.align``), on the development set's cached utterances and n-best dumps
(``bench.wer_nbest dump``): does putting sentences the beam never found (``localrt.expand``)
in front of Whisper and the domain LM fix the errors re-ranking cannot?

    python -m bench.wer_expand dump --utterances /tmp/ears-dev-utt.pkl \
        --nbest /tmp/ears2-nbest-0.pkl --out /tmp/ears4-exp-0.pkl [--jitter SEED]
    python -m bench.wer_expand rank --exp /tmp/ears4-exp-0.pkl --try rounds=1,lm=0.3,bonus=1

``dump`` encodes each utterance (as heard and slowed to 0.85, as ``WhisperModel`` does), takes
the two best distinct hypotheses of the kept n-best as parents, generates their candidates,
and scores parents, candidates and the whole n-best by teacher forcing on the parent's audio
(start sequence without the prompt: ~4x cheaper). A second round expands the best candidate
again. ``rank`` re-ranks offline: a candidate's Whisper score is its parent's beam score plus
the teacher-forced difference (``score=delta``), or everything by teacher forcing alone
(``score=align``; no end token there, align's probabilities leave it out).
"""

from __future__ import annotations

import argparse
import pickle
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from bench.wer_corpus import jittered, wer


class Scorer:
    def __init__(self) -> None:
        from gateway.localrt import whisper
        from gateway.localrt.domainlm import DomainLm
        from gateway.localrt.phrases import domain_sentences

        self.model = whisper.WhisperModel(1)
        self.lm = DomainLm(domain_sentences())

    def encode(self, audio: Any) -> Any:
        import ctranslate2

        from gateway.localrt.logmel import log_mel

        d = self.model.decoding
        mel = log_mel(audio, min_frames=d.min_frames, denoise_noise=d.denoise,
                      preemphasis=d.preemphasis, wiener_floor=d.wiener)
        enc = self.model._model.encode(ctranslate2.StorageView.from_array(mel[None]),
                                       to_cpu=True)
        return np.asarray(enc), mel.shape[-1]

    def align(self, enc: Any, texts: list[str]) -> list[float]:
        return self.model.forced(enc[0], enc[1], texts)[0] if texts else []


def default_pick(texts: list[str], totals: list[float], lm: Any, weight: float = 0.3,
                 bonus: float = 1.0) -> int:
    from gateway.localrt import whisper
    from gateway.localrt.textnorm import spoken

    return whisper.best_hypothesis([spoken(t) for t in texts], totals, lm,
                                   spoken(whisper.DOMAIN_PROMPT), weight, bonus)


def dump(args: argparse.Namespace) -> None:
    from gateway.localrt.expand import candidates
    from gateway.localrt.textnorm import spoken
    from gateway.localrt.timestretch import stretch

    utts = pickle.loads(Path(args.utterances).read_bytes())
    utts = jittered(utts, args.jitter)
    nbest = pickle.loads(Path(args.nbest).read_bytes())
    sc = Scorer()
    lm, vocab = sc.lm, sc.lm.vocabulary
    out = []
    t_start = time.time()
    for n, ((item, samples), (voice, cond, dom, ref, per)) in enumerate(zip(utts, nbest,
                                                                           strict=True)):
        assert item.reference == ref
        if (voice.startswith("piper") and not args.piper) or \
                (args.voices and voice not in args.voices.split(",")):
            continue
        recs: list[dict[str, Any] | None] = []
        for s, (hyps, ns, _) in zip(samples, per, strict=True):
            if ns > 0.6 or not hyps:
                recs.append(None)
                continue
            c0 = time.process_time()
            encs = [sc.encode(s), sc.encode(stretch(s, sc.model.decoding.stretch))]
            t_enc = time.process_time() - c0
            audio_of = [0 if i < 3 else 1 for i in range(len(hyps))]
            texts = [h[0] for h in hyps]
            totals = [h[1] for h in hyps]
            # every n-best hypothesis by teacher forcing on its own audio
            c0 = time.process_time()
            nb_align = [0.0] * len(hyps)
            for a in (0, 1):
                idx = [i for i in range(len(hyps)) if audio_of[i] == a]
                for i, v in zip(idx, sc.align(encs[a], [texts[i] for i in idx]), strict=True):
                    nb_align[i] = v
            t_nb = time.process_time() - c0
            # round 1: the two best distinct hypotheses are parents
            order = sorted(range(len(hyps)), key=lambda i: -(totals[i] + 0.3 * lm.logprob(
                spoken(texts[i])) + len(spoken(texts[i]).split())))
            parents: list[int] = []
            for i in order:
                if spoken(texts[i]) not in {spoken(texts[j]) for j in parents}:
                    parents.append(i)
                if len(parents) == 2:
                    break
            cands: list[tuple[str, int, int]] = []  # text, parent hyp, round
            seen = set(texts)
            for p in parents:
                for c in candidates(texts[p], lm, vocab, k=args.k, drops=True):
                    if c not in seen and len(cands) < args.limit:
                        seen.add(c)
                        cands.append((c, p, 1))
            c0 = time.process_time()
            cand_align = [0.0] * len(cands)
            for a in (0, 1):
                idx = [j for j, c in enumerate(cands) if audio_of[c[1]] == a]
                for j, v in zip(idx, sc.align(encs[a], [cands[j][0] for j in idx]),
                                strict=True):
                    cand_align[j] = v
            t_r1 = time.process_time() - c0
            est = [totals[c[1]] + cand_align[j] - nb_align[c[1]] for j, c in enumerate(cands)]
            best = default_pick(texts + [c[0] for c in cands], totals + est, lm)
            t_r2 = 0.0
            r2: list[tuple[str, int, float]] = []  # text, round-1 candidate index, align
            if best >= len(texts):
                j = best - len(texts)
                a = audio_of[cands[j][1]]
                more = [c for c in candidates(cands[j][0], lm, vocab, k=args.k, drops=True)
                        if c not in seen][:args.limit2]
                c0 = time.process_time()
                r2 = [(c, j, v) for c, v in zip(more, sc.align(encs[a], more), strict=True)]
                t_r2 = time.process_time() - c0
            recs.append({"hyps": hyps, "nb_align": nb_align, "parents": parents,
                         "cands": [(c, p, v) for (c, p, _), v in zip(cands, cand_align,
                                                                     strict=True)],
                         "r2": r2, "t": (t_enc, t_nb, t_r1, t_r2)})
        out.append((voice, cond, dom, ref, per, recs))
        if n % 50 == 0:
            print(n, len(utts), f"{time.time() - t_start:.0f} s", flush=True)
    Path(args.out).write_bytes(pickle.dumps(out))


def kind(parent: str, cand: str) -> str:
    """What edit made ``cand`` from ``parent`` (spoken forms): sub, dup, drop or dropend."""
    p, c = parent.split(), cand.split()
    if len(c) == len(p):
        return "sub"
    if len(c) > len(p):
        return "dup"
    return "dropend" if c == p[:len(c)] else "drop"


def choose(rec: Any, opts: dict[str, str], lm: Any, cost: list[int] | None = None) -> str:
    from gateway.localrt import whisper
    from gateway.localrt.textnorm import spoken

    hyps = rec["hyps"]
    rounds = int(opts.get("rounds", 1))
    mode = opts.get("score", "delta")
    limit = int(opts.get("limit", 99))
    kinds = set(opts.get("kinds", "sub+dup+drop+dropend").split("+"))
    texts = [h[0] for h in hyps]
    totals = list(rec["nb_align"]) if mode == "align" else [h[1] for h in hyps]
    cands = rec["cands"][:limit] if rounds >= 1 else []
    nparents = int(opts.get("parents", 2))
    kept = 0
    said = [spoken(h[0]) for h in hyps]
    guard = opts.get("again", "1") == "1"
    for c, p, v in cands:
        if guard and whisper.says_again(spoken(c), said):
            continue
        if kind(spoken(texts[p]), spoken(c)) not in kinds or \
                p not in rec["parents"][:nparents] or kept >= int(opts.get("n", 99)):
            continue
        kept += 1
        texts.append(c)
        totals.append(v if mode == "align" else hyps[p][1] + v - rec["nb_align"][p])
    if cost is not None:
        # sequences the engine would force: the kept candidates and their parents
        cost.append(kept + len({p for c, p, v in cands if kind(spoken(texts[p]), spoken(c))
                                in kinds and p in rec["parents"][:nparents]}) if kept else 0)
    if rounds >= 2:
        for c, j, v in rec["r2"]:
            c1, p, v1 = rec["cands"][j]
            if kind(spoken(c1), spoken(c)) not in kinds or \
                    kind(spoken(texts[p]), spoken(c1)) not in kinds:
                continue
            texts.append(c)
            totals.append(v if mode == "align" else hyps[p][1] + v - rec["nb_align"][p])
    best = default_pick(texts, totals, lm, float(opts.get("lm", 0.3)),
                        float(opts.get("bonus", 1.0)))
    return whisper.unloop(spoken(texts[best]))


def rank(args: argparse.Namespace) -> None:
    from gateway.localrt.domainlm import DomainLm
    from gateway.localrt.phrases import domain_sentences

    lm = DomainLm(domain_sentences())
    out = pickle.loads(Path(args.exp).read_bytes())
    for spec in args.tries or ["rounds=0"]:
        opts = dict(p.split("=") for p in spec.split(",") if "=" in p)
        cells: dict[tuple[str, str, bool], list[tuple[str, str]]] = defaultdict(list)
        fixed, broke = 0, 0
        cost: list[int] = []
        for voice, cond, dom, ref, _per, recs in out:
            hyp = " ".join(choose(r, opts, lm, cost) if r else "" for r in recs)
            hyp = " ".join(hyp.split())
            base = " ".join(" ".join(choose(r, {"rounds": "0"}, lm) if r else ""
                                     for r in recs).split())
            fixed += hyp == ref and base != ref
            broke += hyp != ref and base == ref
            cells[(voice, cond, dom)].append((ref, hyp))
            if args.show and hyp != base:
                print(f"  {'+' if hyp == ref else '-' if base == ref else '~'} {voice}|{cond}"
                      f" REF {ref!r}\n      WAS {base!r}\n      NOW {hyp!r}")
        rates = {k: wer(v) for k, v in cells.items()}
        dom = [x for (v, c, d), x in rates.items() if d]
        opn = [x for (v, c, d), x in rates.items() if not d]
        sc = [x for (v, c, d), x in rates.items() if d and v in ("espeak-scot", "espeak-carib")]
        ok = sum(1 for (v, c, d), x in rates.items() if d and c != "phone" and x <= 0.15)
        by: dict[str, list[float]] = defaultdict(list)
        for (_v, c, d), x in rates.items():
            if d:
                by[c].append(x)
        conds = " ".join(f"{c} {statistics.mean(x) * 100:.1f}" for c, x in by.items())
        print(f"{spec:36} domain {statistics.mean(dom) * 100:5.2f} open "
              f"{statistics.mean(opn) * 100:5.2f} scot+carib "
              f"{statistics.mean(sc or [0.0]) * 100:5.2f}"
              f" cells<=15 {ok}/25 fixed {fixed} broken {broke} forced mean "
              f"{statistics.mean(cost):.1f} p50 {sorted(cost)[len(cost) // 2]} | {conds}",
              flush=True)


def cpu(args: argparse.Namespace) -> None:
    out = pickle.loads(Path(args.exp).read_bytes())
    t = [r["t"] for *_, recs in out for r in recs if r]
    n = [len(r["cands"]) + len(r["r2"]) for *_, recs in out for r in recs if r]
    for i, name in enumerate(("encode x2", "n-best align", "round 1 align", "round 2 align")):
        xs = sorted(x[i] for x in t)
        print(f"{name:14} mean {statistics.mean(xs) * 1e3:6.1f} ms p50 "
              f"{xs[len(xs) // 2] * 1e3:6.1f} p90 {xs[len(xs) * 9 // 10] * 1e3:6.1f} ms")
    print(f"candidates per utterance: mean {statistics.mean(n):.1f} max {max(n)}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("what", choices=("dump", "rank", "cpu"))
    parser.add_argument("--utterances")
    parser.add_argument("--nbest")
    parser.add_argument("--out")
    parser.add_argument("--exp")
    parser.add_argument("--jitter", type=int, default=0)
    parser.add_argument("--k", type=int, default=6)
    parser.add_argument("--limit", type=int, default=40)
    parser.add_argument("--limit2", type=int, default=20)
    parser.add_argument("--show", action="store_true")
    parser.add_argument("--voices")
    parser.add_argument("--piper", action="store_true", help="the engine's own voice too")
    parser.add_argument("--try", dest="tries", action="append", default=[])
    args = parser.parse_args(argv)
    {"dump": dump, "rank": rank, "cpu": cpu}[args.what](args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
