"""One call's supervision: its listeners, the listen-in mix, coaching and a takeover.

Attached to a call on first use (:func:`supervision`) and torn down by the call's own close.
The routes that drive it are :mod:`gateway.api.supervise`.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from gateway.call.session import CallSession
from gateway.errors import ApiError
from gateway.ids import new_id
from gateway.upstream.client import gateway_event_id

from .mix import Layout, ListenHub
from .peer import Listener
from .takeover import Takeover

audit = logging.getLogger("gateway.audit")

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
