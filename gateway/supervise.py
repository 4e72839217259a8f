"""Supervisor listen-in, coaching and takeover of live calls (``/admin/calls/{id}/…``).

- ``POST /admin/calls/{id}/listen[?layout=mono|stereo]`` (``application/sdp`` offer) -> 201
  answer: a WebRTC listener hearing the caller and the agent as the caller hears it.
- ``GET /admin/calls/{id}/listeners``: the listeners, the mix's counters, the takeover.
- ``DELETE /admin/calls/{id}/listeners/{lid}``: ends one listener.
- ``POST /admin/calls/{id}/coach`` ``{"text"}``: a system message for the agent's next turns.
- ``POST /admin/calls/{id}/takeover``: ``{"listener_id"}`` (a listener whose offer sent a
  microphone) or an ``application/sdp`` offer (a new listener, 201 answer): the supervisor's
  microphone goes to the caller, the agent is paused.
- ``POST /admin/calls/{id}/handback``: the agent resumes, with the takeover in its context.

All behind the admin token (``admin._check``). The per-call state (:class:`Supervision`) is
attached to the call on first use and torn down by the call's own close. The mix and fan-out
are :mod:`gateway.supervise_mix`; the takeover is :mod:`gateway.supervise_takeover`.
See ``docs/supervise.md``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import Callable
from typing import Any

import av
import numpy as np
import numpy.typing as npt
from aiohttp import web
from aiortc import (
    MediaStreamTrack,
    RTCConfiguration,
    RTCPeerConnection,
    RTCRtpSender,
    RTCSessionDescription,
)
from aiortc.mediastreams import MediaStreamError

from .admin import _check
from .appkeys import CALLS
from .audio.resample import StereoTo24kMono
from .errors import ApiError
from .ids import new_id
from .legs.webrtc import check_offer
from .session import CallSession
from .supervise_mix import Layout, ListenerTrack, ListenHub, _percentiles
from .supervise_takeover import Takeover
from .upstream.client import GATEWAY_EVENT_PREFIX

log = logging.getLogger("gateway.supervise")
audit = logging.getLogger("gateway.audit")
routes = web.RouteTableDef()

MAX_LISTENERS = 20
#: A listener whose ICE/DTLS has not connected by then is dropped.
SETUP_TIMEOUT_S = 20.0
MAX_COACH_CHARS = 4000
_ATTR = "_gateway_supervision"

MicSink = Callable[[npt.NDArray[np.int16]], None]


class Listener:
    """One supervisor's peer connection: the shared packets out, their microphone in."""

    def __init__(self, sup: Supervision, lid: str, layout: Layout) -> None:
        self.sup = sup
        self.id = lid
        self.layout: Layout = layout
        self.created_at = time.time()
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))  # never a public STUN
        self.track = ListenerTrack(layout)
        self.has_mic = False
        self.mic_frames = 0
        #: Set while this listener has the call: where its microphone goes.
        self.on_mic: MicSink | None = None
        self._resampler = StereoTo24kMono()
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False
        self._setup_timer: asyncio.TimerHandle | None = None
        self.pc.on("track", self._on_track)
        self.pc.on("connectionstatechange", self._on_state)

    async def answer(self, offer_sdp: str, *, stereo: bool) -> str:
        check_offer(offer_sdp)
        try:
            await self.pc.setRemoteDescription(RTCSessionDescription(sdp=offer_sdp, type="offer"))
        except Exception as e:  # aiortc's parser signals bad input with assert, ValueError...
            raise ApiError(400, "invalid_sdp", "The SDP offer could not be parsed or is not "
                           "acceptable (it needs ICE credentials, a DTLS fingerprint and an "
                           "Opus audio section).") from e
        audio = [t for t in self.pc.getTransceivers() if t.kind == "audio"]
        if not audio:
            raise ApiError(400, "invalid_sdp", "The SDP offer has no usable audio section.")
        # The packets are Opus, encoded once for every listener: no other codec will do.
        opus = [c for c in RTCRtpSender.getCapabilities("audio").codecs
                if c.mimeType.lower() == "audio/opus"]
        audio[0].setCodecPreferences(opus)
        self.pc.addTrack(self.track)
        try:
            await self.pc.setLocalDescription(await self.pc.createAnswer())
        except Exception as e:
            raise ApiError(400, "invalid_sdp", "The SDP offer has no Opus audio.") from e
        sdp = str(self.pc.localDescription.sdp)
        if not re.search(r"a=rtpmap:\d+ opus/48000", sdp, re.IGNORECASE):
            raise ApiError(400, "invalid_sdp", "The SDP offer has no Opus audio.")
        loop = asyncio.get_running_loop()
        self._setup_timer = loop.call_later(SETUP_TIMEOUT_S, self._setup_expired)
        return stereo_fmtp(sdp) if stereo else sdp

    def _setup_expired(self) -> None:
        if self.pc.connectionState != "connected":
            self.sup.drop_later(self.id, "setup_timeout")

    def _on_state(self) -> None:
        state = self.pc.connectionState
        if state == "connected" and self._setup_timer is not None:
            self._setup_timer.cancel()
            self._setup_timer = None
        elif state in ("failed", "closed") and not self._closed:
            self.sup.drop_later(self.id, "listener_lost" if state == "failed" else "listener_left")

    def _on_track(self, track: MediaStreamTrack) -> None:
        if track.kind == "audio":
            self.has_mic = True
        task = asyncio.create_task(self._pump(track), name=f"listener-mic:{self.id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _pump(self, track: MediaStreamTrack) -> None:
        # Always drained (aiortc's remote track queue is unbounded); converted only while
        # this listener has the call.
        with contextlib.suppress(MediaStreamError):
            while True:
                frame = await track.recv()
                self.mic_frames += 1
                sink = self.on_mic
                if sink is None or not isinstance(frame, av.AudioFrame):
                    continue
                data: npt.NDArray[np.int16] = frame.to_ndarray().reshape(-1)  # type: ignore[assignment]
                sink(self._resampler.process(data, len(frame.layout.channels)))

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
        self.track.stop()
        for t in list(self._tasks):
            t.cancel()
        await self.pc.close()
        for t in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await t


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


class Supervision:
    """Everything supervisors attached to one call: listeners, the mix, a takeover."""

    def __init__(self, call: CallSession) -> None:
        self.call = call
        self.hub = ListenHub(call.hooks, call.call_ms)
        self.listeners: dict[str, Listener] = {}
        self.takeover: Takeover | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False
        call.hooks.on_close.append(self._on_call_close)

    # -- listeners ------------------------------------------------------------------------

    async def listen(self, offer_sdp: str, layout: Layout, *, who: str) -> tuple[Listener, str]:
        if len(self.listeners) >= MAX_LISTENERS:
            raise ApiError(409, "listener_limit", f"A call takes at most {MAX_LISTENERS} "
                           "listeners.")
        lis = Listener(self, new_id("lis", 8), layout)
        try:
            answer = await lis.answer(offer_sdp, stereo=layout == "stereo")
        except BaseException:
            await lis.close()
            raise
        if self._closed:  # the call ended while the answer was made
            await lis.close()
            raise ApiError(404, "call_not_found", "No live call with that id.")
        self.listeners[lis.id] = lis
        self.hub.add(lis.track)
        audit.info("listen call_id=%s listener=%s layout=%s by=%s", self.call.call_id, lis.id,
                   layout, who)
        return lis, answer

    async def remove(self, lid: str, reason: str) -> bool:
        lis = self.listeners.pop(lid, None)
        if lis is None:
            return False
        if self.takeover is not None and self.takeover.listener_id == lid:
            self.handback("supervisor_left")
        await self.hub.remove(lis.track)
        await lis.close()
        audit.info("listener_end call_id=%s listener=%s reason=%s", self.call.call_id, lid,
                   reason)
        return True

    def drop_later(self, lid: str, reason: str) -> None:
        """A listener's connection failed or never came up: remove it (from a callback)."""
        if self._closed or lid not in self.listeners:
            return
        task = asyncio.create_task(self._drop(lid, reason), name=f"listener-drop:{lid}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _drop(self, lid: str, reason: str) -> None:
        await self.remove(lid, reason)

    # -- coach ----------------------------------------------------------------------------

    def coach(self, text: str, *, who: str) -> str:
        up = self.call.upstream
        if up is None:
            raise ApiError(409, "upstream_unavailable", "The call's upstream is reconnecting; "
                           "try again.")
        item_id = new_id("gw_coach", 8)
        up.send({"type": "conversation.item.create",
                 "event_id": new_id(GATEWAY_EVENT_PREFIX + "evt"),
                 "item": {"id": item_id, "type": "message", "role": "system",
                          "content": [{"type": "input_text", "text": text}]}})
        self.call.note("note", speaker=None, text=text, event="coach", item_id=item_id)
        audit.info("coach call_id=%s item=%s by=%s", self.call.call_id, item_id, who)
        return item_id

    # -- takeover -------------------------------------------------------------------------

    def start_takeover(self, lis: Listener, *, who: str) -> None:
        if self.takeover is not None:
            raise ApiError(409, "already_taken_over", "A supervisor already has this call "
                           f"(listener {self.takeover.listener_id}).")
        if not lis.has_mic:
            raise ApiError(409, "listener_has_no_microphone", "This listener's offer sent no "
                           "audio (recvonly): take over with a sendrecv listener or a new offer.")
        if self.call.leg is None:
            raise ApiError(409, "call_suspended", "The caller is reconnecting; try again.")
        tk = Takeover(self.call, lis.id, who)
        self.takeover = tk
        lis.on_mic = tk.feed
        self.hub.move(lis.track, "caller")  # the supervisor does not hear themselves back
        tk.start()
        audit.info("takeover call_id=%s listener=%s by=%s", self.call.call_id, lis.id, who)

    def handback(self, reason: str) -> dict[str, Any]:
        tk = self.takeover
        if tk is None:
            raise ApiError(409, "not_taken_over", "No supervisor has this call.")
        self.takeover = None
        lis = self.listeners.get(tk.listener_id)
        if lis is not None:
            lis.on_mic = None
            self.hub.move(lis.track, lis.layout)
        summary = tk.end(reason)
        audit.info("handback call_id=%s listener=%s reason=%s", self.call.call_id,
                   tk.listener_id, reason)
        return summary

    # -- teardown -------------------------------------------------------------------------

    async def _on_call_close(self, reason: str) -> None:
        self._closed = True
        if self.takeover is not None:
            self.takeover.detach()
            self.takeover = None
        listeners = list(self.listeners.values())
        self.listeners.clear()
        await self.hub.stop()
        await asyncio.gather(*(lis.close() for lis in listeners), return_exceptions=True)
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    def to_json(self) -> dict[str, Any]:
        return {"object": "list", "data": [lis.to_json() for lis in self.listeners.values()],
                "mix": self.hub.stats(),
                "takeover": self.takeover.stats() if self.takeover is not None else None}


def supervision(call: CallSession) -> Supervision:
    """The call's supervision, attached on first use (no change to the call's setup)."""
    sup = getattr(call, _ATTR, None)
    if not isinstance(sup, Supervision):
        sup = Supervision(call)
        setattr(call, _ATTR, sup)
    return sup


# -- routes ---------------------------------------------------------------------------------


def _call(request: web.Request) -> CallSession:
    call = request.app[CALLS].get(request.match_info["call_id"])
    if not isinstance(call, CallSession) or call.end_reason is not None:
        raise ApiError(404, "call_not_found", "No live call with that id.")
    return call


def _layout(request: web.Request) -> Layout:
    layout = request.query.get("layout", "mono")
    if layout not in ("mono", "stereo"):
        raise ApiError(400, "invalid_layout", "layout must be 'mono' or 'stereo'.",
                       param="layout")
    return "stereo" if layout == "stereo" else "mono"


async def _sdp(request: web.Request) -> str:
    if request.content_type != "application/sdp":
        raise ApiError(400, "invalid_content_type", "Send the SDP offer as application/sdp.")
    return await request.text()


def _sdp_answer(call: CallSession, lis: Listener, answer: str) -> web.Response:
    return web.Response(status=201, text=answer, content_type="application/sdp", headers={
        "Location": f"/admin/calls/{call.call_id}/listeners/{lis.id}"})


async def _json(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError as e:
        raise ApiError(400, "invalid_json", "The body is not valid JSON.") from e
    if not isinstance(body, dict):
        raise ApiError(400, "invalid_json", "The body must be a JSON object.")
    return body


@routes.post("/admin/calls/{call_id}/listen")
async def listen(request: web.Request) -> web.Response:
    who = _check(request)
    call = _call(request)
    layout = _layout(request)
    lis, answer = await supervision(call).listen(await _sdp(request), layout, who=who)
    return _sdp_answer(call, lis, answer)


@routes.get("/admin/calls/{call_id}/listeners")
async def list_listeners(request: web.Request) -> web.Response:
    _check(request)
    return web.json_response(supervision(_call(request)).to_json())


@routes.delete("/admin/calls/{call_id}/listeners/{listener_id}")
async def end_listener(request: web.Request) -> web.Response:
    _check(request)
    lid = request.match_info["listener_id"]
    if not await supervision(_call(request)).remove(lid, "admin_ended"):
        raise ApiError(404, "listener_not_found", "No listener with that id on this call.")
    return web.json_response({"id": lid, "deleted": True})


@routes.post("/admin/calls/{call_id}/coach")
async def coach(request: web.Request) -> web.Response:
    who = _check(request)
    call = _call(request)
    text = (await _json(request)).get("text")
    if not isinstance(text, str) or not text.strip():
        raise ApiError(400, "invalid_text", "'text' must be a non-empty string.", param="text")
    if len(text) > MAX_COACH_CHARS:
        raise ApiError(400, "text_too_long", f"'text' may hold at most {MAX_COACH_CHARS} "
                       "characters.", param="text")
    item_id = supervision(call).coach(text, who=who)
    return web.json_response({"call_id": call.call_id, "item_id": item_id})


@routes.post("/admin/calls/{call_id}/takeover")
async def takeover(request: web.Request) -> web.Response:
    who = _check(request)
    call = _call(request)
    sup = supervision(call)
    if request.content_type == "application/sdp":
        if sup.takeover is not None:  # refused before a peer is made for nothing
            raise ApiError(409, "already_taken_over", "A supervisor already has this call.")
        lis, answer = await sup.listen(await request.text(), _layout(request), who=who)
        try:
            sup.start_takeover(lis, who=who)
        except ApiError:
            await sup.remove(lis.id, "takeover_refused")
            raise
        return _sdp_answer(call, lis, answer)
    lid = (await _json(request)).get("listener_id")
    lis_or_none = sup.listeners.get(lid) if isinstance(lid, str) else None
    if lis_or_none is None:
        raise ApiError(404, "listener_not_found", "No listener with that id on this call.",
                       param="listener_id")
    sup.start_takeover(lis_or_none, who=who)
    return web.json_response({"call_id": call.call_id, "listener_id": lis_or_none.id,
                              "taken_over": True})


@routes.post("/admin/calls/{call_id}/handback")
async def handback(request: web.Request) -> web.Response:
    _check(request)
    call = _call(request)
    summary = supervision(call).handback("admin")
    return web.json_response({"call_id": call.call_id, "handed_back": True, **summary})


__all__ = ["Listener", "Supervision", "routes", "stereo_fmtp", "supervision"]
