"""A stand-in for Twilio's cloud, which cannot be reached from the tests.

Written from Twilio's documented Media Streams messages (``realtime-protocols.md`` §6), not
from the gateway's code: it fetches TwiML from the webhook with a form signed by the
``twilio`` package itself, opens the ``<Stream>`` URL, says ``connected`` then ``start``
(with the ``<Parameter>`` values as ``customParameters``), sends 160-byte µ-law ``media``
frames every 20 ms with every number as a string, and plays what the gateway sends the way
Twilio does: in real time, echoing each ``mark`` once the audio queued before it has
played, and on ``clear`` dropping the queued audio and echoing the pending marks at once.
It records every message the gateway sends and any breach of the protocol.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import secrets
import xml.etree.ElementTree as ET
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from twilio.request_validator import RequestValidator

FRAME_BYTES = 160
FRAME_S = 0.020
MULAW_FORMAT = {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}


def sid(prefix: str) -> str:
    return prefix + secrets.token_hex(16)


@dataclass
class Twiml:
    xml: str
    stream_url: str
    parameters: dict[str, str]


def parse_twiml(xml: str) -> Twiml:
    root = ET.fromstring(xml)
    assert root.tag == "Response", xml
    stream = root.find("./Connect/Stream")
    assert stream is not None, f"no <Connect><Stream> in {xml}"
    params = {p.attrib["name"]: p.attrib["value"] for p in stream.findall("Parameter")}
    return Twiml(xml, stream.attrib["url"], params)


@dataclass
class Clear:
    at: float  # loop time the clear arrived
    played_bytes: int  # µ-law bytes played before it
    dropped_bytes: int


@dataclass
class TwilioStream:
    """One Media Streams WebSocket, seen from Twilio's side."""

    ws: aiohttp.ClientWebSocketResponse
    stream_sid: str = field(default_factory=lambda: sid("MZ"))
    call_sid: str = field(default_factory=lambda: sid("CA"))
    account_sid: str = field(default_factory=lambda: sid("AC"))
    received: list[dict[str, Any]] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)
    media_arrivals: list[float] = field(default_factory=list)
    media_in: bytearray = field(default_factory=bytearray)  # every µ-law byte received
    played: bytearray = field(default_factory=bytearray)  # what the caller heard
    echoed: list[str] = field(default_factory=list)
    clears: list[Clear] = field(default_factory=list)
    closed: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        self._seq = 0
        self._chunk = 0
        self._buf: deque[tuple[str, bytes | str]] = deque()
        self._gen = 0
        self._wake = asyncio.Event()
        self._changed = asyncio.Event()
        self._lock = asyncio.Lock()
        self._t0 = asyncio.get_running_loop().time()
        self.mic_sent = bytearray()  # every µ-law byte sent as media
        self._mic_queue = bytearray()
        self._tasks = [asyncio.create_task(self._reader(), name="fake-twilio-read"),
                       asyncio.create_task(self._player(), name="fake-twilio-play")]

    # -- Twilio -> gateway -----------------------------------------------------------------

    async def send(self, msg: dict[str, Any] | str) -> None:
        async with self._lock:
            if not self.ws.closed:
                await self.ws.send_str(msg if isinstance(msg, str) else json.dumps(msg))

    def _next_seq(self) -> str:
        self._seq += 1
        return str(self._seq)

    async def begin(self, parameters: dict[str, str], *, media_format: dict[str, Any] | None = None,
                    microphone: bool = True) -> None:
        """``connected``, ``start``, then (``microphone``) a media frame every 20 ms."""
        await self.send({"event": "connected", "protocol": "Call", "version": "1.0.0"})
        await self.send({"event": "start", "sequenceNumber": self._next_seq(),
                         "streamSid": self.stream_sid, "start": {
                             "streamSid": self.stream_sid, "accountSid": self.account_sid,
                             "callSid": self.call_sid, "tracks": ["inbound"],
                             "customParameters": parameters,
                             "mediaFormat": media_format or MULAW_FORMAT}})
        if microphone:
            self._tasks.append(asyncio.create_task(self._microphone(), name="fake-twilio-mic"))

    def media_message(self, frame: bytes) -> dict[str, Any]:
        self._chunk += 1
        ts = round((asyncio.get_running_loop().time() - self._t0) * 1000)
        return {"event": "media", "sequenceNumber": self._next_seq(),
                "streamSid": self.stream_sid,
                "media": {"track": "inbound", "chunk": str(self._chunk), "timestamp": str(ts),
                          "payload": base64.b64encode(frame).decode()}}

    async def _microphone(self) -> None:
        """Like Twilio, a frame every 20 ms for the whole call: queued speech, else silence.
        Paced by deadlines from the start, so it does not drift."""
        loop = asyncio.get_running_loop()
        start, i = loop.time(), 0
        while True:
            frame = bytes(self._mic_queue[:FRAME_BYTES])
            del self._mic_queue[:FRAME_BYTES]
            frame += b"\xff" * (FRAME_BYTES - len(frame))  # µ-law silence
            await self.send(self.media_message(frame))
            self.mic_sent += frame
            self._changed.set()
            i += 1
            await asyncio.sleep(max(0.0, start + i * FRAME_S - loop.time()))

    def speak(self, mulaw: bytes) -> None:
        """Queue caller audio for the microphone."""
        self._mic_queue += mulaw

    async def until(self, predicate: Callable[[], bool], within_s: float = 10.0) -> None:
        """Wait until ``predicate()`` holds, re-checked on every change of this stream."""
        async with asyncio.timeout(within_s):
            while not predicate():
                self._changed.clear()
                await self._changed.wait()

    async def dtmf(self, digit: str) -> None:
        await self.send({"event": "dtmf", "streamSid": self.stream_sid,
                         "sequenceNumber": self._next_seq(),
                         "dtmf": {"track": "inbound_track", "digit": digit}})

    async def stop(self) -> None:
        """The caller hung up: ``stop``, then Twilio closes the socket."""
        await self.send({"event": "stop", "sequenceNumber": self._next_seq(),
                         "streamSid": self.stream_sid,
                         "stop": {"accountSid": self.account_sid, "callSid": self.call_sid}})
        await self.close()

    # -- gateway -> Twilio -----------------------------------------------------------------

    async def _reader(self) -> None:
        try:
            async for msg in self.ws:
                if msg.type != aiohttp.WSMsgType.TEXT:
                    self.violations.append(f"non-text message {msg.type}")
                    continue
                await self._on_message(json.loads(msg.data))
        finally:
            self.closed.set()
            self._changed.set()

    async def _on_message(self, m: dict[str, Any]) -> None:
        self.received.append(m)
        event = m.get("event")
        if m.get("streamSid") != self.stream_sid:
            self.violations.append(f"{event} with streamSid {m.get('streamSid')!r}")
        if event == "media":
            media = m.get("media")
            if not isinstance(media, dict) or set(media) != {"payload"}:
                self.violations.append(f"malformed media {m}")
                return
            data = base64.b64decode(media["payload"], validate=True)
            self.media_arrivals.append(asyncio.get_running_loop().time())
            self.media_in += data
            self._buf.append(("audio", data))
        elif event == "mark":
            name = (m.get("mark") or {}).get("name")
            if not isinstance(name, str):
                self.violations.append(f"mark without a name {m}")
                return
            self._buf.append(("mark", name))
        elif event == "clear":
            self._gen += 1
            dropped = sum(len(d) for k, d in self._buf if k == "audio")
            marks = [str(d) for k, d in self._buf if k == "mark"]
            self._buf.clear()
            self.clears.append(Clear(asyncio.get_running_loop().time(), len(self.played),
                                     dropped))
            for name in marks:  # pending marks come back at once
                await self._echo(name)
        else:
            self.violations.append(f"event {event!r} is not allowed (Twilio error 31924)")
        self._wake.set()
        self._changed.set()

    async def _echo(self, name: str) -> None:
        self.echoed.append(name)
        self._changed.set()
        await self.send({"event": "mark", "sequenceNumber": self._next_seq(),
                         "streamSid": self.stream_sid, "mark": {"name": name}})

    async def _player(self) -> None:
        """Plays the buffer in real time; a mark is echoed when playback reaches it."""
        loop = asyncio.get_running_loop()
        clock: float | None = None
        while True:
            while self._buf and self._buf[0][0] == "mark":
                await self._echo(str(self._buf.popleft()[1]))
            if not self._buf:
                clock = None
                self._wake.clear()
                await self._wake.wait()
                continue
            now = loop.time()
            clock = now if clock is None or clock < now else clock
            gen, data = self._gen, self._buf[0][1]
            assert isinstance(data, bytes)
            end = clock + len(data) / 8000
            await asyncio.sleep(max(0.0, end - loop.time()))
            if gen != self._gen:  # cleared while this frame played
                clock = None
                continue
            self._buf.popleft()
            self.played += data
            self._changed.set()
            clock = end

    async def close(self) -> None:
        await self.ws.close()
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t
        self.closed.set()


class FakeTwilio:
    """Twilio's side of a phone call to the gateway running at ``local_base``.

    ``public_url`` is what the gateway is configured to be reached at (and what Twilio
    signs); requests go to the local server instead, as a reverse proxy would forward them.
    """

    def __init__(self, http: aiohttp.ClientSession, local_base: str, public_url: str,
                 auth_token: str) -> None:
        self.http = http
        self.local_base = local_base.rstrip("/")
        self.public_url = public_url.rstrip("/")
        self.validator = RequestValidator(auth_token)
        self.streams: list[TwilioStream] = []

    def form(self, caller: str, call_sid: str) -> dict[str, str]:
        return {"AccountSid": sid("AC"), "ApiVersion": "2010-04-01", "CallSid": call_sid,
                "CallStatus": "ringing", "Called": "+15005550006", "Caller": caller,
                "Direction": "inbound", "From": caller, "FromCountry": "US",
                "To": "+15005550006", "ToCountry": "US"}

    async def incoming(self, *, caller: str = "+15551234567", call_sid: str | None = None,
                       query: str = "", signature: str | None = "valid",
                       headers: dict[str, str] | None = None,
                       signed_url: str | None = None) -> tuple[int, str]:
        """POST the call webhook. ``signature``: "valid", None (unsigned) or a literal."""
        form = self.form(caller, call_sid or sid("CA"))
        path = "/twilio/incoming" + (f"?{query}" if query else "")
        h = dict(headers or {})
        if signature == "valid":
            h["X-Twilio-Signature"] = self.validator.compute_signature(
                signed_url or self.public_url + path, form)
        elif signature is not None:
            h["X-Twilio-Signature"] = signature
        async with self.http.post(self.local_base + path, data=form, headers=h) as r:
            return r.status, await r.text()

    def local_ws_url(self, public_ws_url: str) -> str:
        parts = urlsplit(public_ws_url)
        local = urlsplit(self.local_base)
        return f"ws://{local.netloc}{parts.path}"

    async def connect(self, twiml: Twiml, *, sign: bool = True,
                      signature: str | None = None) -> TwilioStream:
        """Open the stream of a TwiML answer (a bare WebSocket; ``begin`` says start)."""
        h = {}
        if signature is not None:
            h["X-Twilio-Signature"] = signature
        elif sign:
            h["X-Twilio-Signature"] = self.validator.compute_signature(twiml.stream_url, {})
        ws = await self.http.ws_connect(self.local_ws_url(twiml.stream_url), headers=h)
        stream = TwilioStream(ws)
        self.streams.append(stream)
        return stream

    async def call(self, *, caller: str = "+15551234567", query: str = "") -> TwilioStream:
        """A whole call setup: webhook, TwiML, stream, ``connected`` and ``start``."""
        call_sid = sid("CA")
        status, text = await self.incoming(caller=caller, call_sid=call_sid, query=query)
        assert status == 200, text
        twiml = parse_twiml(text)
        stream = await self.connect(twiml)
        stream.call_sid = call_sid
        await stream.begin(twiml.parameters)
        return stream

    async def close(self) -> None:
        for s in self.streams:
            await s.close()
