"""The canonical 44-byte PCM WAV header: kept true while the file grows, repaired after a crash."""

from __future__ import annotations

import os
import struct
from pathlib import Path

HEADER_BYTES = 44
#: RIFF sizes are 32-bit: past this the header cannot describe the data (about 12.4 h of
#: stereo 24 kHz PCM16), so the writer stops adding audio there.
MAX_DATA_BYTES = 0xFFFFFFFF - (HEADER_BYTES - 8)


def header(data_bytes: int, *, sample_rate: int, channels: int, sample_bytes: int = 2) -> bytes:
    block = channels * sample_bytes
    return struct.pack(
        "<4sI4s4sIHHIIHH4sI",
        b"RIFF", 36 + data_bytes, b"WAVE",
        b"fmt ", 16, 1, channels, sample_rate, sample_rate * block, block, sample_bytes * 8,
        b"data", data_bytes)


def update_sizes(fd: int, data_bytes: int) -> None:
    """Rewrite the two size fields in place (pwrite: the append position is untouched)."""
    os.pwrite(fd, struct.pack("<I", 36 + data_bytes), 4)
    os.pwrite(fd, struct.pack("<I", data_bytes), 40)


def read_format(path: Path) -> tuple[int, int, int]:
    """``(sample_rate, channels, data_bytes)`` from a canonical header written by this package."""
    with path.open("rb") as f:
        h = f.read(HEADER_BYTES)
    if len(h) < HEADER_BYTES or h[:4] != b"RIFF" or h[8:16] != b"WAVEfmt " or h[36:40] != b"data":
        raise ValueError(f"{path.name}: not a canonical PCM WAV")
    channels, rate = struct.unpack_from("<HI", h, 22)
    (data_bytes,) = struct.unpack_from("<I", h, 40)
    return rate, channels, data_bytes


def repair(path: Path, *, sample_rate: int, channels: int, sample_bytes: int = 2) -> int:
    """Make the header describe exactly the whole sample frames on disk; returns data bytes.

    After ``kill -9`` the data is longer than the header says (it is rewritten once a second)
    and the last sample frame may be cut: drop the partial frame, rewrite the header. A file
    shorter than a header (killed before its first write) becomes an empty WAV.
    """
    block = channels * sample_bytes
    with path.open("r+b") as f:
        size = os.fstat(f.fileno()).st_size
        data = max(0, size - HEADER_BYTES) // block * block
        data = min(data, MAX_DATA_BYTES // block * block)
        f.truncate(HEADER_BYTES + data)
        f.seek(0)
        f.write(header(data, sample_rate=sample_rate, channels=channels,
                       sample_bytes=sample_bytes))
        f.flush()
        os.fsync(f.fileno())
    return data
