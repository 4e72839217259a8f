"""GPT-Live test helpers: the official SDK's Live client (``client.live.connect()``) against
the engine, every server event validated against ``openai.types.live`` (tests/oracle.py)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

from tests.oracle import validate_live_server_event

from .helpers import Event, Probe

#: A session.start body for the engine (the model is echoed as "local-offline").
LIVE_SESSION: Event = {"model": "gpt-live-1", "instructions": "Be brief.",
                       "audio": {"format": {"type": "audio/pcm", "rate": 24000},
                                 "output": {"voice": "marin"}}}


class LiveProbe(Probe):
    validate: Callable[[Event], None] = staticmethod(validate_live_server_event)
    close_is_normal = True  # Live closes the socket after session.closed

    async def append(self, audio: bytes, chunk_ms: int = 20, fmt: str = "audio/pcm",
                     realtime: float = 0.0) -> None:
        step = (48 if fmt == "audio/pcm" else 8) * chunk_ms
        for at in range(0, len(audio), step):
            await self.conn.session.input_audio.append(
                audio=base64.b64encode(audio[at:at + step]).decode())
            if realtime:
                await asyncio.sleep(chunk_ms / 1000 / realtime)

    async def start(self, **overrides: Any) -> Event:
        await self.conn.session.start(session={**LIVE_SESSION, **overrides})
        return await self.next("session.started")

    def said(self) -> str:
        return "".join(e["delta"] for e in self.of("session.output_transcript.delta"))


@contextlib.asynccontextmanager
async def connect_live(url: str) -> AsyncIterator[LiveProbe]:
    """``AsyncOpenAI(...).live.connect()`` pointed at the engine (``url`` ends in ``/v1``)."""
    from openai import AsyncOpenAI

    client = AsyncOpenAI(api_key="sk-local", websocket_base_url=url)
    try:
        async with client.live.connect() as conn:
            probe = LiveProbe(conn)
            async with probe:
                yield probe
    finally:
        await client.close()
