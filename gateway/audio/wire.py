"""Audio in a Realtime wire format to the internal PCM16 24 kHz, as a stream.

A client on the WebSocket may speak PCM 24 kHz or G.711 at 8 kHz (``audio/pcmu``,
``audio/pcma``); levels, the recording and the supervisors' mix always see PCM 24 kHz. The
upsampler keeps its filter state between chunks, so a stream cut into appends anywhere is
converted as one.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from .formats import WireFormat
from .g711 import alaw_decode, ulaw_decode
from .resample import Interpolator, up_8k_to_24k


class WireDecoder:
    def __init__(self, fmt: WireFormat) -> None:
        self.format: WireFormat = fmt
        self._up: Interpolator | None = None if fmt == "audio/pcm" else up_8k_to_24k()

    def bytes_ok(self, data: bytes) -> bool:
        """PCM16 needs whole samples; G.711 is a byte a sample."""
        return self.format != "audio/pcm" or len(data) % 2 == 0

    def decode(self, data: bytes) -> npt.NDArray[np.int16]:
        if self._up is None:
            return np.frombuffer(data, dtype="<i2")
        pcm8 = ulaw_decode(data) if self.format == "audio/pcmu" else alaw_decode(data)
        return self._up.process(pcm8)
