"""The WebRTC leg: an aiortc peer, its inbound audio pump and the ``oai-events`` channel.

With :mod:`gateway.legs.tracks`, the only aiortc code in the gateway.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt
from aiortc import (
    MediaStreamTrack,
    RTCConfiguration,
    RTCDataChannel,
    RTCPeerConnection,
    RTCRtpSender,
    RTCRtpTransceiver,
    RTCSessionDescription,
)
from aiortc.mediastreams import MediaStreamError

from ..audio.formats import WireFormat
from ..errors import ApiError
from . import aiortc_guards
from .base import LegSink
from .datapath import OwnedDatapath
from .ice import MediaNetwork, selected_pair
from .inbound import InboundOpus, install_inbound
from .opus_out import VoiceOpusEncoder
from .playout import Playout, QueuedFrame
from .tracks import OutboundAudioTrack

log = logging.getLogger("gateway.webrtc")
aiortc_guards.install()  # malformed STUN/RTP/SCTP packets are dropped, not fatal

OPUS_RTPMAP = re.compile(r"^a=rtpmap:\d+ opus/48000", re.IGNORECASE | re.MULTILINE)
FINGERPRINT = re.compile(r"^a=fingerprint:\S+ [0-9A-Fa-f:]{20,}\s*$", re.MULTILINE)
MAX_PENDING_EVENTS = 512
SETUP_TIMEOUT_S = 15.0

#: (packets lost since the last sample, jitter s, round-trip time s) -> None
StatsObserver = Callable[[int, float | None, float | None], None]


def check_offer(sdp: str) -> None:
    if not sdp.lstrip().startswith("v=0"):
        raise ApiError(400, "invalid_sdp", "The body is not an SDP offer (it must start with v=0).")
    if "\nm=audio " not in sdp.replace("\r\n", "\n"):
        raise ApiError(400, "invalid_sdp", "The SDP offer has no audio section (m=audio).")
    if not FINGERPRINT.search(sdp):
        # Without one, DTLS cannot authenticate the peer (aiortc would still answer and hold
        # the slot until the handshake fails): RFC 8827 requires it.
        raise ApiError(400, "invalid_sdp", "The SDP offer has no DTLS fingerprint "
                       "(a=fingerprint:<hash> <value>).")
    if not OPUS_RTPMAP.search(sdp):
        raise ApiError(400, "invalid_sdp", "The SDP offer's audio does not offer Opus "
                       "(a=rtpmap:<pt> opus/48000/2), the only codec this gateway speaks "
                       "to WebRTC peers.")


async def accept_offer(pc: RTCPeerConnection, offer_sdp: str, inbound: InboundOpus
                       ) -> list[RTCRtpTransceiver]:
    """Check and apply a peer's offer: Opus alone on its audio (the gateway's packets are
    Opus and its inbound decoder is libopus), the audio received decoded by ``inbound``.
    Returns the audio transceivers; bad offers raise 400 ``invalid_sdp``."""
    check_offer(offer_sdp)
    try:
        await pc.setRemoteDescription(RTCSessionDescription(sdp=offer_sdp, type="offer"))
    except Exception as e:  # aiortc's parser signals bad input with assert, ValueError...
        raise ApiError(400, "invalid_sdp", "The SDP offer could not be parsed or is not "
                       "acceptable (it needs ICE credentials, a DTLS fingerprint and an "
                       "Opus audio section).") from e
    audio = [t for t in pc.getTransceivers() if t.kind == "audio"]
    if not audio:
        raise ApiError(400, "invalid_sdp", "The SDP offer has no usable audio section.")
    opus = [c for c in RTCRtpSender.getCapabilities("audio").codecs
            if c.mimeType.lower() == "audio/opus"]
    for t in audio:
        t.setCodecPreferences(opus)
        install_inbound(t.receiver, inbound)
    return audio


async def drain(track: MediaStreamTrack) -> None:
    """Read a remote track nobody uses until it ends: aiortc's track queue is unbounded."""
    with contextlib.suppress(MediaStreamError):
        while True:
            await track.recv()


async def close_peer(pc: RTCPeerConnection, track: MediaStreamTrack,
                     tasks: set[asyncio.Task[None]]) -> None:
    """Stop our outbound track, cancel the peer's tasks, close it, and wait for the tasks."""
    track.stop()
    for t in list(tasks):
        t.cancel()
    try:
        await pc.close()
    except Exception:
        # aiortc's close() fails half-way after an offer it refused half-applied (an audio
        # section without a=mid leaves an SCTP transport without DTLS): stop what it skipped,
        # or the ICE sockets stay open.
        log.debug("peer close failed; stopping its transports", exc_info=True)
        for tr in pc.getTransceivers():
            dtls = tr.receiver.transport
            with contextlib.suppress(Exception):
                await dtls.stop()
            with contextlib.suppress(Exception):
                await dtls.transport.stop()
    for t in list(tasks):
        with contextlib.suppress(asyncio.CancelledError):
            await t


class WebRtcLeg:
    transport = "webrtc"
    forwards_audio_events = False

    def __init__(self, sink: LegSink, *, max_buffer_s: float, max_event_bytes: int,
                 dead_peer_s: float, stats_observer: StatsObserver | None = None,
                 stats_interval_s: float = 5.0, opus_bitrate: int = 96_000,
                 opus_complexity: int = 5,
                 on_encode: Callable[[float], None] | None = None,
                 network: MediaNetwork | None = None,
                 on_ice_pair: Callable[[str, str], None] | None = None,
                 max_channel_buffer_bytes: int = 4 * 1024 * 1024,
                 connect_timeout_s: float = SETUP_TIMEOUT_S,
                 never_connected_reason: str = "connect_timeout",
                 datapath: str = "owned") -> None:
        self._max_channel_buffer = max_channel_buffer_bytes
        self._too_slow = False
        # An answered offer whose peer never completes ICE + DTLS is an abandoned call (or
        # an attacker holding a slot): released at this deadline, not held for a resume.
        self._connect_timeout_s = connect_timeout_s
        self._never_connected_reason = never_connected_reason
        self._connect_timer: asyncio.TimerHandle | None = None
        self.connected = False
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
        self.inbound = InboundOpus(self._on_caller_pcm)
        self._last_played: QueuedFrame | None = None
        encoder = VoiceOpusEncoder(bitrate=opus_bitrate, complexity=opus_complexity)
        self.track = OutboundAudioTrack(self.playout, self._on_frame, encoder=encoder,
                                        on_encode=on_encode)
        # media.datapath = "owned": RTP/RTCP carried by gateway/legs/datapath.py once DTLS
        # is up (same playout, encoder, inbound decoder and frame reports as the track).
        self._datapath = OwnedDatapath(
            self.playout, self._on_frame, encoder, self.inbound,
            on_encode=on_encode) if datapath == "owned" else None
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
        await accept_offer(self.pc, offer_sdp, self.inbound)
        self.pc.addTrack(self.track)
        if self._datapath is not None:
            for t in self.pc.getTransceivers():
                if t.sender.track is self.track:
                    self._datapath.attach(t)
        try:
            if self._network is not None:
                self._network.install(self.pc)  # before gathering: ports in range, filters
            answer = await self.pc.createAnswer()
            await self.pc.setLocalDescription(answer)
        except ApiError:
            raise  # the network's own answer (503: no media port free)
        except Exception as e:
            # aiortc accepts some broken offers (an audio section without a=mid leaves the
            # data channel's transport without DTLS) and fails only here.
            raise ApiError(400, "invalid_sdp", "No answer can be made to this SDP offer "
                           "(check its a=mid and BUNDLE lines).") from e
        self._arm_dead_timer()
        self._connect_timer = asyncio.get_running_loop().call_later(
            self._connect_timeout_s, self._check_connected)
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
            if self._datapath is not None:
                lost, jitter, rtt = self._datapath.quality()
            else:
                lost, jitter, rtt = await self._aiortc_quality()
            delta, self._lost_seen = max(0, lost - self._lost_seen), max(lost, self._lost_seen)
            self._stats_observer(delta, jitter, rtt)

    async def _aiortc_quality(self) -> tuple[int, float | None, float | None]:
        report = await self.pc.getStats()
        lost, jitter, rtt = 0, None, None
        for s in report.values():
            if s.type == "inbound-rtp" and s.kind == "audio":
                lost += int(s.packetsLost or 0)
                jitter = float(s.jitter or 0) / 48000  # RTP clock units -> seconds
            elif s.type == "remote-inbound-rtp" and s.kind == "audio" and \
                    s.roundTripTime is not None:  # None until the first receiver report
                rtt = float(s.roundTripTime)
        return lost, jitter, rtt

    # -- inbound ------------------------------------------------------------------------

    def _on_track(self, track: MediaStreamTrack) -> None:
        if track.kind == "audio":
            return  # decoded in the receiver's callback (InboundOpus): nothing reaches the track
        task = asyncio.create_task(drain(track), name=f"webrtc-{track.kind}-in")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _on_caller_pcm(self, pcm: npt.NDArray[np.int16]) -> None:
        self._last_rtp = time.monotonic()
        if not self._got_rtp:
            self._got_rtp = True
            if self._dead_timer is not None:  # from the setup allowance to the
                self._dead_timer.cancel()     # steady-state deadline
                self._arm_dead_timer()
        self._sink.on_caller_audio(pcm)

    def _limit(self) -> float:
        # Before the first packet, ICE and DTLS are still setting up: allow them longer.
        return self._dead_peer_s if self._got_rtp else max(self._dead_peer_s, SETUP_TIMEOUT_S)

    def _arm_dead_timer(self) -> None:
        loop = asyncio.get_running_loop()
        self._dead_timer = loop.call_at(
            loop.time() + self._limit() - (time.monotonic() - self._last_rtp),
            self._check_dead)

    def _check_connected(self) -> None:
        self._connect_timer = None
        if not self.connected and not self._closed:
            log.info("peer did not connect within %.0f s: releasing the call",
                     self._connect_timeout_s)
            self._sink.on_leg_gone(self._never_connected_reason)

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
        self._sink.on_leg_error(code, message)  # in the client's API shape

    def send_event(self, event: dict[str, Any]) -> None:
        if self._too_slow:
            return
        text = json.dumps(event, separators=(",", ":"))
        ch = self._channel
        if ch is not None and ch.readyState == "open":
            # aiortc buffers what SCTP has not yet delivered without a limit: a client that
            # stops reading (or acknowledging) would grow it for ever. Past the bound it is
            # gone or stuck, as the WebSocket leg decides when its queue is full.
            if ch.bufferedAmount + len(text) > self._max_channel_buffer:
                self._too_slow = True
                log.warning("data channel client is not reading (%d bytes unsent); ending "
                            "the call", ch.bufferedAmount)
                self._sink.on_leg_gone("client_too_slow")
                return
            ch.send(text)
        elif not self._closed:
            self._pending.append(text)

    def _on_state(self) -> None:
        state = self.pc.connectionState
        if state == "connected":
            self.connected = True
            if self._connect_timer is not None:
                self._connect_timer.cancel()
                self._connect_timer = None
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

    def set_output_format(self, fmt: WireFormat) -> None:
        return  # the format is the transport's (policy refuses a change)

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
        if self._connect_timer is not None:
            self._connect_timer.cancel()
        if self._datapath is not None:
            await self._datapath.stop()
        await close_peer(self.pc, self.track, self._tasks)
