"""The optional Ogg/Opus copy of a recording (PyAV's libopus), encoded on the writer thread.

Stereo at the recording's own 24 kHz (libopus takes 24 kHz input natively; no resampling).
The copy is for long-term storage; the WAV stays the reference. After a crash the partial
Ogg is thrown away and re-encoded from the repaired WAV (``encode_wav``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from ..audio.formats import SAMPLE_RATE
from . import wav

#: 32 kbit/s for both channels: speech stays clear at ~13 MB an hour (VBR: silence costs
#: far less). bench/recording_cost.py measures it.
BIT_RATE = 32_000
#: An archive copy has no latency budget: 60 ms frames and complexity 5 halve the encoder's
#: CPU against libopus' defaults (20 ms, 10) and save ~12 % of the size (measured on
#: synthetic two-sided speech: 7.9 -> 4.0 ms CPU per call-second).
ENCODER_OPTIONS = {"compression_level": "5", "frame_duration": "60"}


class OpusWriter:
    def __init__(self, path: Path, *, bit_rate: int = BIT_RATE) -> None:
        import av  # only calls that want an Opus copy pay for importing PyAV

        self._av: Any = av
        self._container: Any = av.open(str(path), mode="w", format="ogg")
        self._stream: Any = self._container.add_stream(
            "libopus", rate=SAMPLE_RATE, layout="stereo", options=dict(ENCODER_OPTIONS))
        self._stream.bit_rate = bit_rate
        self._closed = False

    def write(self, stereo: npt.NDArray[np.int16]) -> None:
        """Interleaved PCM16, shape ``(n, 2)``; PyAV re-frames it into Opus packets."""
        if len(stereo) == 0:
            return
        frame = self._av.AudioFrame.from_ndarray(
            np.ascontiguousarray(stereo).reshape(1, -1), format="s16", layout="stereo")
        frame.sample_rate = SAMPLE_RATE
        for packet in self._stream.encode(frame):
            self._container.mux(packet)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            for packet in self._stream.encode(None):
                self._container.mux(packet)
        finally:
            self._container.close()


def encode_wav(src: Path, dst: Path, *, block_samples: int = SAMPLE_RATE * 10) -> None:
    """Encode a stereo 24 kHz WAV written by this package into an Ogg/Opus file."""
    rate, channels, data_bytes = wav.read_format(src)
    if rate != SAMPLE_RATE or channels != 2:
        raise ValueError(f"{src.name}: expected stereo {SAMPLE_RATE} Hz, got {channels}ch {rate}")
    tmp = dst.with_name(f".{dst.name}.tmp")
    enc = OpusWriter(tmp)
    try:
        with src.open("rb") as f:
            f.seek(wav.HEADER_BYTES)
            left = data_bytes
            while left > 0:
                chunk = f.read(min(left, block_samples * 4))
                if not chunk:
                    break
                left -= len(chunk)
                enc.write(np.frombuffer(chunk, dtype="<i2").reshape(-1, 2))
    finally:
        enc.close()
    tmp.replace(dst)
