"""The WebSocket leg: server programs speaking Realtime over a WebSocket to the gateway.

Unlike WebRTC, the client receives agent audio as ``response.output_audio.delta`` events
and owns playback (and so truncation), exactly as with OpenAI's WebSocket endpoint.
"""

from __future__ import annotations

import time

from aiohttp import web

from ..audio.formats import FRAME_BYTES, FRAME_MS, PCM_BYTES_PER_MS, WireFormat
from ..audio.rechunk import Rechunker
from ..audio.wire import WireDecoder
from .base import LegSink
from .event_socket import EventSocket
from .playout import QueuedFrame


class WebSocketLeg:
    transport = "websocket"
    forwards_audio_events = True
    audio_active = False

    def __init__(self, ws: web.WebSocketResponse, sink: LegSink, *, max_event_bytes: int,
                 queue_size: int = 2000, output_format: WireFormat = "audio/pcm") -> None:
        self.ws = ws
        self._sink = sink
        self._socket = EventSocket(ws, on_text=sink.on_client_text, on_gone=sink.on_leg_gone,
                                   max_event_bytes=max_event_bytes, queue_size=queue_size,
                                   on_error=sink.on_leg_error)
        self.send_event = self._socket.send_event
        self._start = time.monotonic()
        self._agent_cursor_ms = 0.0
        self._chunkers: dict[str, Rechunker] = {}
        self._played: dict[str, float] = {}
        self._decoder = WireDecoder(output_format)

    async def run(self) -> None:
        """Read client events until the socket closes."""
        await self._socket.run()

    def set_output_format(self, fmt: WireFormat) -> None:
        """The client chose another output format: the recording still gets PCM 24 kHz."""
        if fmt != self._decoder.format:
            self._decoder = WireDecoder(fmt)

    # The client plays audio itself; the gateway places it in the recording in order of
    # arrival, never before real time (its best knowledge of when the client heard it).
    def play_audio(self, audio: bytes, item_id: str, response_id: str) -> None:
        pcm = audio if self._decoder.format == "audio/pcm" else \
            self._decoder.decode(audio).tobytes()
        ch = self._chunkers.setdefault(item_id, Rechunker(FRAME_BYTES))
        for frame in ch.push(pcm):
            self._emit(QueuedFrame(frame, item_id, response_id, float(FRAME_MS)))

    def end_audio(self, item_id: str) -> None:
        ch = self._chunkers.pop(item_id, None)
        if ch is not None:
            pending = ch.pending
            tail = ch.flush()
            if tail is not None:
                self._emit(QueuedFrame(tail, item_id, "", pending / PCM_BYTES_PER_MS))

    def _emit(self, frame: QueuedFrame) -> None:
        now_ms = (time.monotonic() - self._start) * 1000
        self._agent_cursor_ms = max(self._agent_cursor_ms, now_ms)
        self._played[frame.item_id] = self._played.get(frame.item_id, 0.0) + frame.audio_ms
        self._sink.on_agent_frame(frame, self._agent_cursor_ms)
        self._agent_cursor_ms += FRAME_MS

    def interrupt(self) -> tuple[str | None, float]:
        return None, 0.0

    def played_ms(self, item_id: str) -> float:
        return self._played.get(item_id, 0.0)

    async def close(self) -> None:
        await self._socket.close()
