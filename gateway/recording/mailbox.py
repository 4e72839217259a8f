"""The bounded hand-off from the event loop (one producer) to a writer thread (one consumer).

The producer never blocks and never takes a lock: ``deque.append``/``popleft`` are atomic
under the GIL, and each byte counter is written by one side only. When the budget is spent an
offer is refused and the producer counts the drop; control messages (sync, close) always get in.
The consumer is woken only per batch (``wake_items``) or for control messages; otherwise it
drains on its own tick, so 50 frames a second cost no context switches.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future
from typing import Any, NamedTuple


class Audio(NamedTuple):
    channel: int  # 0 = caller (left), 1 = agent (right)
    pcm: bytes
    offset_ms: float


class Line(NamedTuple):
    kind: str
    speaker: str | None
    text: str | None
    item_id: str | None
    offset_ms: float
    extra: dict[str, Any]


class Sync(NamedTuple):
    done: Future[None]


class Close(NamedTuple):
    end_offset_ms: float
    end_reason: str
    extra: dict[str, Any]
    dropped: dict[str, Any]


Message = Audio | Line | Sync | Close


class Mailbox:
    def __init__(self, *, max_items: int, max_bytes: int, wake_items: int = 64) -> None:
        self.max_items = max_items
        self.max_bytes = max_bytes
        self._wake_items = wake_items
        self._q: deque[Message] = deque()
        self._wake = threading.Event()
        self._in_bytes = 0  # producer only
        self._out_bytes = 0  # consumer only

    def __len__(self) -> int:
        return len(self._q)

    @property
    def queued_bytes(self) -> int:
        return self._in_bytes - self._out_bytes

    def offer(self, msg: Message, nbytes: int, *, item_slack: int = 0) -> bool:
        """Enqueue unless over budget (``item_slack`` extra items for precious small messages)."""
        if (len(self._q) >= self.max_items + item_slack
                or self._in_bytes - self._out_bytes + nbytes > self.max_bytes):
            return False
        self._q.append(msg)
        self._in_bytes += nbytes
        if len(self._q) >= self._wake_items and not self._wake.is_set():
            self._wake.set()
        return True

    def put(self, msg: Message) -> None:
        """Control messages: always accepted, wake the consumer now."""
        self._q.append(msg)
        self._wake.set()

    def wait(self, timeout: float) -> None:
        self._wake.wait(timeout)
        # Cleared before draining: a message appended after this point is drained now or
        # sets the event again, so no wake-up is lost.
        self._wake.clear()

    def drain(self) -> Iterator[Message]:
        q = self._q
        while q:
            msg = q.popleft()
            if isinstance(msg, Audio):
                self._out_bytes += len(msg.pcm)
            yield msg
