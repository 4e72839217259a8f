"""Tool kinds and recording consent, through the gateway with a scripted upstream."""

from __future__ import annotations

import json
from typing import Any

from tests.fake_upstream import running_fake
from tests.gateway_fixtures import API_KEY, running_gateway
from tests.peers import ClientPeer, PcmSourceTrack, tone
from tests.waiting import until

TOML = """
[profiles.default]
tools = ["order_status"]

[tools.order_status]
kind = "python"
target = "tests.sample_tools:order_status"
description = "Status of an order."

[tools.order_status.parameters]
type = "object"
required = ["order_id"]
properties = { order_id = { type = "string" } }
"""


async def call_tool(fake: Any, name: str, args: str, n: int) -> dict[str, Any]:
    c = fake.conn
    rid, iid, cid = f"resp_k{n}", f"item_k{n}", f"call_k{n}"
    item = {"id": iid, "type": "function_call", "name": name, "call_id": cid,
            "arguments": args, "status": "completed"}
    await c.send({"type": "response.created", "response": {
        "id": rid, "object": "realtime.response", "status": "in_progress", "output": []}})
    await c.send({"type": "response.done", "response": {
        "id": rid, "object": "realtime.response", "status": "completed", "output": [item]}})
    await until(lambda: any(e["type"] == "conversation.item.create"
                            and e["item"]["call_id"] == cid for e in c.received),
                5, "the tool output went upstream")
    out = next(e for e in c.received if e["type"] == "conversation.item.create"
               and e["item"]["call_id"] == cid)
    return json.loads(out["item"]["output"])  # type: ignore[no-any-return]


async def test_python_callable_tool_and_schema_errors() -> None:
    async with running_fake() as (fake, url), running_gateway(url, toml=TOML) as gw:
        peer = ClientPeer(PcmSourceTrack(tone(300, -30)))
        try:
            await peer.connect(gw.http, f"{gw.base}/v1/realtime/calls", await gw.mint())
            await peer.next_event("session.created")
            ok = await call_tool(fake, "order_status", '{"order_id": "A7"}', 1)
            assert ok == {"order_id": "A7", "status": "shipped"}
            bad = await call_tool(fake, "order_status", '{"order": 7}', 2)
            assert "order_id is required" in bad["error"]  # the model can recover
            junk = await call_tool(fake, "order_status", "not json", 3)
            assert "JSON object" in junk["error"]
        finally:
            await peer.close()


async def test_recording_consent_refused_means_no_recording() -> None:
    async with running_fake() as (fake, url), running_gateway(url) as gw:
        async with gw.http.post(f"{gw.base}/v1/realtime/client_secrets", json={
                "recording_consent": False}, headers={"Authorization": f"Bearer {API_KEY}"}) as r:
            token = (await r.json())["value"]
        peer = ClientPeer(PcmSourceTrack(tone(300, -30)))
        try:
            await peer.connect(gw.http, f"{gw.base}/v1/realtime/calls", token)
            await peer.next_event("session.created")
        finally:
            await peer.close()
        assert not list(gw.recordings.rglob("audio.wav"))
        async with gw.http.post(f"{gw.base}/v1/realtime/client_secrets", json={
                "recording_consent": "yes"}, headers={"Authorization": f"Bearer {API_KEY}"}) as r:
            assert r.status == 400
            assert (await r.json())["error"]["param"] == "recording_consent"
