"""A supervisor's WebRTC peer: the call's shared listen packets out, their microphone in.

:class:`ListenerTrack` is what aiortc's sender reads: the mixer's ``av.Packet`` objects, so the
sender packetizes them without encoding (``RTCRtpSender._next_encoded_frame`` ->
``OpusEncoder.pack``).

The only aiortc peer code of the supervise feature (:mod:`gateway.supervise.supervision` owns
the peers; :mod:`gateway.supervise.mix` makes the packets). No STUN server, as for callers.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import av
import numpy as np
import numpy.typing as npt
from aiortc import (
    MediaStreamTrack,
    RTCConfiguration,
    RTCPeerConnection,
)
from aiortc.mediastreams import MediaStreamError

from gateway.errors import ApiError
from gateway.legs.inbound import InboundOpus
from gateway.legs.webrtc import OPUS_RTPMAP, accept_offer, close_peer, drain

from .mix import Layout, _percentiles

#: A listener whose ICE/DTLS has not connected by then is dropped.
SETUP_TIMEOUT_S = 20.0
#: A listener's queue, in packets: a sender stuck longer than this loses the oldest.
LISTENER_QUEUE = 5

MicSink = Callable[[npt.NDArray[np.int16]], None]
#: (listener id, reason): the peer failed, closed or never connected.
GoneCallback = Callable[[str, str], None]


class ListenerTrack(MediaStreamTrack):
    """What aiortc's sender reads for one listener: the shared packets, paced by the mixer.

    ``recv()`` returns an :class:`av.Packet` (pts/time_base set by the hub), so the sender
    skips encoding and only packetizes it."""

    kind = "audio"

    def __init__(self, layout: Layout, maxlen: int = LISTENER_QUEUE) -> None:
        super().__init__()
        self.layout: Layout = layout
        self._maxlen = maxlen
        self._queue: deque[tuple[av.Packet[Any], float]] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._started = False
        self.sent = 0
        self.dropped = 0
        #: Seconds each packet waited between the mixer and this listener's sender (recent).
        self.waits: deque[float] = deque(maxlen=250)

    def push(self, packet: av.Packet[Any], t: float) -> None:
        if len(self._queue) >= self._maxlen:
            self._queue.popleft()
            self.dropped += 1
        self._queue.append((packet, t))
        w = self._waiter
        if w is not None and not w.done():
            w.set_result(None)

    async def recv(self) -> av.Packet[Any]:
        if self.readyState != "live":
            raise MediaStreamError
        if not self._started:
            # Packets queued before the connection was up are stale: start from the newest.
            self._started = True
            while len(self._queue) > 1:
                self._queue.popleft()
        while not self._queue:
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
            if self.readyState != "live":
                raise MediaStreamError
        packet, t = self._queue.popleft()
        self.waits.append(time.monotonic() - t)
        self.sent += 1
        return packet

    def stop(self) -> None:
        super().stop()
        w = self._waiter
        if w is not None and not w.done():
            w.set_result(None)


class Listener:
    """One supervisor's peer connection: the shared packets out, their microphone in."""

    def __init__(self, lid: str, layout: Layout, on_gone: GoneCallback) -> None:
        self._on_gone = on_gone
        self.id = lid
        self.layout: Layout = layout
        self.created_at = time.time()
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))  # never a public STUN
        self.track = ListenerTrack(layout)
        self.has_mic = False
        self.mic_frames = 0
        #: Set while this listener has the call: where its microphone goes.
        self.on_mic: MicSink | None = None
        #: The supervisor's microphone, decoded as caller audio is (legs/inbound.py).
        self._mic = InboundOpus(self._on_mic_pcm)
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False
        self._setup_timer: asyncio.TimerHandle | None = None
        self.pc.on("track", self._on_track)
        self.pc.on("connectionstatechange", self._on_state)

    async def answer(self, offer_sdp: str, *, stereo: bool) -> str:
        # The packets are Opus, encoded once for every listener: no other codec will do.
        await accept_offer(self.pc, offer_sdp, self._mic)
        self.pc.addTrack(self.track)
        try:
            await self.pc.setLocalDescription(await self.pc.createAnswer())
        except Exception as e:
            raise ApiError(400, "invalid_sdp", "The SDP offer has no Opus audio.") from e
        sdp = str(self.pc.localDescription.sdp)
        if not OPUS_RTPMAP.search(sdp):
            raise ApiError(400, "invalid_sdp", "The SDP offer has no Opus audio.")
        loop = asyncio.get_running_loop()
        self._setup_timer = loop.call_later(SETUP_TIMEOUT_S, self._setup_expired)
        return stereo_fmtp(sdp) if stereo else sdp

    def _setup_expired(self) -> None:
        if self.pc.connectionState != "connected":
            self._on_gone(self.id, "setup_timeout")

    def _on_state(self) -> None:
        state = self.pc.connectionState
        if state == "connected" and self._setup_timer is not None:
            self._setup_timer.cancel()
            self._setup_timer = None
        elif state in ("failed", "closed") and not self._closed:
            self._on_gone(self.id, "listener_lost" if state == "failed" else "listener_left")

    def _on_track(self, track: MediaStreamTrack) -> None:
        if track.kind == "audio":
            self.has_mic = True  # its audio arrives through self._mic, not the track
            return
        task = asyncio.create_task(drain(track), name=f"listener-{track.kind}:{self.id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _on_mic_pcm(self, pcm: npt.NDArray[np.int16]) -> None:
        self.mic_frames += 1
        sink = self.on_mic  # set only while this listener has the call
        if sink is not None:
            sink(pcm)

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "object": "realtime.listener", "layout": self.layout,
                "hearing": self.track.layout, "microphone": self.has_mic,
                "state": self.pc.connectionState, "created_at": int(self.created_at),
                "packets_sent": self.track.sent, "packets_dropped": self.track.dropped,
                "queue_wait_ms": _percentiles(self.track.waits)}

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._setup_timer is not None:
            self._setup_timer.cancel()
        await close_peer(self.pc, self.track, self._tasks)


def stereo_fmtp(sdp: str) -> str:
    """Mark Opus as stereo in an answer (``stereo=1``): browsers decode mono without it."""
    m = re.search(r"a=rtpmap:(\d+) opus/48000", sdp, re.IGNORECASE)
    if m is None:
        return sdp
    pt = m.group(1)
    fmtp = re.search(rf"^a=fmtp:{pt} (.*?)\r?$", sdp, re.MULTILINE)
    if fmtp is not None:
        if "stereo=1" in fmtp.group(1):
            return sdp
        return sdp[:fmtp.end(1)] + ";stereo=1;sprop-stereo=1" + sdp[fmtp.end(1):]
    line_end = sdp.index("\n", m.end()) + 1
    return sdp[:line_end] + f"a=fmtp:{pt} stereo=1;sprop-stereo=1\r\n" + sdp[line_end:]


__all__ = ["SETUP_TIMEOUT_S", "Listener", "ListenerTrack", "MicSink", "stereo_fmtp"]
