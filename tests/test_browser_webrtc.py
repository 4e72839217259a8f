"""A real browser (headless Chromium) calls the gateway exactly as OpenAI's WebRTC tutorial does.

The page is served from its own origin, so the CORS path is exercised too. Its microphone is a
WAV file (Chromium's fake capture device); what it hears is read back from ``getStats()``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import wave
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import numpy as np
import pytest
from aiohttp import web

from gateway.api.appkeys import CALLS
from tests.browser import Page, chromium
from tests.fake_upstream import REAL_MODEL, running_fake
from tests.gateway_fixtures import API_KEY, running_gateway
from tests.peers import dominant_freq, rms_dbfs

pytestmark = pytest.mark.browser

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"

#: The browser side of the GA WebRTC flow, unchanged from the OpenAI tutorial except that the
#: gateway's address and the ephemeral key come from the query string.
PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>gateway webrtc</title>
<link rel="icon" href="data:,"></head>
<body>
<h1>gateway WebRTC call</h1>
<p>peer: <b id="pc">new</b> &middot; channel: <b id="dc">-</b></p>
<pre id="log"></pre>
<script>
const q = new URLSearchParams(location.search);
const gw = q.get("gw"), ek = q.get("ek");
// GA posts the offer to /v1/realtime/calls; beta-era code to /v1/realtime?model=...
const sdpPath = q.get("path") || "/v1/realtime/calls";
window.events = [];
window.state = {pc: "new", dc: "-", tracks: 0, location: null, error: null};
const logEl = document.getElementById("log");
const log = (s) => { logEl.textContent += s + "\\n"; };
let pc = null;

async function start() {
  pc = new RTCPeerConnection();
  window.pc = pc;
  pc.onconnectionstatechange = () => {
    state.pc = pc.connectionState;
    document.getElementById("pc").textContent = pc.connectionState;
  };
  pc.ontrack = (e) => {
    state.tracks += 1;
    const audio = document.createElement("audio");
    audio.autoplay = true;
    audio.srcObject = e.streams[0] || new MediaStream([e.track]);
    document.body.appendChild(audio);
  };
  // The tutorial asks for {audio: true}. Chromium's default capture processing (noise
  // suppression, AGC) then fades a steady test tone by ~1.5 dB/100 ms (measured: -20 dBFS in,
  // -39 dBFS after 1.2 s), so it is switched off to make the level measurable end to end.
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
    log(ev.type);
  };
  const offer = await pc.createOffer();
  await pc.setLocalDescription(offer);
  const r = await fetch(gw + sdpPath, {
    method: "POST", body: offer.sdp,
    headers: {Authorization: "Bearer " + ek, "Content-Type": "application/sdp"},
  });
  const sdp = await r.text();
  if (r.status !== 201) throw new Error("call setup failed: " + r.status + " " + sdp);
  state.location = r.headers.get("Location");
  await pc.setRemoteDescription({type: "answer", sdp});
}

// What the page hears: the inbound-rtp audio stats of its own peer connection.
window.inboundAudio = async () => {
  const stats = await pc.getStats();
  let out = null;
  stats.forEach((s) => {
    if (s.type === "inbound-rtp" && s.kind === "audio") {
      out = {packetsReceived: s.packetsReceived, packetsLost: s.packetsLost,
             totalAudioEnergy: s.totalAudioEnergy || 0, audioLevel: s.audioLevel || 0,
             totalSamplesReceived: s.totalSamplesReceived || 0};
    }
  });
  return out;
};

window.hangUp = () => { if (pc) pc.close(); state.pc = "closed"; };

start().catch((e) => { state.error = String((e && e.stack) || e); log("error: " + e); });
</script>
</body></html>
"""


def write_tone_wav(path: Path, freq: float, dbfs: float, seconds: float,
                   rate: int = 48_000) -> None:
    """A mono 16-bit sine at ``dbfs`` RMS; a whole number of cycles, so it loops seamlessly."""
    t = np.arange(int(rate * seconds)) / rate
    amp = 32768 * 10 ** (dbfs / 20) * np.sqrt(2)
    pcm = (amp * np.sin(2 * np.pi * freq * t)).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.tobytes())


@contextlib.asynccontextmanager
async def page_server() -> AsyncIterator[str]:
    """Serve ``PAGE`` from its own origin; yields that origin."""
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


async def eventually(cond: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout_s} s: {what}")
        await asyncio.sleep(0.05)


async def events_of(page: Page, etype: str, timeout_s: float = 10.0) -> list[dict[str, Any]]:
    """Wait until the page's data channel has delivered an event of this type; all of them."""
    found: list[dict[str, Any]] = await page.wait_for(
        f"(() => {{ const m = window.events.filter(e => e.type === {etype!r}); "
        f"return m.length ? m : null; }})()", timeout_s)
    return found


async def test_browser_calls_gateway_over_webrtc(tmp_path: Path) -> None:
    wav = tmp_path / "mic-440hz.wav"
    write_tone_wav(wav, 440.0, -20.0, seconds=4.0)
    async with running_fake() as (fake, url), page_server() as origin, \
            running_gateway(url, env={"GATEWAY_CORS_ORIGINS": origin}) as gw:
        token = await gw.mint({"type": "realtime", "model": "gpt-realtime"})
        async with chromium(wav, ARTIFACTS) as browser:
            page = await browser.new_page(f"{origin}/?{urlencode({'gw': gw.base, 'ek': token})}")
            try:
                # The page's own RTCPeerConnection connects to the gateway.
                await page.wait_for("state.pc === 'connected' || state.error", timeout_s=10)
                state = await page.evaluate("window.state")
                assert state["error"] is None, state["error"]
                assert state["pc"] == "connected"
                assert str(state["location"]).startswith("/v1/realtime/calls/rtc_")

                created = (await events_of(page, "session.created"))[0]
                assert created["session"]["model"] == "gpt-realtime"

                # Caller -> upstream: the WAV's 440 Hz tone, through Chromium's Opus.
                await eventually(lambda: len(fake.conn.audio) >= 48 * 2500, 10,
                                 "2.5 s of caller audio reached the upstream")
                pcm = np.frombuffer(bytes(fake.conn.audio), dtype="<i2")[-24000:]
                assert abs(dominant_freq(pcm, 24000) - 440.0) < 5
                assert abs(rms_dbfs(pcm) - (-20.0)) < 3

                # Upstream -> caller: a 1 kHz tone, heard by the page over RTP.
                before = await page.evaluate("inboundAudio()")
                t = np.arange(24000) / 24000
                fake.say((8000 * np.sin(2 * np.pi * 1000 * t)).astype(np.int16), "a tone")
                await events_of(page, "output_audio_buffer.started")
                done = (await events_of(page, "response.done"))[0]
                assert done["response"]["status"] == "completed"
                await events_of(page, "output_audio_buffer.stopped", timeout_s=5)
                p0 = before["packetsReceived"] if before else 0
                e0 = before["totalAudioEnergy"] if before else 0.0
                # One second at level 0.24 (8000/32768) is ~0.06 of energy; ask for half.
                after = await page.wait_for(
                    f"inboundAudio().then(s => s && s.packetsReceived >= {p0} + 50 && "
                    f"s.totalAudioEnergy >= {e0} + 0.03 ? s : null)", timeout_s=5)
                assert after["packetsReceived"] >= p0 + 50
                assert after["totalAudioEnergy"] - e0 >= 0.03
                assert after["packetsLost"] == 0
                types = [e["type"] for e in await page.evaluate("window.events")]
                # Audio goes over RTP only, and nothing upstream-only leaks to the browser.
                assert "response.output_audio.delta" not in types
                assert REAL_MODEL not in str(await page.evaluate("JSON.stringify(window.events)"))
                await page.screenshot(ARTIFACTS / "browser-webrtc-call.png")
            finally:
                # Hang up from the page, as a user closing the tab would; the call ends.
                with contextlib.suppress(Exception):
                    await page.evaluate("hangUp()")
        await eventually(lambda: not gw.app[CALLS], 10, "the call ended with the page's hang-up")


@pytest.mark.browser
async def test_beta_browser_flow_unchanged(tmp_path: Path) -> None:
    """A beta-era page: token from /v1/realtime/sessions, offer to /v1/realtime?model=."""
    wav = tmp_path / "mic-300hz.wav"
    write_tone_wav(wav, 300.0, -25.0, seconds=4.0)
    model = "gpt-4o-realtime-preview-2024-12-17"
    async with running_fake() as (fake, url), page_server() as origin, \
            running_gateway(url, env={"GATEWAY_CORS_ORIGINS": origin}) as gw:
        # The app's backend, as the beta tutorial wrote it.
        async with gw.http.post(f"{gw.base}/v1/realtime/sessions", json={
                "model": model, "voice": "verse", "modalities": ["audio", "text"],
                "input_audio_format": "pcm16", "temperature": 0.8},
                headers={"Authorization": f"Bearer {API_KEY}"}) as r:
            body = await r.json()
            assert r.status == 200, body
        token = body["client_secret"]["value"]
        assert body["model"] == model and body["voice"] == "verse"
        query = urlencode({"gw": gw.base, "ek": token, "path": f"/v1/realtime?model={model}"})
        async with chromium(wav, ARTIFACTS) as browser:
            page = await browser.new_page(f"{origin}/?{query}")
            try:
                await page.wait_for("state.pc === 'connected' || state.error", timeout_s=10)
                assert (await page.evaluate("window.state"))["error"] is None
                created = (await events_of(page, "session.created"))[0]
                assert created["session"]["object"] == "realtime.session"
                assert created["session"]["voice"] == "verse"
                await eventually(lambda: len(fake.conn.audio) >= 48 * 1000, 10,
                                 "caller audio reached the upstream")
                t = np.arange(24000) / 24000
                fake.say((8000 * np.sin(2 * np.pi * 1000 * t)).astype(np.int16), "hi there")
                await events_of(page, "response.audio_transcript.delta")
                await events_of(page, "response.done")
                await events_of(page, "output_audio_buffer.stopped", timeout_s=5)
                after = await page.wait_for(
                    "inboundAudio().then(s => s && s.totalAudioEnergy > 0.03 ? s : null)", 5)
                assert after["packetsReceived"] > 50
                types = {e["type"] for e in await page.evaluate("window.events")}
                assert "conversation.item.created" in types
                assert not {t for t in types if "output_audio" in t and "buffer" not in t}
                assert "conversation.item.added" not in types
                # Upstream only ever spoke GA.
                assert all("type" in e["session"] for e in fake.conn.received
                           if e["type"] == "session.update")
            finally:
                with contextlib.suppress(Exception):
                    await page.evaluate("hangUp()")
