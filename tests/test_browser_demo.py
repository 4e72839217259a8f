"""The demo page in headless Chromium, talking to the offline engine through the gateway."""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np
import pytest

from gateway.api.appkeys import CALLS
from tests.browser import chromium
from tests.gateway_fixtures import running_gateway
from tests.test_e2e_local_engine import SPEECH

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"


def mic_wav(tmp: Path, name: str) -> Path:
    with wave.open(str(SPEECH / f"{name}.wav")) as w:
        rate = w.getframerate()
        x = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
    out = np.concatenate([np.zeros(rate * 2, np.int16), x, np.zeros(rate * 12, np.int16)])
    path = tmp / f"{name}-mic.wav"
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(out.tobytes())
    return path


@pytest.mark.browser
async def test_demo_page_conversation(tmp_path: Path, local_engine_url: str) -> None:
    wav = mic_wav(tmp_path, "lookup_account")
    env = {"GATEWAY_DEMO_ENABLED": "true", "OPENAI_API_KEY": ""}
    async with running_gateway(local_engine_url, env=env) as gw, \
            chromium(Path(f"{wav}%noloop"), ARTIFACTS) as browser:
        page = await browser.new_page(f"{gw.base}/")
        await page.wait_for("document.querySelector('#profile').options.length > 0", 10)
        await page.evaluate("document.querySelector('#connect').click()")
        await page.wait_for("window.agentStatus === 'listening'", 15)
        await page.wait_for(
            "window.transcript.some(t => t.speaker === 'caller' && "
            "/three four five/i.test(t.text))", 30)
        await page.wait_for(
            "window.transcript.some(t => t.speaker === 'agent' && /maria/i.test(t.text))", 40)
        text = await page.evaluate("document.querySelector('#log').innerText")
        assert "Maria" in text and "You:" in text and "Agent:" in text
        events = await page.evaluate("window.agentEvents")
        assert "output_audio_buffer.started" in events
        await page.screenshot(ARTIFACTS / "demo-page-conversation.png")
        await page.evaluate("document.querySelector('#disconnect').click()")
        await page.wait_for("window.agentStatus === 'disconnected'", 5)


@pytest.mark.browser
async def test_voice_agent_js_rejoins_the_call_after_a_drop(tmp_path: Path,
                                                             local_engine_url: str) -> None:
    """The gateway drops the page's peer (as a network loss would); voice-agent.js rejoins
    the same call with its resume token and a new peer connection."""
    wav = mic_wav(tmp_path, "hello")
    env = {"GATEWAY_DEMO_ENABLED": "true", "OPENAI_API_KEY": ""}
    async with running_gateway(local_engine_url, env=env) as gw, \
            chromium(Path(f"{wav}%noloop"), ARTIFACTS) as browser:
        page = await browser.new_page(f"{gw.base}/")
        await page.wait_for("document.querySelector('#profile').options.length > 0", 10)
        await page.evaluate("document.querySelector('#connect').click()")
        await page.wait_for("window.agentStatus === 'listening'", 15)
        await page.wait_for("window.agentEvents.includes('gateway.call.created')", 10)
        (call,) = list(gw.app[CALLS])
        call.suspend()  # type: ignore[attr-defined]  # the gateway loses the caller's peer
        await page.wait_for("window.agentEvents.includes('gateway.call.resumed')", 25)
        await page.wait_for("window.agentStatus === 'listening'", 10)
        assert [c.call_id for c in gw.app[CALLS]] == [call.call_id]
        assert not call.suspended  # type: ignore[attr-defined]
        await page.evaluate("document.querySelector('#disconnect').click()")
