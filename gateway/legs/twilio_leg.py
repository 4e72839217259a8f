"""The Twilio leg: one Media Streams WebSocket after its ``start`` message.

Inbound, µ-law 8 kHz frames are decoded to PCM16 24 kHz for levels and the recording and,
in pass-through mode, handed on upstream byte for byte. Outbound, agent audio is cut into
20 ms µ-law frames and sent paced to real time, each followed by a ``mark``: Twilio echoes
a mark once the audio before it has played (or was dropped by ``clear``), so the marks, not
the sends, say how much of an item the caller heard.

Only ``media``, ``mark`` and ``clear`` are ever sent: anything else is Twilio error 31924.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import logging
from collections import Counter
from collections.abc import Callable
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
from aiohttp import WSMsgType, web

from ..audio.formats import FRAME_MS, G711_FRAME_BYTES, WireFormat
from ..audio.g711 import ulaw_decode
from ..audio.resample import Interpolator, up_8k_to_24k
from .playout import QueuedFrame
from .twilio_audio import MarkLedger, MulawPlayout, PcmToMulaw

log = logging.getLogger("gateway.twilio")

#: Audio kept in Twilio's buffer ahead of its playback. Pacing exactly at real time would
#: let every network hiccup between the gateway and Twilio become a gap the caller hears;
#: marks (not sends) measure playback, so this lead costs no truncation accuracy.
LEAD_S = 0.08
#: Marks still unechoed this long after their audio should have played are taken as played
#: (a dropped echo must not keep the call "speaking" forever and freeze the idle timers).
MARK_GRACE_S = 2.0
#: Twilio sends 160-byte (20 ms) frames; anything far larger is not Twilio.
MAX_MEDIA_BYTES = 8 * G711_FRAME_BYTES
DTMF_DIGITS = frozenset("0123456789*#ABCDabcd")
FRAME_S = FRAME_MS / 1000


class TwilioSink(Protocol):
    """What the leg tells its call (:class:`gateway.call.session.CallSession`)."""

    def on_caller_audio(self, pcm: npt.NDArray[np.int16], wire: bytes | None = None) -> None: ...

    def on_agent_frame(self, frame: QueuedFrame | None, offset_ms: float) -> None: ...

    def on_playout(self, started: bool, response_id: str) -> None: ...

    def on_leg_gone(self, reason: str) -> None: ...


def as_int(value: Any) -> int | None:
    """Twilio's numbers arrive as strings ("sequenceNumber": "4"); accept ints too."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return None


class TwilioLeg:
    transport = "twilio"
    forwards_audio_events = False

    def __init__(self, ws: web.WebSocketResponse, sink: TwilioSink, *, stream_sid: str,
                 wire_format: WireFormat, max_buffer_s: float, dead_peer_s: float,
                 on_dtmf: Callable[[str], None] | None = None, lead_s: float = LEAD_S,
                 caller: str = "", call_sid: str = "") -> None:
        if wire_format not in ("audio/pcmu", "audio/pcm"):
            raise ValueError(f"a Twilio leg cannot feed a {wire_format} upstream")
        self.ws = ws
        self.stream_sid = stream_sid
        self.caller = caller
        self.call_sid = call_sid
        self._sink = sink
        self._on_dtmf = on_dtmf
        self._passthrough = wire_format == "audio/pcmu"
        self._lead = lead_s
        self._dead_peer_s = dead_peer_s
        self.playout = MulawPlayout(max_buffer_s)
        self.marks = MarkLedger()
        self._up_in: Interpolator = up_8k_to_24k()
        self._up_out: Interpolator = up_8k_to_24k()
        self._transcoder = PcmToMulaw()
        loop = asyncio.get_running_loop()
        self._loop = loop
        self._t0 = loop.time()
        self._play_end = self._t0  # when Twilio's buffer runs dry, as far as the gateway knows
        self._playing: str | None = None  # response id whose audio Twilio is playing
        self._clear_pending = False
        self._cut: set[str] = set()
        self._wake = asyncio.Event()
        self._closed = False
        self._stopped = False
        self._last_rx = loop.time()
        self._dead_timer: asyncio.TimerHandle | None = None
        self._overdue_timer: asyncio.TimerHandle | None = None
        self.ignored: Counter[str] = Counter()
        self.media_frames_in = 0
        self.last_sequence: int | None = None
        self.last_timestamp_ms: int | None = None
        self._handlers: dict[str, Callable[[dict[str, Any]], None]] = {
            "media": self._on_media, "mark": self._on_mark, "dtmf": self._on_dtmf_event,
            "stop": self._on_stop, "connected": self._ignore_repeat,
            "start": self._ignore_repeat,
        }
        self._pacer = asyncio.create_task(self._pace(), name=f"twilio-pace:{stream_sid}")
        self._arm_dead_timer()

    # -- inbound ------------------------------------------------------------------------

    async def run(self) -> None:
        """Read Twilio's messages until ``stop`` or the socket closes."""
        async for msg in self.ws:
            self._last_rx = self._loop.time()
            if msg.type == WSMsgType.TEXT:
                self.on_text(msg.data)
                if self._stopped:
                    break
            else:
                self._ignore("binary_message")
        self._sink.on_leg_gone("client_closed")

    def on_text(self, text: str) -> None:
        try:
            msg = json.loads(text)
        except ValueError:
            self._ignore("invalid_json")
            return
        if not isinstance(msg, dict) or not isinstance(msg.get("event"), str):
            self._ignore("invalid_message")
            return
        sid = msg.get("streamSid")
        if sid is not None and sid != self.stream_sid:
            self._ignore("wrong_stream_sid")
            return
        seq = as_int(msg.get("sequenceNumber"))
        if seq is not None:
            self.last_sequence = seq
        handler = self._handlers.get(msg["event"])
        if handler is None:
            self._ignore(f"unknown_event:{msg['event'][:32]}")
            return
        handler(msg)

    def _ignore(self, reason: str) -> None:
        self.ignored[reason] += 1
        if self.ignored[reason] == 1:  # once per kind and stream: a bad peer cannot flood the log
            log.warning("twilio stream %s: ignored %s", self.stream_sid, reason)

    def _ignore_repeat(self, msg: dict[str, Any]) -> None:
        self._ignore(f"repeated_{msg['event']}")

    def _on_media(self, msg: dict[str, Any]) -> None:
        media = msg.get("media")
        if not isinstance(media, dict):
            self._ignore("media_without_body")
            return
        if media.get("track", "inbound") not in ("inbound", "inbound_track"):
            self._ignore("outbound_track_media")
            return
        payload = media.get("payload")
        if not isinstance(payload, str) or len(payload) > MAX_MEDIA_BYTES * 4 // 3 + 4:
            self._ignore("oversized_media" if isinstance(payload, str) else "media_no_payload")
            return
        try:
            data = base64.b64decode(payload, validate=True)
        except (binascii.Error, ValueError):
            self._ignore("bad_base64")
            return
        if not data:
            return
        ts = as_int(media.get("timestamp"))
        if ts is not None:
            self.last_timestamp_ms = ts
        self.media_frames_in += 1
        pcm24 = self._up_in.process(ulaw_decode(data))
        if self._passthrough:
            self._sink.on_caller_audio(pcm24, wire=data)
        else:
            self._sink.on_caller_audio(pcm24)

    def _on_dtmf_event(self, msg: dict[str, Any]) -> None:
        body = msg.get("dtmf")
        digit = body.get("digit") if isinstance(body, dict) else None
        if not isinstance(digit, str) or len(digit) != 1 or digit not in DTMF_DIGITS:
            self._ignore("bad_dtmf")
            return
        if self._on_dtmf is not None:
            self._on_dtmf(digit.upper())

    def _on_stop(self, msg: dict[str, Any]) -> None:
        self._stopped = True

    def _arm_dead_timer(self) -> None:
        due = self._last_rx + self._dead_peer_s
        self._dead_timer = self._loop.call_at(due, self._check_dead)

    def _check_dead(self) -> None:
        # Twilio sends a media frame every 20 ms for the whole call, silence included, so a
        # quiet socket means a lost peer. One timer per period, re-armed lazily.
        if self._closed:
            return
        if self._loop.time() - self._last_rx >= self._dead_peer_s:
            log.warning("twilio stream %s: no message for %.0f s", self.stream_sid,
                        self._dead_peer_s)
            self._sink.on_leg_gone("client_lost")
        else:
            self._arm_dead_timer()

    # -- outbound: what the session calls -----------------------------------------------

    def send_event(self, event: dict[str, Any]) -> None:
        """A phone has no event channel: Realtime events for a client stop here."""

    def play_audio(self, pcm: bytes, item_id: str, response_id: str) -> None:
        if self._closed or item_id in self._cut:
            return  # deltas of a cut item still in flight from upstream are not played
        was_idle = not self.playout.active
        if self._passthrough:
            self.playout.push(pcm, item_id, response_id)
        else:
            tc = self._transcoder
            if tc.item_id and tc.item_id != item_id:
                self.playout.push(tc.flush(), tc.item_id, tc.response_id)
            tc.item_id, tc.response_id = item_id, response_id
            self.playout.push(tc.push(pcm), item_id, response_id)
        if was_idle:
            self._wake.set()

    def end_audio(self, item_id: str) -> None:
        was_idle = not self.playout.active
        tc = self._transcoder
        if not self._passthrough and tc.item_id == item_id:
            self.playout.push(tc.flush(), item_id, tc.response_id)
            tc.item_id = ""
        self.playout.end_item(item_id)
        if was_idle:
            self._wake.set()

    def interrupt(self) -> tuple[str | None, float]:
        """Drop queued audio, ``clear`` Twilio's buffer; the item heard and its played ms."""
        item = self.marks.head_item or self.playout.head_item()
        if item:
            self._cut.add(item)
        self.marks.forget_pending()
        self.playout.clear()
        self._transcoder.reset()
        self._clear_pending = True
        self._wake.set()
        return item, (self.marks.played_ms(item) if item else 0.0)

    def played_ms(self, item_id: str) -> float:
        return self.marks.played_ms(item_id)

    @property
    def audio_active(self) -> bool:
        return self.playout.active or bool(self.marks)

    # -- outbound: pacing and marks -----------------------------------------------------

    async def _pace(self) -> None:
        """The one writer of the socket: frames when due, a clear as soon as asked."""
        try:
            while True:
                self._wake.clear()
                if self._clear_pending:
                    self._clear_pending = False
                    await self._send({"event": "clear", "streamSid": self.stream_sid})
                    self._cleared()
                    continue
                if not self.playout.active:
                    await self._wake.wait()
                    continue
                due = self._play_end - self._lead
                if due > self._loop.time():
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout_at(due):
                            await self._wake.wait()
                    continue
                await self._send_frame()
        except (ConnectionResetError, RuntimeError) as e:
            log.info("twilio stream %s: send failed (%s)", self.stream_sid, e)

    async def _send_frame(self) -> None:
        frame = self.playout.pop()
        if frame is None:
            return
        now = self._loop.time()
        start = max(self._play_end, now)
        self._play_end = start + FRAME_S
        mark = self.marks.sent(frame.item_id, frame.audio_ms, self._play_end)
        if self._playing != frame.response_id:
            self._playing = frame.response_id
            self._sink.on_playout(True, frame.response_id)
        pcm24 = self._up_out.process(ulaw_decode(frame.pcm)).tobytes()
        self._sink.on_agent_frame(
            QueuedFrame(pcm24, frame.item_id, frame.response_id, frame.audio_ms),
            (start - self._t0) * 1000)
        payload = base64.b64encode(frame.pcm).decode()
        await self._send({"event": "media", "streamSid": self.stream_sid,
                          "media": {"payload": payload}})
        await self._send({"event": "mark", "streamSid": self.stream_sid,
                          "mark": {"name": mark}})
        if not self.playout.active:
            self._arm_overdue()

    async def _send(self, msg: dict[str, Any]) -> None:
        if not self.ws.closed:
            await self.ws.send_str(json.dumps(msg, separators=(",", ":")))

    def _cleared(self) -> None:
        # Twilio dropped everything it held: nothing is queued toward the caller any more.
        now = self._loop.time()
        self._play_end = now
        self._sink.on_agent_frame(None, (now - self._t0) * 1000)
        self._stop_playing()

    def _stop_playing(self) -> None:
        if self._playing is not None:
            rid, self._playing = self._playing, None
            self._sink.on_playout(False, rid)

    def _on_mark(self, msg: dict[str, Any]) -> None:
        body = msg.get("mark")
        seq = as_int(body.get("name")) if isinstance(body, dict) else None
        if seq is None:
            self._ignore("unknown_mark")
            return
        self.marks.ack(seq)
        self._maybe_stopped()

    def _maybe_stopped(self) -> None:
        if not self.marks and not self.playout.active:
            self._stop_playing()

    def _arm_overdue(self) -> None:
        if self._overdue_timer is not None:
            self._overdue_timer.cancel()
        self._overdue_timer = self._loop.call_at(self._play_end + MARK_GRACE_S, self._overdue)

    def _overdue(self) -> None:
        self._overdue_timer = None
        due = self.marks.last_due
        if self._closed or due is None:
            return
        if due + MARK_GRACE_S > self._loop.time():
            self._arm_overdue()
            return
        n = self.marks.settle_all()
        log.warning("twilio stream %s: %d mark echo(es) overdue; counted as played",
                    self.stream_sid, n)
        self._maybe_stopped()

    # -- teardown -----------------------------------------------------------------------

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for timer in (self._dead_timer, self._overdue_timer):
            if timer is not None:
                timer.cancel()
        self._pacer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._pacer
        if self.ignored:
            log.info("twilio stream %s ignored: %s", self.stream_sid, dict(self.ignored))
        await self.ws.close()
