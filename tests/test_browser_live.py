"""A real browser (headless Chromium) does GPT-Live's documented WebRTC flow through the gateway
to the local engine: the app's backend mints a Live client secret, the page (served from the
app's own origin, so the gateway's CORS is exercised) opens an ``RTCPeerConnection`` with its
microphone (a WAV through Chromium's fake capture device) and an ``oai-events`` data channel,
posts ``{session, transport: {type: "webrtc", sdp}}`` to ``/v1/live/sessions`` and applies the
answer. The page records every data-channel event and measures what it hears with WebAudio."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlencode

import pytest
from aiohttp import web

from gateway.api.appkeys import CALLS
from tests.browser import chromium
from tests.gateway_fixtures import API_KEY
from tests.oracle import validate_live_server_event
from tests.test_browser_demo import mic_wav
from tests.test_live_gateway import gateway
from tests.waiting import until

pytestmark = pytest.mark.browser

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"

#: The browser side of the Live WebRTC flow as a web app writes it; the gateway's address and
#: the client secret (from the app's backend) come from the query string.
PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>GPT-Live over WebRTC</title>
<link rel="icon" href="data:,"></head>
<body>
<h1>GPT-Live WebRTC call</h1>
<p>peer: <b id="pc">new</b> &middot; channel: <b id="dc">-</b></p>
<pre id="log"></pre>
<script>
const q = new URLSearchParams(location.search);
const gw = q.get("gw"), secret = q.get("ek");
window.events = [];
window.state = {pc: "new", dc: "-", sessionId: null, error: null};
// What the page hears: the remote track through a WebAudio analyser, sampled every 50 ms.
window.heard = {samples: 0, loud: 0, peakRms: 0};
const logEl = document.getElementById("log");
const log = (s) => { logEl.textContent += s + "\\n"; };
let pc = null;

function listen(stream) {
  const ctx = new AudioContext();
  const analyser = ctx.createAnalyser();
  analyser.fftSize = 2048;
  ctx.createMediaStreamSource(stream).connect(analyser);
  const buf = new Float32Array(analyser.fftSize);
  setInterval(() => {
    analyser.getFloatTimeDomainData(buf);
    let sum = 0;
    for (const x of buf) sum += x * x;
    const rms = Math.sqrt(sum / buf.length);
    heard.samples += 1;
    if (rms > 0.01) heard.loud += 1;  // above -40 dBFS
    heard.peakRms = Math.max(heard.peakRms, rms);
  }, 50);
}

async function start() {
  pc = new RTCPeerConnection();
  pc.onconnectionstatechange = () => {
    state.pc = pc.connectionState;
    document.getElementById("pc").textContent = pc.connectionState;
  };
  pc.ontrack = (e) => {
    const stream = e.streams[0] || new MediaStream([e.track]);
    // Chromium feeds a remote stream to WebAudio only while a media element plays it.
    const audio = document.createElement("audio");
    audio.autoplay = true;
    audio.srcObject = stream;
    document.body.appendChild(audio);
    listen(stream);
  };
  const mic = await navigator.mediaDevices.getUserMedia({audio: {
    echoCancellation: false, noiseSuppression: false, autoGainControl: false}});
  pc.addTrack(mic.getTracks()[0]);
  const dc = pc.createDataChannel("oai-events");
  const setDc = () => {
    state.dc = dc.readyState; document.getElementById("dc").textContent = dc.readyState;
  };
  dc.onopen = setDc;
  dc.onclose = setDc;
  dc.onmessage = (e) => {
    const ev = JSON.parse(e.data);
    events.push(ev);
    log(ev.type + (ev.delta && typeof ev.delta === "string" && ev.delta.length < 80
                   ? ": " + ev.delta : ""));
  };
  const offer = await pc.createOffer();
  await pc.setLocalDescription(offer);
  const r = await fetch(gw + "/v1/live/sessions", {
    method: "POST",
    headers: {Authorization: "Bearer " + secret, "Content-Type": "application/json"},
    body: JSON.stringify({session: {model: "gpt-live-1"},
                          transport: {type: "webrtc", sdp: offer.sdp}}),
  });
  const body = await r.json();
  if (!r.ok) throw new Error("session setup failed: " + r.status + " " + JSON.stringify(body));
  state.sessionId = body.session.id;
  await pc.setRemoteDescription({type: "answer", sdp: body.transport.sdp});
}

window.inboundAudio = async () => {
  const stats = await pc.getStats();
  let out = null;
  stats.forEach((s) => {
    if (s.type === "inbound-rtp" && s.kind === "audio") {
      out = {packetsReceived: s.packetsReceived, totalAudioEnergy: s.totalAudioEnergy || 0};
    }
  });
  return out;
};

window.hangUp = () => { if (pc) pc.close(); state.pc = "closed"; };

start().catch((e) => { state.error = String((e && e.stack) || e); log("error: " + e); });
</script>
</body></html>
"""


@contextlib.asynccontextmanager
async def app_origin() -> AsyncIterator[str]:
    """The web app serving ``PAGE`` from its own origin; yields that origin."""
    async def index(_: web.Request) -> web.Response:
        return web.Response(text=PAGE, content_type="text/html")

    app = web.Application()
    app.router.add_get("/", index)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


def _has(etype: str, text: str = "") -> str:
    """A page predicate: a data-channel event of ``etype`` (whose delta matches ``text``)."""
    return (f"window.events.some(e => e.type === {json.dumps(etype)} && "
            f"new RegExp({json.dumps(text)}, 'i').test(e.delta || ''))")


async def test_browser_live_webrtc_flow(tmp_path: Path, local_engine_url: str) -> None:
    wav = mic_wav(tmp_path, "hello")
    async with gateway(local_engine_url) as gw, app_origin() as origin:
        # The app's backend: a Live client secret, minted with its API key.
        async with gw.http.post(gw.base + "/v1/live/client_secrets",
                                headers={"Authorization": f"Bearer {API_KEY}"},
                                json={"session": {"model": "gpt-live-1"}}) as r:
            minted = await r.json()
            assert r.status == 200, minted
        secret = str(minted["value"])
        assert secret.startswith("ek_")
        async with chromium(Path(f"{wav}%noloop"), ARTIFACTS) as browser:
            page = await browser.new_page(f"{origin}/?{urlencode({'gw': gw.base, 'ek': secret})}")
            try:
                await page.wait_for("state.pc === 'connected' || state.error", 15)
                state = await page.evaluate("window.state")
                assert state["error"] is None, state["error"]
                assert state["pc"] == "connected"
                assert str(state["sessionId"]).startswith("rtc_")
                await page.wait_for(_has("session.started"), 10)
                # The caller's speech (the WAV says "hello"), transcribed.
                await page.wait_for(_has("session.input_transcript.delta", "hello"), 30)
                # The agent answers: its transcript on the channel, its audio heard by the page.
                await page.wait_for(_has("session.output_transcript.delta", "hello"), 30)
                heard = await page.wait_for(
                    "window.heard.loud >= 10 ? window.heard : null", 20)
                assert heard["peakRms"] > 0.03, heard  # louder than -30 dBFS at its peak
                inbound = await page.evaluate("inboundAudio()")
                assert inbound["packetsReceived"] > 50 and inbound["totalAudioEnergy"] > 0.01
                await page.screenshot(ARTIFACTS / "browser-live-webrtc.png")
            finally:
                with contextlib.suppress(Exception):
                    await page.evaluate("hangUp()")
            events = await page.evaluate("window.events")
        # Every event the page received is a GPT-Live server event (openai.types.live).
        types = [e["type"] for e in events]
        assert types[0] == "session.started", types
        assert started_model(events) == "gpt-live-1"
        for ev in events:
            validate_live_server_event(ev)
        # Audio travels over RTP only; the upstream's model name never reaches the page.
        assert "session.output_audio.delta" not in types
        assert "local-offline" not in json.dumps(events)
        await until(lambda: not gw.app[CALLS], 15, "the call ended with the page's hang-up")


def started_model(events: list[dict[str, object]]) -> object:
    session = events[0].get("session")
    return session.get("model") if isinstance(session, dict) else None
