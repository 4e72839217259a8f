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
are :mod:`gateway.supervise_mix`, the peers :mod:`gateway.supervise_peer`, the takeover
:mod:`gateway.supervise_takeover`.
See ``docs/supervise.md``.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiohttp import web

from .admin import _check
from .appkeys import CALLS
from .errors import ApiError
from .ids import new_id
from .session import CallSession
from .supervise_mix import Layout, ListenHub
from .supervise_peer import Listener, stereo_fmtp
from .supervise_takeover import Takeover
from .upstream.client import gateway_event_id

log = logging.getLogger("gateway.supervise")
audit = logging.getLogger("gateway.audit")
routes = web.RouteTableDef()

MAX_LISTENERS = 20
MAX_COACH_CHARS = 4000
_ATTR = "_gateway_supervision"


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
        lis = Listener(new_id("lis", 8), layout, self.drop_later)
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
                 "event_id": gateway_event_id(),
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
