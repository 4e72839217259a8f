"""Issue 22's demo check: a person whose voice the engine was not built with (an espeak-ng voice,
not the engine's piper one) asks the demo page's agent for an in-domain tool through a fake
Chromium microphone, and the page receives the right tool call and the tool's result."""

from __future__ import annotations

import shutil
import wave
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bench.wer_corpus import RATE, espeak
from tests.browser import chromium
from tests.gateway_fixtures import running_gateway
from tests.test_browser_demo import ARTIFACTS

pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="needs espeak-ng")]

#: espeak-ng's US voice with its female variant, at its default rate: a formant synthesiser,
#: nothing like the piper voice the engine speaks with (and the fixture phrases use).
VOICE, WPM = "en-us+f3", 165
ASK = "look up account one two three four five"

#: Every data-channel message the page receives, recorded next to voice-agent.js's own handler
#: (the demo page itself keeps only the event types).
RECORD_EVENTS = """
window.rawEvents = [];
const create = RTCPeerConnection.prototype.createDataChannel;
RTCPeerConnection.prototype.createDataChannel = function (...args) {
  const channel = create.apply(this, args);
  channel.addEventListener("message", (m) => window.rawEvents.push(JSON.parse(m.data)));
  return channel;
};
"""


def espeak_mic(tmp: Path) -> Path:
    """The request between 2 s of silence before and 12 s after, as Chromium's fake mic file."""
    speech = espeak(ASK, VOICE, WPM)
    out = np.concatenate([np.zeros(RATE * 2, np.int16), speech, np.zeros(RATE * 12, np.int16)])
    path = tmp / "espeak-lookup-mic.wav"
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(out.tobytes())
    return path


def _calls(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in events if e.get("type") == "response.function_call_arguments.done"]


async def test_another_voice_gets_the_right_tool_result(tmp_path: Path,
                                                         local_engine_url: str) -> None:
    wav = espeak_mic(tmp_path)
    env = {"GATEWAY_DEMO_ENABLED": "true", "OPENAI_API_KEY": ""}
    async with running_gateway(local_engine_url, env=env) as gw, \
            chromium(Path(f"{wav}%noloop"), ARTIFACTS) as browser:
        page = await browser.new_page(f"{gw.base}/")
        await page.wait_for("document.querySelector('#profile').options.length > 0", 10)
        await page.evaluate(RECORD_EVENTS)
        await page.evaluate("document.querySelector('#connect').click()")
        await page.wait_for("window.agentStatus === 'listening'", 15)
        # What the caller said, as the page shows it: the account number heard right.
        await page.wait_for(
            "window.transcript.some(t => t.speaker === 'caller' && "
            "/account.*one two three four five/i.test(t.text))", 30)
        await page.wait_for(
            "window.rawEvents.some(e => e.type === 'response.function_call_arguments.done')", 30)
        await page.wait_for(
            "window.transcript.some(t => t.speaker === 'agent' && /maria/i.test(t.text))", 40)
        events: list[dict[str, Any]] = await page.evaluate("window.rawEvents")
        await page.screenshot(ARTIFACTS / "demo-page-other-voice.png")
        await page.evaluate("document.querySelector('#disconnect').click()")
        await page.wait_for("window.agentStatus === 'disconnected'", 5)
    (call,) = _calls(events)
    assert call["name"] == "lookup_customer"
    assert "12345" in call["arguments"].replace(" ", "")
    outputs = [e["item"] for e in events if e.get("type") == "conversation.item.added"
               and e["item"].get("type") == "function_call_output"]
    assert outputs and "Maria Garcia" in outputs[0]["output"], [e["type"] for e in events]
