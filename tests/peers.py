"""A real aiortc client peer, as a browser would be: mic track, oai-events channel, audio out."""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import json
import time
from collections.abc import Callable
from typing import Any

import aiohttp
import av
import numpy as np
import numpy.typing as npt
from aiortc import (
    MediaStreamTrack,
    RTCConfiguration,
    RTCPeerConnection,
    RTCSessionDescription,
)
from aiortc.mediastreams import MediaStreamError

RATE = 48_000
FRAME = 960


class PcmSourceTrack(MediaStreamTrack):
    """Plays PCM16 mono 48 kHz from a callable that yields the next 20 ms, paced in real time."""

    kind = "audio"

    def __init__(self, next_frame: Callable[[int], npt.NDArray[np.int16]]) -> None:
        super().__init__()
        self._next = next_frame
        self._i = 0
        self._start: float | None = None
        self.sent_frames = 0

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        now = time.monotonic()
        if self._start is None:
            self._start = now
        due = self._start + self._i * 0.02
        if due > now:
            await asyncio.sleep(due - now)
        pcm = self._next(self._i)
        # Stereo like a browser's Opus: a mono frame would be upmixed at -3 dB by PyAV.
        frame = av.AudioFrame.from_ndarray(np.repeat(pcm, 2).reshape(1, -1), format="s16",
                                           layout="stereo")
        frame.sample_rate = RATE
        frame.pts = self._i * FRAME
        frame.time_base = fractions.Fraction(1, RATE)
        self._i += 1
        self.sent_frames += 1
        return frame


def tone(freq: float, dbfs: float) -> Callable[[int], npt.NDArray[np.int16]]:
    amp = 32768 * 10 ** (dbfs / 20) * np.sqrt(2)

    def gen(i: int) -> npt.NDArray[np.int16]:
        t = (np.arange(FRAME) + i * FRAME) / RATE
        return (amp * np.sin(2 * np.pi * freq * t)).astype(np.int16)

    return gen


def from_pcm(pcm48: npt.NDArray[np.int16], then_silence: bool = True
             ) -> Callable[[int], npt.NDArray[np.int16]]:
    def gen(i: int) -> npt.NDArray[np.int16]:
        chunk = pcm48[i * FRAME:(i + 1) * FRAME]
        if len(chunk) < FRAME:
            chunk = np.concatenate([chunk, np.zeros(FRAME - len(chunk), np.int16)])
        return chunk

    return gen


def silence() -> Callable[[int], npt.NDArray[np.int16]]:
    z = np.zeros(FRAME, np.int16)
    return lambda i: z


async def collect_frames(track: MediaStreamTrack,
                         out: list[tuple[float, npt.NDArray[np.int16]]], *, stereo: bool) -> None:
    """Append (arrival, samples) for every frame of ``track`` until it ends: mono (the left
    channel of a stereo frame), or stereo as (n, 2) (a mono frame on both channels)."""
    with contextlib.suppress(MediaStreamError):
        while True:
            f = await track.recv()
            a = f.to_ndarray().reshape(-1)
            two = len(f.layout.channels) == 2
            if stereo:
                a = (a if two else np.repeat(a, 2)).reshape(-1, 2)
            elif two:
                a = a[0::2]
            out.append((time.monotonic(), a.astype(np.int16)))


class ClientPeer:
    def __init__(self, source: MediaStreamTrack | None) -> None:
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.channel = self.pc.createDataChannel("oai-events")
        self._arrived = asyncio.Event()
        self._taken: dict[str, int] = {}
        self.all_events: list[dict[str, Any]] = []
        self.received: list[tuple[float, npt.NDArray[np.int16]]] = []  # (arrival, mono 48k)
        self.opened = asyncio.Event()
        self.source = source
        self._tasks: list[asyncio.Task[None]] = []
        self.location: str | None = None
        self.channel.on("open", self.opened.set)
        self.channel.on("message", self._on_message)
        self.pc.on("track", self._on_track)
        if source is not None:
            self.pc.addTrack(source)
        else:
            self.pc.addTransceiver("audio", direction="recvonly")

    def _on_message(self, msg: str | bytes) -> None:
        ev = json.loads(msg)
        self.all_events.append(ev)
        self._arrived.set()

    def _on_track(self, track: MediaStreamTrack) -> None:
        self._tasks.append(asyncio.ensure_future(self._pump(track)))

    async def _pump(self, track: MediaStreamTrack) -> None:
        await collect_frames(track, self.received, stereo=False)

    async def offer(self) -> str:
        await self.pc.setLocalDescription(await self.pc.createOffer())
        return str(self.pc.localDescription.sdp)

    async def connect(self, http: aiohttp.ClientSession, url: str, token: str) -> None:
        sdp = await self.offer()
        async with http.post(url, data=sdp, headers={
                "Authorization": f"Bearer {token}", "Content-Type": "application/sdp"}) as r:
            body = await r.text()
            if r.status != 201:
                raise AssertionError(f"call setup failed: {r.status} {body}")
            self.location = r.headers["Location"]
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=body, type="answer"))
        async with asyncio.timeout(10):
            await self.opened.wait()

    def send(self, event: dict[str, Any]) -> None:
        self.channel.send(json.dumps(event))

    async def next_event(self, etype: str, timeout_s: float = 10.0) -> dict[str, Any]:
        """The next event of this type not yet returned, in arrival order (whatever other
        events came between)."""
        async with asyncio.timeout(timeout_s):
            while True:
                n = self._taken.get(etype, 0)
                matches = [e for e in self.all_events if e["type"] == etype]
                if len(matches) > n:
                    self._taken[etype] = n + 1
                    return matches[n]
                self._arrived.clear()
                await self._arrived.wait()

    def received_audio(self, since: float = 0.0) -> npt.NDArray[np.int16]:
        parts = [a for t, a in self.received if t >= since]
        return np.concatenate(parts) if parts else np.zeros(0, np.int16)

    async def close(self) -> None:
        if self.source is not None:
            self.source.stop()
        await self.pc.close()
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t


def dominant_freq(x: npt.NDArray[np.int16], rate: int) -> float:
    spec = np.abs(np.fft.rfft(x.astype(np.float64) * np.hanning(len(x))))
    return float(np.argmax(spec) * rate / len(x))


def rms_dbfs(x: npt.NDArray[np.int16]) -> float:
    f = x.astype(np.float64)
    return float(20 * np.log10(max(np.sqrt(np.mean(f * f)), 1e-9) / 32768))
