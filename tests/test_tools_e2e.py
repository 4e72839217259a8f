"""Server-side tools end to end: a slow webhook makes the agent say a filler first; client
tool declarations and outputs are policed."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from aiohttp import web

from gateway.api.appkeys import METRICS
from tests.fake_upstream import running_fake
from tests.gateway_fixtures import running_gateway
from tests.peers import ClientPeer, PcmSourceTrack, from_pcm, tone
from tests.test_e2e_local_engine import speech48
from tests.waiting import until


async def slow_tool_server(delay_s: float, seen: list[dict[str, Any]]
                           ) -> tuple[web.AppRunner, str]:
    async def handle(request: web.Request) -> web.Response:
        seen.append({"auth": request.headers.get("Authorization"), "body": await request.json()})
        await asyncio.sleep(delay_s)
        return web.json_response({"found": True, "name": "Ada Lovelace", "account_id": "12345"})

    app = web.Application()
    app.router.add_post("/api/tools/lookup_customer", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"http://127.0.0.1:{port}/api/tools/lookup_customer"


async def test_slow_webhook_tool_gets_a_filler_before_the_answer(local_engine_url: str,
                                                                  monkeypatch: Any) -> None:
    seen: list[dict[str, Any]] = []
    runner, url = await slow_tool_server(3.0, seen)
    monkeypatch.setenv("CRM_TOKEN", "crm-secret-token")
    toml = f"""
[profiles.default]
tools = ["lookup_customer"]

[tools.lookup_customer]
kind = "webhook"
url = "{url}"
auth_env = "CRM_TOKEN"
timeout_s = 8
filler_after_s = 1.0
description = "Look up a customer by phone number or account id."
[tools.lookup_customer.parameters]
type = "object"
properties = {{ account_id = {{ type = "string" }}, phone = {{ type = "string" }} }}
"""
    try:
        async with running_gateway(local_engine_url, toml=toml,
                                   env={"OPENAI_API_KEY": ""}) as gw:
            peer = ClientPeer(PcmSourceTrack(from_pcm(speech48("lookup_account"))))
            try:
                await peer.connect(gw.http, f"{gw.base}/v1/realtime/calls", await gw.mint())
                await peer.next_event("response.function_call_arguments.done", timeout_s=25)
                texts: list[str] = []
                async with asyncio.timeout(30):
                    while not any("ada" in t.lower() for t in texts):
                        ev = await peer.next_event("response.output_audio_transcript.done")
                        texts.append(ev["transcript"])
                assert "one moment" in texts[0].lower(), texts  # the filler came first
                assert seen[0]["auth"] == "Bearer crm-secret-token"
                assert seen[0]["body"].get("account_id") == "12345"
                reg = gw.app[METRICS].registry
                assert reg.get_sample_value("gateway_tool_calls_total", {
                    "tool": "lookup_customer", "outcome": "ok"}) == 1
            finally:
                await peer.close()
    finally:
        await runner.cleanup()


async def test_client_cannot_declare_or_answer_server_tools() -> None:
    async with running_fake() as (fake, url), running_gateway(url) as gw:
        peer = ClientPeer(PcmSourceTrack(tone(300, -30)))
        try:
            await peer.connect(gw.http, f"{gw.base}/v1/realtime/calls", await gw.mint())
            await peer.next_event("session.created")
            peer.send({"type": "session.update", "event_id": "t1", "session": {
                "type": "realtime", "tools": [{"type": "function", "name": "transfer_money",
                                               "parameters": {"type": "object"}}]}})
            err = await peer.next_event("error")
            assert err["error"]["event_id"] == "t1"
            assert err["error"]["param"] in ("session.tools", "session.tools[0]")
            # The model calls a server tool; the client tries to answer it itself.
            c = fake.conn
            rid, iid, call_id = "resp_t1", "item_t1", "call_t1"
            item = {"id": iid, "type": "function_call", "name": "lookup_customer",
                    "call_id": call_id, "arguments": "", "status": "in_progress"}
            await c.send({"type": "response.created", "response": {
                "id": rid, "object": "realtime.response", "status": "in_progress",
                "output": []}})
            await c.send({"type": "response.output_item.added", "response_id": rid,
                          "output_index": 0, "item": item})
            args = json.dumps({"account_id": "10001"})
            await c.send({"type": "response.function_call_arguments.done", "response_id": rid,
                          "item_id": iid, "output_index": 0, "call_id": call_id,
                          "name": "lookup_customer", "arguments": args})
            peer.send({"type": "conversation.item.create", "event_id": "t2", "item": {
                "type": "function_call_output", "call_id": call_id, "output": "{}"}})
            err = await peer.next_event("error")
            assert err["error"]["code"] == "tool_output_refused"
            done_item = dict(item, arguments=args, status="completed")
            await c.send({"type": "response.done", "response": {
                "id": rid, "object": "realtime.response", "status": "completed",
                "output": [done_item]}})
            # The gateway answers with the real database row, then asks for a response.
            await until(lambda: any(e["type"] == "response.create" for e in c.received),
                        5, 'the gateway asked for the follow-up response')
            outputs = [e for e in c.received if e["type"] == "conversation.item.create"]
            assert len(outputs) == 1
            assert json.loads(outputs[0]["item"]["output"])["name"] == "Jane Doe"
        finally:
            await peer.close()


async def test_cancelled_response_tools_are_not_run() -> None:
    async with running_fake() as (fake, url), running_gateway(url) as gw:
        peer = ClientPeer(PcmSourceTrack(tone(300, -30)))
        try:
            await peer.connect(gw.http, f"{gw.base}/v1/realtime/calls", await gw.mint())
            await peer.next_event("session.created")
            c = fake.conn
            item = {"id": "item_x", "type": "function_call", "name": "schedule_appointment",
                    "call_id": "call_x", "arguments": '{"date":"2026-12-01","time":"10:00"}',
                    "status": "incomplete"}
            await c.send({"type": "response.done", "response": {
                "id": "resp_x", "object": "realtime.response", "status": "cancelled",
                "status_details": {"type": "cancelled", "reason": "turn_detected"},
                "output": [item]}})
            await peer.next_event("response.done")
            await asyncio.sleep(0.3)
            assert not [e for e in c.received if e["type"] == "conversation.item.create"]
            reg = gw.app[METRICS].registry
            assert reg.get_sample_value("gateway_tool_calls_total", {
                "tool": "schedule_appointment", "outcome": "skipped"}) == 1
        finally:
            await peer.close()
