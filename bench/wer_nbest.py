"""The recogniser's n-best lists on the development set, kept, and re-ranked offline: for
error analysis and for tuning what happens after the beam (LM weight, length bonus,
post-correction) without decoding again.

    python -m bench.wer_nbest dump --cache /tmp/ears-dev.pkl \
        --utterances /tmp/ears-dev-utt.pkl --out /tmp/ears-dev-nbest.pkl [--jitter SEED]
    python -m bench.wer_nbest show --nbest /tmp/ears-dev-nbest.pkl --voices espeak-scot
    python -m bench.wer_nbest rank --nbest /tmp/ears-dev-nbest.pkl --try lm=0.3,bonus=1
    python -m bench.wer_nbest analyse --nbest /tmp/ears-dev-nbest.pkl --voices espeak-scot

``dump`` decodes every utterance with the default ``Decoding`` (both decodes) and keeps each
decode's hypotheses (written text, summed log-probability, tokens) and the no-speech
probability; ``rank`` re-ranks them as ``WhisperModel._pick`` does, under other settings
(``lm=`` the LM weight, ``bonus=`` the per-word bonus); ``analyse`` sorts the wrong in-domain
utterances into classes (the right words in the n-best or not, out-of-domain words, digits)
and counts the word errors by kind.
"""

from __future__ import annotations

import argparse
import pickle
import statistics
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

from bench.wer_corpus import jittered, wer

#: One utterance's decodes: hypotheses (written, summed log-probability, tokens), no-speech.
Hyps = list[tuple[str, float, int]]


def dump(args: argparse.Namespace) -> None:
    from gateway.localrt import whisper

    utts = pickle.loads(Path(args.utterances).read_bytes())
    utts = jittered(utts, args.jitter)
    model = whisper.WhisperModel(1)
    kept: list[Hyps] = []
    no_speech: list[float] = []
    pick = model._pick

    def keep(hyps: Hyps) -> tuple[str, float]:
        kept.append(list(hyps))
        return pick(hyps)

    model._pick = keep  # type: ignore[method-assign]
    generate = model._generate

    def gen(*a: Any, **k: Any) -> Any:
        found, ns = generate(*a, **k)
        no_speech.append(ns)
        return found, ns

    model._generate = gen  # type: ignore[method-assign]
    out = []
    for n, (item, samples) in enumerate(utts):
        per = []
        for s in samples:
            kept.clear()
            no_speech.clear()
            heard = model.transcribe(s)
            per.append((list(kept[0]) if kept else [], no_speech[0] if no_speech else 0.0,
                        heard.text))
        out.append((item.voice, item.condition, item.domain, item.reference, per))
        if n % 50 == 0:
            print(n, len(utts), flush=True)
    Path(args.out).write_bytes(pickle.dumps(out))


Rank = Any  # a callable (hyps) -> spoken text


def ranker(spec: str) -> Rank:
    from gateway.localrt import whisper
    from gateway.localrt.domainlm import DomainLm
    from gateway.localrt.phrases import domain_sentences
    from gateway.localrt.textnorm import spoken

    opts = dict(p.split("=") for p in spec.split(",") if "=" in p)
    lm = DomainLm(domain_sentences())
    weight = float(opts.get("lm", 0.3))
    bonus = float(opts.get("bonus", 0.0))

    def rank(hyps: Hyps) -> str:
        if not hyps:
            return ""

        said = [spoken(h[0]) for h in hyps]
        echoes = (whisper.prompt_echoes(said, spoken(whisper.DOMAIN_PROMPT))
                  if "echo" in opts else set())

        def score(h: tuple[str, float, int]) -> float:
            s = spoken(h[0])
            drop = -1e9 if said.index(s) in echoes else 0.0
            return drop + whisper.rank_score(h[1], s, lm.logprob(s), weight, bonus)

        return whisper.unloop(spoken(max(hyps, key=score)[0]))

    return rank


def rank(args: argparse.Namespace) -> None:
    out = pickle.loads(Path(args.nbest).read_bytes())
    for spec in args.tries or ["lm=0.3"]:
        r = ranker(spec)
        cells: dict[tuple[str, str, bool], list[tuple[str, str]]] = defaultdict(list)
        for voice, cond, dom, ref, per in out:
            hyp = " ".join(r(h) if ns <= 0.6 else "" for h, ns, _ in per)
            cells[(voice, cond, dom)].append((ref, " ".join(hyp.split())))
        rates = {k: wer(v) for k, v in cells.items()}
        dom = [x for (v, c, d), x in rates.items() if d and not v.startswith("piper")]
        opn = [x for (v, c, d), x in rates.items() if not d and not v.startswith("piper")]
        sc = [x for (v, c, d), x in rates.items() if d and v in ("espeak-scot", "espeak-carib")]
        by: dict[str, list[float]] = defaultdict(list)
        for (v, c, d), x in rates.items():
            if d and not v.startswith("piper"):
                by[c].append(x)
        conds = " ".join(f"{c} {statistics.mean(x) * 100:.1f}" for c, x in by.items())
        print(f"{spec:28} domain {statistics.mean(dom) * 100:5.2f} open "
              f"{statistics.mean(opn) * 100:5.2f} scot+carib {statistics.mean(sc) * 100:5.2f}"
              f" | {conds}", flush=True)


def show(args: argparse.Namespace) -> None:
    from gateway.localrt.domainlm import DomainLm
    from gateway.localrt.phrases import domain_sentences
    from gateway.localrt.textnorm import spoken

    lm = DomainLm(domain_sentences())
    out = pickle.loads(Path(args.nbest).read_bytes())
    voices = args.voices.split(",") if args.voices else None
    for voice, cond, dom, ref, per in out:
        if voices and voice not in voices or not dom:
            continue
        hyp = " ".join(t for _, _, t in per)
        if " ".join(hyp.split()) == ref:
            continue
        print(f"== {voice}|{cond}\n  REF {ref}\n  HYP {hyp}")
        for hyps, ns, _ in per:
            for w, s, n in sorted(hyps, key=lambda h: -(h[1] + 0.3 * lm.logprob(spoken(h[0])))):
                sp = spoken(w)
                print(f"    {s:7.2f} lm {lm.logprob(sp):7.2f} n {n:2d} {'*' if sp == ref else ' '}"
                      f" {sp}")
            print(f"    (no-speech {ns:.2f})")


def _align(ref: list[str], hyp: list[str]) -> list[tuple[str, str, str]]:
    """Edit operations (kind, ref word, hyp word): ok / sub / del / ins."""
    n, m = len(ref), len(hyp)
    d = [[0] * (m + 1) for _ in range(n + 1)]
    for i in range(n + 1):
        d[i][0] = i
    for j in range(m + 1):
        d[0][j] = j
    for i in range(1, n + 1):
        for j in range(1, m + 1):
            d[i][j] = min(d[i - 1][j] + 1, d[i][j - 1] + 1,
                          d[i - 1][j - 1] + (ref[i - 1] != hyp[j - 1]))
    ops = []
    i, j = n, m
    while i or j:
        if i and j and d[i][j] == d[i - 1][j - 1] + (ref[i - 1] != hyp[j - 1]):
            ops.append(("ok" if ref[i - 1] == hyp[j - 1] else "sub", ref[i - 1], hyp[j - 1]))
            i, j = i - 1, j - 1
        elif i and d[i][j] == d[i - 1][j] + 1:
            ops.append(("del", ref[i - 1], ""))
            i -= 1
        else:
            ops.append(("ins", "", hyp[j - 1]))
            j -= 1
    return ops[::-1]


def analyse(args: argparse.Namespace) -> None:
    """Each wrong in-domain utterance sorted into one class, and its word errors counted."""
    from collections import Counter

    from gateway.localrt.domainlm import DomainLm
    from gateway.localrt.phrases import domain_sentences
    from gateway.localrt.textnorm import spoken
    from gateway.localrt.whisper import _DIGIT_WORDS

    lm = DomainLm(domain_sentences())
    vocab = lm.vocabulary
    r = ranker(args.tries[0] if args.tries else "lm=0.3")
    out = pickle.loads(Path(args.nbest).read_bytes())
    voices = args.voices.split(",") if args.voices else None
    classes: Counter[str] = Counter()
    words: Counter[str] = Counter()
    for voice, _cond, dom, ref, per in out:
        if voices and voice not in voices or not dom or len(per) != 1:
            continue
        hyps, ns, _ = per[0]
        hyp = r(hyps) if ns <= 0.6 else ""
        if hyp == ref:
            continue
        texts = {spoken(h[0]) for h in hyps}
        ops = [o for o in _align(ref.split(), hyp.split()) if o[0] != "ok"]
        digit = all((o[1] or o[2]) in _DIGIT_WORDS or o[1] in _DIGIT_WORDS for o in ops)
        oov = [w for w in hyp.split() if w not in vocab]
        if not hyp:
            cls = "nothing heard (no-speech gate)" if ns > 0.6 else "empty"
        elif ref in texts:
            shorter = len(hyp.split()) < len(ref.split())
            cls = "right one in the n-best, a shorter one chosen" if shorter else \
                "right one in the n-best, another chosen"
        elif oov:
            cls = "not in the n-best; hypothesis has out-of-domain words"
        elif digit:
            cls = "not in the n-best; digits only, all words in-domain"
        else:
            cls = "not in the n-best; wrong in-domain words"
        classes[cls] += 1
        for kind, a, b in ops:
            isdigit = a in _DIGIT_WORDS or b in _DIGIT_WORDS
            words[f"{kind} {'digit' if isdigit else 'word'}"
                  f"{' (hyp word out of domain)' if b and b not in vocab else ''}"] += 1
    for k, v in classes.most_common():
        print(f"{v:4d}  {k}")
    print()
    for k, v in words.most_common():
        print(f"{v:4d}  {k}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("what", choices=("dump", "show", "rank", "analyse"))
    parser.add_argument("--utterances")
    parser.add_argument("--cache")
    parser.add_argument("--out")
    parser.add_argument("--nbest")
    parser.add_argument("--voices")
    parser.add_argument("--jitter", type=int, default=0)
    parser.add_argument("--try", dest="tries", action="append", default=[])
    args = parser.parse_args(argv)
    {"dump": dump, "show": show, "rank": rank, "analyse": analyse}[args.what](args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
