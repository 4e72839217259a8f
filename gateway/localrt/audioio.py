"""The engine's audio edges: wire formats in (to 16 kHz for VAD and ASR) and out.

Conversion happens only here. Input is PCM16 24 kHz or G.711 at 8 kHz; silero and
pocketsphinx both want 16 kHz, so everything is resampled to 16 kHz with a streaming soxr
resampler that keeps its state across appends (no seams at chunk edges).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from gateway.audio.g711 import alaw_decode, alaw_encode, ulaw_decode, ulaw_encode

from .sessionconfig import WireFormat

ANALYSIS_RATE = 16_000
Samples = npt.NDArray[np.int16]


def wire_rate(fmt: WireFormat) -> int:
    return 24_000 if fmt == "audio/pcm" else 8_000


def bytes_per_ms(fmt: WireFormat) -> int:
    return 48 if fmt == "audio/pcm" else 8


def check_wire_bytes(fmt: WireFormat, data: bytes) -> str | None:
    """Why ``data`` cannot be audio of ``fmt``, or None."""
    if fmt == "audio/pcm" and len(data) % 2:
        return (f"audio/pcm is 16-bit PCM: {len(data)} bytes is not a whole number of "
                "samples.")
    return None


class InputDecoder:
    """Wire bytes of one format -> 16 kHz PCM16, streaming."""

    def __init__(self, fmt: WireFormat) -> None:
        import soxr

        self.format = fmt
        # float32, not int16: soxr dithers integer output with a random seed, so the same
        # call gave different samples (and now and then different words) from run to run.
        self._resampler = soxr.ResampleStream(wire_rate(fmt), ANALYSIS_RATE, 1,
                                              dtype="float32")

    def decode(self, data: bytes) -> Samples:
        if self.format == "audio/pcm":
            pcm = np.frombuffer(data, dtype="<i2").astype(np.int16)
        elif self.format == "audio/pcmu":
            pcm = ulaw_decode(data)
        else:
            pcm = alaw_decode(data)
        out = self._resampler.resample_chunk(pcm.astype(np.float32))
        samples: Samples = np.clip(np.rint(out), -32768, 32767).astype(np.int16)
        return samples


def encode_output(samples: Samples, fmt: WireFormat) -> bytes:
    """PCM16 already at ``wire_rate(fmt)`` -> wire bytes."""
    if fmt == "audio/pcm":
        return samples.astype("<i2").tobytes()
    if fmt == "audio/pcmu":
        return ulaw_encode(samples)
    return alaw_encode(samples)
