"""The models, loaded once per process at start-up and shared by every session."""

from __future__ import annotations

import logging
import time

import numpy as np

from .config import EngineConfig
from .recognition import load
from .tts import Voice
from .vad import SileroPool

log = logging.getLogger(__name__)


class Engine:
    """Blocking to build (~2-3 s: piper voice, the recogniser, silero instances): build it in
    a thread, before the first session, never per session."""

    def __init__(self, config: EngineConfig | None = None) -> None:
        self.config = config or EngineConfig()
        t0 = time.perf_counter()
        self.voice = Voice(self.config.tts_threads)
        self.asr = load(self.config)
        self.vads = SileroPool(self.config.vad_prewarm)
        self._warm_up()
        log.info("local engine ready in %.2f s", time.perf_counter() - t0)

    def _warm_up(self) -> None:
        # onnxruntime's and the recognisers' first calls allocate; pay that here, not in a call.
        self.voice.synthesize("Hello.", 24_000)
        rec = self.asr.recognizer()
        rec.start()
        rec.feed(np.zeros(16_000, dtype=np.int16))
        self.asr.finalize(rec.finish())

    def close(self) -> None:
        self.asr.close()
