"""A sideband connection: a server program attached to a live call (``GET /v1/realtime
?call_id=…``, OpenAI's "server-side controls"; GPT-Live's ``/v1/live/sessions/{id}/attach``).

It receives the call's events as the call's client does (in the call's API: GA Realtime or
Live, without ``gateway.*`` events) and may send client events of its own, under the same
policy as everyone: it holds an API key, so it is trusted like an OpenAI key holder unless
the profile says ``lock_api_keys``. Its errors come back to it, not to the caller. A Live
sideband also hears the caller, reflected as ``session.input_audio.append`` events (PCM16
24 kHz, 100 ms each, no event_id), as OpenAI's does. Several may attach to one call; each
ends with the call, or alone when it closes or stops reading.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Callable

from aiohttp import web

from gateway.ids import new_id
from gateway.legs.event_socket import EventSocket

from . import policy
from .session import CallSession
from .state import Event, Sender

#: Reflected caller audio goes out in pieces of this many bytes (100 ms of PCM16 24 kHz).
REFLECT_BYTES = 4800
Check = Callable[[Event, Callable[[Event], None]], list[Event]]

log = logging.getLogger("gateway.sideband")
audit = logging.getLogger("gateway.audit")


class Sideband:
    def __init__(self, ws: web.WebSocketResponse, call: CallSession, *, max_event_bytes: int,
                 queue_size: int = 2000, check: Check | None = None,
                 reflect_audio: bool = False, greet: bool = True) -> None:
        self.id = new_id("sb", 8)
        self.call = call
        self._socket = EventSocket(ws, on_text=self._on_text, on_gone=self._on_gone,
                                   max_event_bytes=max_event_bytes, queue_size=queue_size)
        self.send_event = self._socket.send_event
        self._sender = Sender(policy.API_KEY, self._socket.send_event)
        #: The API's own checks of a client event (Live is strict), errors to this sideband.
        self._check = check
        self._reflect = reflect_audio
        self._greet = greet
        self._audio = bytearray()

    def _on_text(self, text: str) -> None:
        self.call.on_client_text(text, sender=self._sender, check=self._check)

    def _on_caller_audio(self, pcm: bytes, rms_dbfs: float, offset_ms: float) -> None:
        self._audio += pcm
        if len(self._audio) >= REFLECT_BYTES:
            self.send_event({"type": "session.input_audio.append",
                             "audio": base64.b64encode(self._audio).decode()})
            self._audio.clear()

    def _on_gone(self, reason: str) -> None:
        self.call.detach_sideband(self)
        if reason != "client_closed":
            log.info("sideband %s on %s dropped: %s", self.id, self.call.call_id, reason)

    async def run(self) -> None:
        """Serve the attachment until either side ends it."""
        call = self.call
        call.attach_sideband(self)
        if self._reflect:
            call.hooks.caller_audio.append(self._on_caller_audio)
        audit.info("sideband_attach call_id=%s sideband=%s", call.call_id, self.id)
        if self._greet:
            self.send_event({"type": "session.created", "event_id": new_id("event"),
                             "session": call.client_session(call.effective)})
        try:
            await self._socket.run()
        finally:
            call.detach_sideband(self)
            if self._on_caller_audio in call.hooks.caller_audio:
                call.hooks.caller_audio.remove(self._on_caller_audio)
            await self._socket.close()
            audit.info("sideband_detach call_id=%s sideband=%s", call.call_id, self.id)

    async def close(self) -> None:
        await self._socket.close()


