"""The seed tutorial's browser flow, written the way OpenAI's beta-era WebRTC tutorial wrote it
and people copied it: a backend that mints a session with its own model, voice, instructions
and a ``get_weather`` tool (``POST /v1/realtime/sessions``), and a page that posts its SDP to
``/v1/realtime?model=…`` with the ``client_secret`` and runs the tool itself when the model
calls it. Only the base URL is the gateway's."""

from __future__ import annotations

import json
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from tests.browser import chromium
from tests.conformance.support import (
    ARTIFACTS,
    PAGE_STORY,
    bound_port,
    check_events,
    mic_wav,
    upstream_tap,
)
from tests.gateway_fixtures import API_KEY, running_gateway

INSTRUCTIONS = "You are a friendly weather assistant. Use get_weather for weather questions."
WEATHER_TOOL = {
    "type": "function", "name": "get_weather",
    "description": "Get the current weather for a location.",
    "parameters": {"type": "object", "properties": {
        "location": {"type": "string", "description": "City name"}}},
}
PAGE_SAYS = "Sunny and twenty one degrees, reported by the page"

# The tutorial's page, kept in its style: globals, fetch, RTCPeerConnection, one data channel.
PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>Realtime tutorial</title>
</head><body><audio id="remote" autoplay></audio><script>
window.events = [];
window.functionRuns = [];
window.connected = false;

function get_weather(args) {
  window.functionRuns.push(args);
  return { location: args.location || "Paris", message: "%PAGE_SAYS%" };
}

async function init() {
  const tokenResponse = await fetch("/session");
  const data = await tokenResponse.json();
  const EPHEMERAL_KEY = data.client_secret.value;

  const pc = new RTCPeerConnection();
  const audioEl = document.getElementById("remote");
  pc.ontrack = e => audioEl.srcObject = e.streams[0];
  const ms = await navigator.mediaDevices.getUserMedia({ audio: true });
  pc.addTrack(ms.getTracks()[0]);

  const dc = pc.createDataChannel("oai-events");
  dc.addEventListener("open", () => { window.connected = true; });
  dc.addEventListener("message", (e) => {
    const event = JSON.parse(e.data);
    window.events.push(event);
    // As the beta-era console did: the function calls are in response.done's output (the beta
    // response.function_call_arguments.done carries no function name).
    if (event.type === "response.done") {
      for (const output of event.response.output || []) {
        if (output.type !== "function_call" || output.name !== "get_weather") continue;
        const result = get_weather(JSON.parse(output.arguments || "{}"));
        dc.send(JSON.stringify({
          type: "conversation.item.create",
          item: { type: "function_call_output", call_id: output.call_id,
                  output: JSON.stringify(result) }
        }));
        dc.send(JSON.stringify({ type: "response.create" }));
      }
    }
  });

  const offer = await pc.createOffer();
  await pc.setLocalDescription(offer);
  const baseUrl = "%GATEWAY%/v1/realtime";
  const model = "gpt-4o-realtime-preview-2024-12-17";
  const sdpResponse = await fetch(`${baseUrl}?model=${model}`, {
    method: "POST",
    body: offer.sdp,
    headers: { Authorization: `Bearer ${EPHEMERAL_KEY}`, "Content-Type": "application/sdp" },
  });
  if (!sdpResponse.ok) throw new Error("SDP " + sdpResponse.status + " " +
                                       await sdpResponse.text());
  const answer = { type: "answer", sdp: await sdpResponse.text() };
  await pc.setRemoteDescription(answer);
  window.pc = pc;
}
</script></body></html>"""


async def _backend(gateway: dict[str, str]
                   ) -> tuple[web.AppRunner, list[dict[str, object]]]:
    """The tutorial's server: holds the API key, mints a session, hands the JSON on.
    ``gateway["base"]`` is filled in once the gateway runs."""
    minted: list[dict[str, object]] = []
    app = web.Application()

    async def page(_: web.Request) -> web.Response:
        html = PAGE.replace("%GATEWAY%", gateway["base"]).replace("%PAGE_SAYS%", PAGE_SAYS)
        return web.Response(text=html, content_type="text/html")

    async def session(request: web.Request) -> web.Response:
        async with aiohttp.ClientSession() as http, http.post(
                f"{gateway['base']}/v1/realtime/sessions", json={
                    "model": "gpt-4o-realtime-preview-2024-12-17", "voice": "verse",
                    "instructions": INSTRUCTIONS, "tools": [WEATHER_TOOL]},
                headers={"Authorization": f"Bearer {API_KEY}"}) as r:
            data = await r.json()
            minted.append({"status": r.status, "body": data})
            return web.json_response(data, status=r.status)

    app.router.add_get("/", page)
    app.router.add_get("/session", session)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    return runner, minted


@pytest.mark.browser
async def test_tutorial_browser_flow_runs_its_tool(tmp_path: Path, local_engine_url: str) -> None:
    wav = mic_wav(tmp_path, ["weather"], lead_s=3.0)
    where: dict[str, str] = {}
    runner, minted = await _backend(where)
    origin = f"http://127.0.0.1:{bound_port(runner)}"
    # The operator lets the app's origin call the gateway from a browser (OpenAI allows all).
    env = {"OPENAI_API_KEY": "", "GATEWAY_CORS_ORIGINS": origin}
    try:
        async with upstream_tap(local_engine_url) as tap, \
                running_gateway(tap.url, env=env) as gw, \
                chromium(Path(f"{wav}%noloop"), ARTIFACTS) as browser:
            where["base"] = gw.base
            page = await browser.new_page(f"{origin}/")
            try:
                await page.evaluate("init()", timeout_s=20)
            finally:
                assert minted and minted[0]["status"] == 200, f"the backend's mint: {minted}"
            body = minted[0]["body"]
            assert isinstance(body, dict)
            assert body["instructions"] == INSTRUCTIONS
            assert body["voice"] == "verse"
            await page.wait_for("window.connected", 10)
            try:
                await page.wait_for("window.functionRuns.length > 0", 35)
                await page.wait_for(
                    "window.events.find(e => e.type === 'response.audio_transcript.done' && "
                    "e.transcript.includes('reported by the page'))", 30)
            except TimeoutError:
                story = await page.evaluate(PAGE_STORY % "window.events")
                raise AssertionError(f"no tool round with the page: {story}") from None
            outs = [e["item"] for e in tap.sent_of("conversation.item.create")
                    if e["item"].get("type") == "function_call_output"]
            assert len(outs) == 1 and json.loads(outs[0]["output"])["message"] == PAGE_SAYS
            events = await page.evaluate("window.events")
            assert not [e for e in events if e["type"] == "error"], \
                [e for e in events if e["type"] == "error"]
            check_events(events, "beta")
            # OpenAI answers the session it was given: the app's tools, not the operator's.
            assert [t["name"] for t in body["tools"]] == ["get_weather"], body["tools"]
            await page.evaluate("window.pc.close()")
    finally:
        await runner.cleanup()
