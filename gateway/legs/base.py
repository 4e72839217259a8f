"""The seam between a call and its downstream transport."""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from .playout import QueuedFrame


class LegSink(Protocol):
    """What a leg tells its call. Implemented by :class:`gateway.call.session.CallSession`."""

    def on_client_text(self, text: str) -> None: ...

    def on_caller_audio(self, pcm: npt.NDArray[np.int16], wire: bytes | None = None) -> None:
        ...

    def on_agent_frame(self, frame: QueuedFrame | None, offset_ms: float) -> None: ...

    def on_playout(self, started: bool, response_id: str) -> None: ...

    def on_leg_gone(self, reason: str) -> None: ...


class Leg(Protocol):
    transport: str

    def send_event(self, event: dict[str, Any]) -> None: ...

    def play_audio(self, pcm: bytes, item_id: str, response_id: str) -> None: ...

    def end_audio(self, item_id: str) -> None: ...

    def interrupt(self) -> tuple[str | None, float]:
        """Silence agent audio now; the item that was playing and its played ms."""

    def played_ms(self, item_id: str) -> float: ...

    @property
    def audio_active(self) -> bool: ...

    @property
    def forwards_audio_events(self) -> bool:
        """True when the client receives audio as events (WebSocket), not as media."""

    async def close(self) -> None: ...
