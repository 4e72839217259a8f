"""Keeping a call's conversation across upstream connections.

When the upstream WebSocket drops (or reports ``session_expired``) the call is not ended:
the keeper reconnects with backoff and re-seeds the new session with the conversation so far
(as text items: what the caller said and what the agent said *as heard*). Before the
upstream's maximum session length it rolls over on its own, between turns, so the caller
hears no gap at all.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from gateway.obs.metrics import bounded
from gateway.upstream.client import (
    UpstreamConnection,
    UpstreamError,
    gateway_event_id,
)

from .recording import cut_transcript
from .session import CallSession, ItemState

log = logging.getLogger("gateway.continuity")

Connect = Callable[[], Awaitable[tuple[UpstreamConnection, dict[str, Any]]]]
MAX_TURNS = 40


class UpstreamKeeper:
    def __init__(self, session: CallSession, connect: Connect, *, rollover_s: float,
                 budget_s: float = 30.0) -> None:
        self.session = session
        self._connect = connect
        self._budget_s = budget_s
        self.turns: deque[tuple[str, str]] = deque(maxlen=MAX_TURNS)
        self._busy = False
        self._tasks: set[asyncio.Task[None]] = set()
        self.gaps_ms: list[float] = []
        session.on_upstream_lost = self._lost
        h = session.hooks
        h.caller_text.append(lambda item, text: self.turns.append(("user", text)))
        h.agent_text.append(self._agent_text)
        h.interrupted.append(self._interrupted)
        h.on_close.append(self._close)
        self._idle_event = asyncio.Event()
        h.playout.append(self._wake)
        h.upstream_event.append(self._wake)
        self._rollover: asyncio.TimerHandle | None = None
        if rollover_s > 0:
            self._rollover = asyncio.get_running_loop().call_later(rollover_s, self._roll)

    def _idle(self) -> bool:
        s = self.session
        return s.active_response is None and not (s.leg is not None and s.leg.audio_active)

    def _wake(self, *_: Any) -> None:
        self._idle_event.set()

    def _agent_text(self, item_id: str, st: ItemState) -> None:
        text = st.transcript if st.truncated_ms is None else cut_transcript(
            st.transcript, st.truncated_ms, st.received_ms)
        self.turns.append(("assistant", text))

    def _interrupted(self, item_id: str, heard_ms: int, st: ItemState | None) -> None:
        # The transcript arrived before the cut: keep only what was heard.
        if st is not None and self.turns and self.turns[-1] == ("assistant", st.transcript):
            self.turns[-1] = ("assistant", cut_transcript(st.transcript, heard_ms,
                                                          st.received_ms))

    def _spawn(self, coro: Any) -> None:
        task: asyncio.Task[None] = asyncio.create_task(coro, name="upstream-keeper")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _lost(self, code: str) -> None:
        if not self._busy:
            self._spawn(self._recover(code))

    def _roll(self) -> None:
        self._rollover = None
        if not self._busy:
            self._spawn(self._rollover_when_idle())

    async def _recover(self, code: str) -> None:
        self._busy = True
        s = self.session
        s.note("note", text=f"upstream lost ({code}); reconnecting")
        lost_at = time.monotonic()
        delay = 0.2
        try:
            while time.monotonic() - lost_at < self._budget_s:
                try:
                    conn = await self._reseeded()
                except UpstreamError as e:
                    log.info("upstream reconnect failed (%s); retrying in %.1f s", e.code, delay)
                    await asyncio.sleep(delay * random.uniform(0.8, 1.2))
                    delay = min(delay * 2, 4.0)
                    continue
                old = s.swap_upstream(conn)
                if old is not None:
                    await old.close()
                gap = (time.monotonic() - lost_at) * 1000
                self.gaps_ms.append(gap)
                s.metrics.upstream_reconnects.labels(bounded(code)).inc()
                s.note("reconnected", text=f"upstream reconnected after {gap:.0f} ms")
                return
            s.request_close("upstream_closed")
        finally:
            self._busy = False

    async def _rollover_when_idle(self) -> None:
        s = self.session
        self._busy = True
        try:
            # Between turns: no response in progress and nothing left to play (or 2 min).
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(120):
                    while not self._idle():
                        self._idle_event.clear()
                        await self._idle_event.wait()
            started = time.monotonic()
            conn = await self._reseeded()
            old = s.swap_upstream(conn)
            if old is not None:
                await old.close()
            self.gaps_ms.append((time.monotonic() - started) * 1000)
            s.metrics.upstream_reconnects.labels("rollover").inc()
            s.note("note", text="upstream session rolled over")
        except UpstreamError as e:
            log.warning("upstream rollover failed (%s); the call goes on", e.code)
        finally:
            self._busy = False

    async def _reseeded(self) -> UpstreamConnection:
        conn, _effective = await self._connect()
        for role, text in self.turns:
            if not text:
                continue
            kind = "input_text" if role == "user" else "output_text"
            conn.send({"type": "conversation.item.create",
                       "event_id": gateway_event_id(),
                       "item": {"type": "message", "role": role,
                                "content": [{"type": kind, "text": text}]}})
        return conn

    async def _close(self, reason: str) -> None:
        if self._rollover is not None:
            self._rollover.cancel()
        for t in list(self._tasks):
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
