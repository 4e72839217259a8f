"""The WebRTC leg: an aiortc peer, its inbound audio pump and the ``oai-events`` channel.

With :mod:`gateway.legs.tracks`, the only aiortc code in the gateway.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
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
    RTCDataChannel,
    RTCPeerConnection,
    RTCSessionDescription,
)
from aiortc.mediastreams import MediaStreamError

from ..audio.conceal import Concealer
from ..audio.formats import FRAME_SAMPLES
from ..audio.resample import StereoTo24kMono
from ..errors import ApiError
from .base import LegSink
from .ice import MediaNetwork, selected_pair
from .jitter import AdaptiveJitterBuffer, install_jitter_buffer
from .opus_out import VoiceOpusEncoder
from .playout import Playout, QueuedFrame
from .tracks import OutboundAudioTrack

log = logging.getLogger("gateway.webrtc")

MAX_PENDING_EVENTS = 512
SETUP_TIMEOUT_S = 15.0

#: (packets lost since the last sample, jitter s, round-trip time s) -> None
StatsObserver = Callable[[int, float | None, float | None], None]


def check_offer(sdp: str) -> None:
    if not sdp.lstrip().startswith("v=0"):
        raise ApiError(400, "invalid_sdp", "The body is not an SDP offer (it must start with v=0).")
    if "\nm=audio " not in sdp.replace("\r\n", "\n"):
        raise ApiError(400, "invalid_sdp", "The SDP offer has no audio section (m=audio).")


class WebRtcLeg:
    transport = "webrtc"
    forwards_audio_events = False

    def __init__(self, sink: LegSink, *, max_buffer_s: float, max_event_bytes: int,
                 dead_peer_s: float, stats_observer: StatsObserver | None = None,
                 stats_interval_s: float = 5.0, opus_bitrate: int = 96_000,
                 opus_complexity: int = 5,
                 on_encode: Callable[[float], None] | None = None,
                 network: MediaNetwork | None = None,
                 on_ice_pair: Callable[[str, str], None] | None = None) -> None:
        self._stats_observer = stats_observer
        self._stats_interval = stats_interval_s
        self._lost_seen = 0
        self._sink = sink
        self._max_event_bytes = max_event_bytes
        self._dead_peer_s = dead_peer_s
        # Port range, announced addresses, ICE servers (gateway/legs/ice.py); never aiortc's
        # default STUN server.
        self._network = network
        self._on_ice_pair = on_ice_pair
        self.pc = RTCPeerConnection(network.rtc_configuration() if network is not None
                                    else RTCConfiguration(iceServers=[]))
        self.playout = Playout(max_buffer_s)
        self.jitter = AdaptiveJitterBuffer()
        self._last_played: QueuedFrame | None = None
        self.track = OutboundAudioTrack(
            self.playout, self._on_frame,
            encoder=VoiceOpusEncoder(bitrate=opus_bitrate, complexity=opus_complexity),
            on_encode=on_encode)
        self._channel: RTCDataChannel | None = None
        self._pending: deque[str] = deque(maxlen=MAX_PENDING_EVENTS)
        self._tasks: set[asyncio.Task[None]] = set()
        self._last_rtp = time.monotonic()
        self._got_rtp = False
        self._dead_timer: asyncio.TimerHandle | None = None
        self._closed = False
        self.pc.on("track", self._on_track)
        self.pc.on("datachannel", self._on_datachannel)
        self.pc.on("connectionstatechange", self._on_state)

    async def answer(self, offer_sdp: str) -> str:
        check_offer(offer_sdp)
        try:
            await self.pc.setRemoteDescription(RTCSessionDescription(sdp=offer_sdp, type="offer"))
        except Exception as e:  # aiortc's parser signals bad input with assert, ValueError...
            raise ApiError(400, "invalid_sdp", "The SDP offer could not be parsed or is not "
                           "acceptable (it needs ICE credentials, DTLS fingerprint and an "
                           "Opus audio section).") from e
        if not any(t.kind == "audio" for t in self.pc.getTransceivers()):
            raise ApiError(400, "invalid_sdp", "The SDP offer has no usable audio section.")
        for t in self.pc.getTransceivers():
            if t.kind == "audio":
                install_jitter_buffer(t.receiver, self.jitter)
        self.pc.addTrack(self.track)
        if self._network is not None:
            self._network.install(self.pc)  # before gathering: host ports inside the range
        answer = await self.pc.createAnswer()
        await self.pc.setLocalDescription(answer)
        self._arm_dead_timer()
        if self._stats_observer is not None:
            task = asyncio.create_task(self._stats_loop(), name="webrtc-stats")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        sdp = str(self.pc.localDescription.sdp)
        return self._network.finish_answer(sdp) if self._network is not None else sdp

    async def _stats_loop(self) -> None:
        """Sample RTCP-derived quality every few seconds for the metrics."""
        assert self._stats_observer is not None
        while True:
            await asyncio.sleep(self._stats_interval)
            report = await self.pc.getStats()
            lost, jitter, rtt = 0, None, None
            for s in report.values():
                if s.type == "inbound-rtp" and s.kind == "audio":
                    lost += int(s.packetsLost or 0)
                    jitter = float(s.jitter or 0) / 48000  # RTP clock units -> seconds
                elif s.type == "remote-inbound-rtp" and s.kind == "audio" and \
                        s.roundTripTime is not None:  # None until the first receiver report
                    rtt = float(s.roundTripTime)
            delta, self._lost_seen = max(0, lost - self._lost_seen), max(lost, self._lost_seen)
            self._stats_observer(delta, jitter, rtt)

    # -- inbound ------------------------------------------------------------------------

    def _on_track(self, track: MediaStreamTrack) -> None:
        pump = self._pump_audio(track) if track.kind == "audio" else self._drain(track)
        task = asyncio.create_task(pump, name=f"webrtc-{track.kind}-in")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _drain(self, track: MediaStreamTrack) -> None:
        # aiortc's remote track queue is unbounded: a track nobody reads grows forever.
        with contextlib.suppress(MediaStreamError):
            while True:
                await track.recv()

    async def _pump_audio(self, track: MediaStreamTrack) -> None:
        resampler = StereoTo24kMono()
        concealer = Concealer(FRAME_SAMPLES)
        expected_pts: int | None = None
        try:
            while True:
                frame = await track.recv()
                assert isinstance(frame, av.AudioFrame)
                self._last_rtp = time.monotonic()
                if not self._got_rtp:
                    self._got_rtp = True
                    if self._dead_timer is not None:  # from the setup allowance to the
                        self._dead_timer.cancel()     # steady-state deadline
                        self._arm_dead_timer()
                channels = len(frame.layout.channels)
                data: npt.NDArray[np.int16] = frame.to_ndarray().reshape(-1)  # type: ignore[assignment]
                pts = frame.pts or 0
                if expected_pts is not None and 0 < pts - expected_pts < 48_000:
                    # Packets declared lost by the jitter buffer: conceal, keep time.
                    self._sink.on_caller_audio(concealer.fill((pts - expected_pts) // 2))
                expected_pts = pts + frame.samples
                pcm = resampler.process(data, channels)
                concealer.observe(pcm)
                self._sink.on_caller_audio(pcm)
        except MediaStreamError:
            return

    def _limit(self) -> float:
        # Before the first packet, ICE and DTLS are still setting up: allow them longer.
        return self._dead_peer_s if self._got_rtp else max(self._dead_peer_s, SETUP_TIMEOUT_S)

    def _arm_dead_timer(self) -> None:
        loop = asyncio.get_running_loop()
        self._dead_timer = loop.call_at(
            loop.time() + self._limit() - (time.monotonic() - self._last_rtp),
            self._check_dead)

    def _check_dead(self) -> None:
        # A deadline re-armed lazily: one timer per dead_peer_s, not one per frame.
        if self._closed:
            return
        if time.monotonic() - self._last_rtp >= self._limit():
            self._dead_timer = None
            self._sink.on_leg_gone("client_lost")
        else:
            self._arm_dead_timer()

    # -- data channel -------------------------------------------------------------------

    def _on_datachannel(self, channel: RTCDataChannel) -> None:
        if self._channel is not None and channel.label != "oai-events":
            return
        self._channel = channel
        channel.on("message", self._on_message)
        channel.on("close", self._on_channel_close)
        if channel.readyState == "open":
            self._flush()
        else:
            channel.on("open", self._flush)

    def _on_channel_close(self) -> None:
        if not self._closed:  # our own close() is not the client hanging up
            self._sink.on_leg_gone("client_closed")

    def _flush(self) -> None:
        while self._pending and self._channel is not None:
            self._channel.send(self._pending.popleft())

    def _on_message(self, message: str | bytes) -> None:
        if isinstance(message, bytes):
            self._send_error("invalid_event", "Events must be JSON text, not binary.")
            return
        if len(message) > self._max_event_bytes:
            self._send_error("event_too_large",
                             f"Event of {len(message)} bytes is over the limit of "
                             f"{self._max_event_bytes} bytes.")
            return
        self._sink.on_client_text(message)

    def _send_error(self, code: str, message: str) -> None:
        from ..errors import error_event

        self.send_event(error_event(code, message))

    def send_event(self, event: dict[str, Any]) -> None:
        text = json.dumps(event, separators=(",", ":"))
        ch = self._channel
        if ch is not None and ch.readyState == "open":
            ch.send(text)
        elif not self._closed:
            self._pending.append(text)

    def _on_state(self) -> None:
        state = self.pc.connectionState
        if state == "connected" and self._on_ice_pair is not None:
            pair = selected_pair(self.pc)
            if pair is not None:
                self._on_ice_pair(*pair)
        if state in ("failed", "closed") and not self._closed:
            self._sink.on_leg_gone("client_lost" if state == "failed" else "client_closed")

    # -- outbound -----------------------------------------------------------------------

    def _on_frame(self, frame: QueuedFrame | None, offset_ms: float) -> None:
        prev = self._last_played
        self._last_played = frame
        if frame is not None and (prev is None or prev.response_id != frame.response_id):
            self._sink.on_playout(True, frame.response_id)
        elif frame is None and prev is not None:
            self._sink.on_playout(False, prev.response_id)
        self._sink.on_agent_frame(frame, offset_ms)

    def play_audio(self, pcm: bytes, item_id: str, response_id: str) -> None:
        self.playout.push(pcm, item_id, response_id)

    def end_audio(self, item_id: str) -> None:
        self.playout.end_item(item_id)

    def interrupt(self) -> tuple[str | None, float]:
        return self.playout.clear()

    def played_ms(self, item_id: str) -> float:
        return self.playout.played_ms.get(item_id, 0.0)

    @property
    def audio_active(self) -> bool:
        return self.playout.active or self._last_played is not None

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._dead_timer is not None:
            self._dead_timer.cancel()
        self.track.stop()
        for t in list(self._tasks):
            t.cancel()
        await self.pc.close()
        for t in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await t
