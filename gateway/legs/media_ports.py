"""The media port range (``media.port_min``/``port_max``): one port per call, handed out
least recently released first, and the 503 a call gets when none is free."""

from __future__ import annotations

from collections import deque

from ..errors import ApiError

PORTS_EXHAUSTED = "media_ports_exhausted"
RETRY_AFTER_S = 2


class PortRangeExhausted(ApiError):
    """Every port of the media range is in use: new calls are refused, none is harmed."""

    def __init__(self) -> None:
        super().__init__(503, PORTS_EXHAUSTED, "The gateway has no free media port for a new "
                         "call; retry shortly.", type_="server_error",
                         headers={"Retry-After": str(RETRY_AFTER_S)})


class PortAllocator:
    """The free ports of ``[port_min, port_max]``; least recently released first."""

    def __init__(self, port_min: int, port_max: int) -> None:
        if not (1 <= port_min <= port_max <= 65535):
            raise ValueError(f"media.port_min/port_max: need 1 <= min <= max <= 65535, got "
                             f"{port_min}..{port_max}")
        self.port_min = port_min
        self.port_max = port_max
        self._free: deque[int] = deque(range(port_min, port_max + 1))
        self._used: set[int] = set()

    @property
    def size(self) -> int:
        return self.port_max - self.port_min + 1

    @property
    def free(self) -> int:
        return len(self._free)

    @property
    def in_use(self) -> frozenset[int]:
        return frozenset(self._used)

    def __contains__(self, port: object) -> bool:
        return isinstance(port, int) and self.port_min <= port <= self.port_max

    def take(self) -> int:
        if not self._free:
            raise PortRangeExhausted()
        port = self._free.popleft()
        self._used.add(port)
        return port

    def release(self, port: int) -> None:
        if port in self._used:
            self._used.discard(port)
            self._free.append(port)
