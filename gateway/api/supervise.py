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

All behind the admin token (``admin._check``). The per-call state is
:class:`gateway.supervise.supervision.Supervision`, attached to the call on first use; the mix
and fan-out, the peers and the takeover live beside it in :mod:`gateway.supervise`.
See ``docs/supervise.md``.
"""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import web

from gateway.call.session import CallSession
from gateway.errors import ApiError
from gateway.supervise.mix import Layout
from gateway.supervise.peer import Listener
from gateway.supervise.supervision import MAX_COACH_CHARS, supervision

from .admin import _check
from .appkeys import CALLS

log = logging.getLogger("gateway.supervise")
audit = logging.getLogger("gateway.audit")
routes = web.RouteTableDef()

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


__all__ = ["routes"]
