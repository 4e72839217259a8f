"""What a GPT-Live client's events do to its call (the Live counterpart of
:mod:`gateway.call.client_events`).

Every event is checked strictly first (:meth:`LiveClientEvents.check`, a ``from_client``
hook): an unknown type or field, or any command after the session closed, is answered with a
Live ``error`` as OpenAI answers it, and goes no further. Then: audio appends feed the caller
intake; ``session.update`` and the context appends are policed under the profile's locks;
answers to delegations are recorded; ``session.close`` asks the upstream for
``session.closed``. Everything else goes upstream as it is.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable

import numpy as np

from . import live_policy
from .intake import CallerIntake
from .live_upstream_events import LiveUpstreamEvents
from .policy import PolicyError
from .state import CallPort, Event, Sender

#: One append may carry at most this much audio (as for Realtime).
MAX_APPEND_BYTES = 15 * 1024 * 1024
#: A context append longer than this is cut in the transcript (the upstream gets it whole).
NOTE_CHARS = 2000


def _eid(event: Event) -> str | None:
    eid = event.get("event_id")
    return eid if isinstance(eid, str) else None


class LiveClientEvents:
    def __init__(self, call: CallPort, intake: CallerIntake,
                 upstream_room: LiveUpstreamEvents) -> None:
        self.call = call
        self.intake = intake
        self.up = upstream_room
        #: The profile's locks for this client: none for a trusted API-key holder (set by
        #: the call's setup, see ``gateway.call.live_calls``).
        self.locked: frozenset[str] = call.profile.locked_fields()
        self.table: dict[str, Callable[[Event, Sender], None]] = {
            "session.start": self.start_again,
            "session.update": self.session_update,
            "session.input_audio.append": self.append,
            "session.instructions.append": self.context_append,
            "session.thinking.append": self.context_append,
            "session.commentary.append": self.context_append,
            "response.item.create": self.item_create,
            "session.close": self.close,
        }
        call.hooks.from_client.insert(0, self.check)

    def _locked(self, sender: Sender) -> frozenset[str]:
        """The call's own client: the locks its setup chose; a sideband: by its trust."""
        return self.locked if sender.reply == self.call.send_to_client else \
            sender.trust.locked(self.call.profile)

    def _refuse(self, e: PolicyError, event: Event, sender: Sender | None = None) -> None:
        self.call.client_error(e.code, e.message, param=e.param, client_event_id=_eid(event),
                               to=sender.reply if sender is not None else None)

    def check(self, event: Event, reply: Callable[[Event], None] | None = None) -> list[Event]:
        """Live's strict checks of a client (or sideband: ``reply``) event; [] refuses it."""
        etype = event["type"]
        if etype not in live_policy.CLIENT_EVENTS:
            self.call.client_error("invalid_value", f"Invalid value: '{etype}'. Supported "
                                   f"values are: {', '.join(sorted(live_policy.CLIENT_EVENTS))}.",
                                   param="type", client_event_id=_eid(event), to=reply)
            return []
        if self.up.closed_sent or self.up.close_requested:
            self.call.client_error("session_closed", f"The session is closed; '{etype}' was "
                                   "ignored.", client_event_id=_eid(event), to=reply)
            return []
        try:
            live_policy.check_client_event(event)
        except PolicyError as e:
            self.call.client_error(e.code, e.message, param=e.param,
                                   client_event_id=_eid(event), to=reply)
            return []
        return [event]

    def forward(self, event: Event, sender: Sender | None = None) -> None:
        """A Live event the gateway passes on as it is."""
        self._send(event)

    def _send(self, event: Event) -> None:
        if self.call.upstream is not None:
            self.call.upstream.send(event)

    def start_again(self, event: Event, sender: Sender) -> None:
        self.call.client_error("invalid_value", "The session already started; session.start "
                               "is only the first event of a Live WebSocket (never sent on "
                               "WebRTC).", param="type", client_event_id=_eid(event))

    def session_update(self, event: Event, sender: Sender) -> None:
        call = self.call
        try:
            new, upstream = live_policy.apply_update(call.session, event["session"],
                                                     call.profile, call.tool_lookup,
                                                     locked=self._locked(sender))
        except PolicyError as e:
            self._refuse(e, event, sender)
            return
        call.session = new
        out: Event = {"type": "session.update", "session": upstream}
        if (eid := _eid(event)) is not None:
            out["event_id"] = eid
        self._send(out)

    def append(self, event: Event, sender: Sender) -> None:
        audio = event["audio"]
        try:
            if not isinstance(audio, str):
                raise ValueError
            pcm = base64.b64decode(audio, validate=True)
        except (binascii.Error, ValueError):
            self.call.client_error("invalid_value", "Invalid 'audio': expected base64 PCM16.",
                                   param="audio", client_event_id=_eid(event))
            return
        if len(pcm) % 2 or len(pcm) > MAX_APPEND_BYTES:
            self.call.client_error("invalid_value", "Invalid 'audio': PCM16 needs an even "
                                   "number of bytes, at most 15 MiB per append.",
                                   param="audio", client_event_id=_eid(event))
            return
        self.intake.push(np.frombuffer(pcm, dtype="<i2"))

    def context_append(self, event: Event, sender: Sender) -> None:
        call = self.call
        content, deleg = event["content"], event["delegation_id"]
        if not isinstance(content, str) or not (deleg is None or isinstance(deleg, str)):
            self._refuse(PolicyError("content", "Invalid type: 'content' is a string and "
                                     "'delegation_id' a string or null.",
                                     code="invalid_type"), event, sender)
            return
        try:
            live_policy.check_append(event, call.profile, self._locked(sender))
        except PolicyError as e:
            self._refuse(e, event, sender)
            return
        if deleg is not None:  # the app's answer to a delegation: a tool result
            call.note("tool_result", text=content[:NOTE_CHARS], tool="delegation",
                      delegation_id=deleg, via=event["type"].split(".")[1])
        self._send(event)

    def item_create(self, event: Event, sender: Sender) -> None:
        item = event["item"]
        if isinstance(item, dict) and item.get("type") == "function_call_output":
            for hook in self.call.hooks.function_output_guard:
                if (refusal := hook(item)) is not None:
                    self._refuse(PolicyError("item.call_id", refusal,
                                             code="tool_output_refused"), event, sender)
                    return
        self._send(event)

    def close(self, event: Event, sender: Sender) -> None:
        self.up.close_requested = True
        if self.call.upstream is None:  # reconnecting: answer for the upstream
            self.up.closed_sent = True
            self.call.send_to_client(self.up.closed_event("client_closed"))
            self.call.request_close("client_closed")
            return
        self._send(event)
