"""Cut a byte stream of arbitrary chunk sizes into fixed-size frames."""

from __future__ import annotations


class Rechunker:
    def __init__(self, frame_bytes: int) -> None:
        self.frame_bytes = frame_bytes
        self._buf = bytearray()

    def push(self, data: bytes) -> list[bytes]:
        self._buf += data
        n = len(self._buf) // self.frame_bytes
        if n == 0:
            return []
        cut = n * self.frame_bytes
        out = [bytes(self._buf[i : i + self.frame_bytes]) for i in range(0, cut, self.frame_bytes)]
        del self._buf[:cut]
        return out

    def flush(self, pad: int = 0) -> bytes | None:
        """The partial frame left over, padded to a whole frame with ``pad`` bytes."""
        if not self._buf:
            return None
        out = bytes(self._buf) + bytes([pad]) * (self.frame_bytes - len(self._buf))
        self._buf.clear()
        return out

    def clear(self) -> None:
        self._buf.clear()

    @property
    def pending(self) -> int:
        return len(self._buf)
