"""The Responses backend of a Live session under ``responses`` delegation, played by the
engine's own agent: a delegated tool call reaches the client as nested Responses streaming
events inside ``response.event``; the client's ``response.item.create``
(``function_call_output``) and ``response.create`` continue it, and the result is spoken.

Only function tools exist here (the engine runs no hosted tools); the nested events carry the
fields the Responses stream carries for a function call, with zero usage.
"""

from __future__ import annotations

import json
from typing import Any

from .agent import Turn
from .live_protocol import ENVELOPE, live_event, refused
from .live_session import Delegation, LiveSession
from .protocol import Json, check_keys, get_obj, get_str, new_id

_OUTPUT_KEYS = frozenset({"type", "call_id", "output", "id", "status"})
_ZERO_USAGE: Json = {"input_tokens": 0, "output_tokens": 0, "total_tokens": 0}


class _Stream:
    """One nested Responses stream: numbered events wrapped in ``response.event``."""

    def __init__(self, s: LiveSession, response_id: str, delegation_id: str | None) -> None:
        self.s = s
        self.response_id = response_id
        self.delegation_id = delegation_id
        self.seq = 0

    def response(self, status: str, output: list[Json]) -> Json:
        cfg = (self.s.cfg.responses or {})
        return {"id": self.response_id, "object": "response", "status": status,
                "model": cfg.get("model"), "output": output,
                "usage": _ZERO_USAGE if status != "in_progress" else None}

    async def send(self, type_: str, **fields: Any) -> None:
        nested = {"type": type_, "sequence_number": self.seq, **fields}
        self.seq += 1
        await self.s.emit(live_event("response.event", event=nested,
                                     delegation_id=self.delegation_id))


async def emit_function_call(s: LiveSession, deleg: Delegation, response_id: str) -> str:
    """The backend calls the tool the agent chose; returns the call_id the client answers."""
    stream = _Stream(s, response_id, deleg.id)
    call_id = new_id("call")
    item: Json = {"type": "function_call", "id": new_id("fc"), "call_id": call_id,
                  "name": deleg.call.name, "arguments": "", "status": "in_progress"}
    await stream.send("response.created", response=stream.response("in_progress", []))
    await stream.send("response.output_item.added", output_index=0, item=dict(item))
    item["arguments"] = json.dumps(deleg.call.arguments)
    await stream.send("response.function_call_arguments.done", item_id=item["id"],
                      output_index=0, name=item["name"], arguments=item["arguments"])
    item["status"] = "completed"
    await stream.send("response.output_item.done", output_index=0, item=dict(item))
    await stream.send("response.completed", response=stream.response("completed", [item]))
    return call_id


def _require_responses(s: LiveSession, kind: str) -> None:
    if s.cfg.delegation != "responses":
        raise refused("invalid_request", f"{kind} requires Responses delegation.", "type")


async def response_item_create(s: LiveSession, ev: Json) -> None:
    _require_responses(s, "response.item.create")
    check_keys(ev, ENVELOPE | {"item"}, "")
    item = get_obj(ev, "item", "", required=True)
    assert item is not None
    if item.get("type") != "function_call_output":
        raise refused("unsupported_value", "The local engine's Responses backend accepts "
                      "function_call_output items only.", "item.type")
    check_keys(item, _OUTPUT_KEYS, "item")
    call_id = get_str(item, "call_id", "item", required=True)
    output = item.get("output")
    if not isinstance(output, str):
        raise refused("invalid_type", "Invalid type for 'item.output': expected a string.",
                      "item.output")
    deleg = next((d for d in s.delegations.values() if d.call_id == call_id), None)
    if deleg is None:
        raise refused("invalid_value", f"No function call with call_id '{call_id}'.",
                      "item.call_id")
    deleg.answered = True
    s.pending_outputs.append((deleg.call.name, output))


async def response_create(s: LiveSession, ev: Json) -> None:
    """Continue the delegated response with the outputs given: the backend's answer (a
    message) streams as nested events and the Live model says it."""
    _require_responses(s, "response.create")
    check_keys(ev, ENVELOPE, "")
    outputs, s.pending_outputs = tuple(s.pending_outputs), []
    deleg_id = next(reversed(s.delegations), None)
    stream = _Stream(s, new_id("resp"), deleg_id)
    await stream.send("response.created", response=stream.response("in_progress", []))
    reply = s.agent.reply(Turn("tool_output", outputs=outputs) if outputs else
                          Turn("none"), [], "none")
    message: Json = {"type": "message", "id": new_id("msg"), "role": "assistant",
                     "status": "completed",
                     "content": [{"type": "output_text", "text": reply.text,
                                  "annotations": []}]}
    await stream.send("response.output_text.done", item_id=message["id"], output_index=0,
                      content_index=0, text=reply.text)
    await stream.send("response.completed", response=stream.response("completed", [message]))
    s.cancel_acknowledgement()
    s.say(reply.text)
