"""The operator console in headless Chromium, used as a person would use it.

A real aiortc caller (440 Hz) talks to the gateway and the fake upstream; the supervisor's
browser has a fake microphone playing 700 Hz. The test signs in, watches the call appear
with moving levels and transcript lines, listens (audio reaches the page's analyser),
coaches, takes over (the caller hears 700 Hz), hands back, hangs up; then finds the
recording, plays it (Range, 206), verifies and exports it. Screenshots of every page go to
``test-artifacts/console-*.png``. The feed's delay to the page is measured here (p95).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import wave
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest

from gateway.api.appkeys import CALLS
from gateway.call.session import CallSession
from gateway.supervise.supervision import attached
from tests.browser import Page, chromium
from tests.fake_upstream import running_fake
from tests.gateway_fixtures import ADMIN, Gateway, running_gateway
from tests.peers import ClientPeer, PcmSourceTrack, tone
from tests.test_supervise import amplitude, tone24
from tests.waiting import until

pytestmark = pytest.mark.browser

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
XSS_CALLER = '<img src=x onerror="window.__xss=1">'
XSS_LINE = '<script>window.__xss=2</script><img src=y onerror="window.__xss=3"> hello'


def mic_wav(path: Path, freq: float = 700.0, seconds: float = 10.0) -> Path:
    t = np.arange(int(48000 * seconds)) / 48000
    pcm = (0.1 * 32767 * np.sin(2 * np.pi * freq * t)).astype(np.int16)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(48000)
        w.writeframes(pcm.tobytes())
    return path


async def click(page: Page, selector: str) -> None:
    await page.wait_for(f"document.querySelector({json.dumps(selector)})")
    await page.evaluate(f"document.querySelector({json.dumps(selector)}).click()")


async def confirm(page: Page) -> None:
    await page.wait_for("document.getElementById('confirm').open")
    await click(page, "#confirm-ok")


@contextlib.asynccontextmanager
async def scene(tmp_path: Path) -> AsyncIterator[tuple[object, Gateway, ClientPeer, str, Page]]:
    async with running_fake() as (fake, url), \
            running_gateway(url, {"GATEWAY_CONSOLE_ENABLED": "true",
                                  "GATEWAY_RECORDING_OPUS_COPY": "true",
                                  "GATEWAY_SERVER_GRAFANA_URL": "https://grafana.example/d/gw"}
                            ) as gw, \
            chromium(mic_wav(tmp_path / "mic.wav"), ARTIFACTS) as browser:
        caller = ClientPeer(PcmSourceTrack(tone(440.0, -20.0)))
        try:
            await caller.connect(gw.http, f"{gw.base}/v1/realtime/calls", await gw.mint())
            await caller.next_event("session.created")
            assert caller.location is not None
            page = await browser.new_page(f"{gw.base}/console/")
            await page.set_viewport(1400, 900)
            await page.wait_for("window.consoleReady === true")
            yield fake, gw, caller, caller.location.rsplit("/", 1)[1], page
        finally:
            await caller.close()


async def test_console_in_chromium(tmp_path: Path) -> None:
    async with scene(tmp_path) as (fake_obj, gw, caller, call_id, page):
        from tests.fake_upstream import FakeUpstream
        fake = fake_obj
        assert isinstance(fake, FakeUpstream)
        call = gw.app[CALLS].get(call_id)
        assert isinstance(call, CallSession)
        call.caller = XSS_CALLER  # as a phone number would arrive from Twilio's From

        # -- sign in ---------------------------------------------------------------------------
        assert await page.evaluate("document.activeElement.id") == "token"  # keyboard first
        await page.screenshot(ARTIFACTS / "console-sign-in.png")
        # By keyboard: the token field has the focus; type, then Enter submits the form.
        await page.type_text(ADMIN)
        await page.press("Enter", 13)
        await page.wait_for(f"document.querySelector('tr[data-call-id=\"{call_id}\"]')")
        assert await page.evaluate("document.getElementById('token').value") == ""
        assert ADMIN not in await page.evaluate("document.documentElement.outerHTML")
        assert await page.evaluate("document.cookie.includes('gw_console=')") is False  # HttpOnly

        # -- the call, with moving levels and live lines --------------------------------------
        await page.evaluate(f"location.hash = '#/calls/{call_id}'")
        await page.wait_for("document.getElementById('listen')")
        row = f"consoleState.feed.calls.find(c => c.id === '{call_id}')"
        await page.wait_for(f"{row} && {row}.level_in > -30")
        assert await page.evaluate(f"{row}.level_out") <= -90  # the agent is silent
        fake.say(tone24(1000, 3.0), "Here is the answer you asked for", speed=1.0)
        await page.wait_for(f"{row}.level_out > -30 && {row}.state === 'talking'", 10)
        await fake.transcribe(XSS_LINE)
        for i in range(8):
            await fake.transcribe(f"caller line {i}")
        await page.wait_for("[...document.querySelectorAll('#call-lines .text')]"
                            ".some(e => e.textContent === 'caller line 7')")
        await page.wait_for("[...document.querySelectorAll('#call-lines .text')]"
                            ".some(e => e.textContent.startsWith('Here is the answer'))", 10)
        await page.wait_for(f"{row}.level_out <= -90", 10)  # and it falls silent again
        # The caller barges in: the interruption is a line of its own.
        fake.say(tone24(1000, 4.0), "this answer will be cut short", speed=1.0)
        await page.wait_for(f"{row}.level_out > -30", 10)
        await fake.speech_started()
        await page.wait_for("document.querySelector('#call-lines li.interruption')", 10)
        # Markup arrived as text: nothing injected ran, no element was made of it.
        assert await page.evaluate("window.__xss === undefined")
        assert await page.evaluate("document.querySelectorAll('#view img, #view script')"
                                   ".length") == 0
        texts = await page.evaluate("[...document.querySelectorAll('#view td, #view .text')]"
                                    ".map(e => e.textContent)")
        assert XSS_CALLER in texts and XSS_LINE in texts
        await page.screenshot(ARTIFACTS / "console-calls.png")

        # -- listen ----------------------------------------------------------------------------
        await page.evaluate("document.getElementById('layout').value = 'stereo'")
        await click(page, "#listen")
        await page.wait_for("consoleAudio.state().listening", 15)
        await page.wait_for("consoleAudio.rms() > 0.02", 15)  # the caller's tone, heard
        sup = attached(call)
        assert sup is not None and len(sup.listeners) == 1
        assert next(iter(sup.listeners.values())).layout == "stereo"

        # -- coach -----------------------------------------------------------------------------
        await page.evaluate("document.getElementById('coach-text').focus()")
        await page.type_text("Offer the premium plan")
        await page.press("Enter", 13)

        def coached() -> bool:
            return any(e["type"] == "conversation.item.create"
                       and e["item"]["role"] == "system"
                       and e["item"]["content"][0]["text"] == "Offer the premium plan"
                       for e in fake.conn.received)

        await until(coached, 10, "the coach's system item upstream")

        # -- take over with the microphone, hand back -----------------------------------------
        await click(page, "#takeover")
        await confirm(page)
        await until(lambda: sup.takeover is not None, 15, "takeover")
        t_over = time.monotonic()
        await until(lambda: amplitude(caller.received_audio(since=time.monotonic() - 0.5),
                                      700) > 1000, 10, "the caller hears the supervisor")
        assert amplitude(caller.received_audio(since=t_over + 0.3), 700) > 1000
        await page.wait_for(f"{row}.state === 'taken over'")
        await page.screenshot(ARTIFACTS / "console-takeover.png")
        await click(page, "#handback")
        await until(lambda: sup.takeover is None, 10, "hand-back")
        await page.wait_for(f"{row}.state !== 'taken over'")

        # -- the feed's delay to the page --------------------------------------------------------
        delays = await page.evaluate("consoleState.feed.delays")
        lines = await page.evaluate("consoleState.feed.lineDelays")
        assert len(delays) >= 20 and len(lines) >= 10
        p95 = float(np.percentile(delays, 95))
        (ARTIFACTS / "console-feed-latency.json").write_text(json.dumps(
            {"all": {"n": len(delays), "p50_ms": float(np.median(delays)), "p95_ms": p95,
                     "max_ms": max(delays)},
             "lines": {"n": len(lines), "p50_ms": float(np.median(lines)),
                       "p95_ms": float(np.percentile(lines, 95))},
             "raw": delays}))
        assert p95 <= 250, f"feed delay p95 {p95:.0f} ms: {sorted(delays)[-5:]}"

        # -- hang up ---------------------------------------------------------------------------
        await click(page, "#end-call")
        await confirm(page)
        await until(lambda: call.closed.is_set(), 10, "the call ended")
        await page.wait_for(f"!consoleState.feed.calls.some(c => c.id === '{call_id}')")
        await until(lambda: list(gw.recordings.rglob("metadata.json")), 10, "recording")

        # -- recordings: search, the call page, play a range, verify, export --------------------
        await page.evaluate("location.hash = '#/recordings'")
        await page.wait_for("document.getElementById('f-q')")
        await page.evaluate("document.getElementById('f-q').value = 'caller line 7'")
        await click(page, "#search")
        link = f"a[href='#/recordings/{call_id}']"
        await page.wait_for(f"document.querySelector(\"{link}\")", 10)
        await page.screenshot(ARTIFACTS / "console-recordings.png")
        await click(page, link)
        await page.wait_for("window.consoleRecording && consoleRecording.lines.length > 5", 10)
        assert await page.evaluate("Math.max(...consoleRecording.peaks.agent)") > 0.1
        assert await page.evaluate("!!document.querySelector('#rec-lines li.interruption')")
        assert await page.evaluate("document.querySelectorAll('#view img, #view script')"
                                   ".length") == 0
        # Click a transcript line: playback starts from there.
        await page.evaluate("[...document.querySelectorAll('#rec-lines li')]"
                            ".find(li => li.textContent.includes('caller line 3'))"
                            ".querySelector('button').click()")
        await page.wait_for("document.getElementById('player').currentTime > 0.2 && "
                            "!document.getElementById('player').paused", 10)
        status = await page.evaluate(
            f"fetch('/console/api/recordings/{call_id}/audio', "
            "{headers: {Range: 'bytes=44-4139'}}).then(async r => [r.status, "
            "(await r.arrayBuffer()).byteLength])")
        assert status == [206, 4096]
        await click(page, "#verify")
        await page.wait_for("document.getElementById('verify-result').textContent"
                            ".startsWith('Intact')", 10)
        for sel, ctype in (("#export-wav", "audio/wav"), ("#export-ogg-opus", "audio/ogg"),
                           ("#export-transcript", "ndjson")):
            got = await page.evaluate(
                f"fetch(document.querySelector('{sel}').href).then(r => "
                "[r.status, r.headers.get('Content-Type')])")
            assert got[0] == 200 and ctype in got[1], (sel, got)
        await page.screenshot(ARTIFACTS / "console-recording.png")

        # -- capacity --------------------------------------------------------------------------
        await page.evaluate("location.hash = '#/capacity'")
        await page.wait_for("document.getElementById('grafana')")
        await page.screenshot(ARTIFACTS / "console-capacity.png")

        # -- accessibility basics --------------------------------------------------------------
        await page.evaluate(f"location.hash = '#/recordings/{call_id}'")
        await page.wait_for("window.consoleRecording && document.getElementById('verify')")
        problems = await page.evaluate(A11Y_CHECK)
        assert problems == [], problems


#: Every control reachable by keyboard and named; every form field labelled; text contrast
#: at least 4.5:1 against the page background (WCAG AA).
A11Y_CHECK = """(() => {
  const out = [];
  const named = (el) => (el.getAttribute('aria-label') || el.textContent || '').trim() ||
    (el.id && document.querySelector(`label[for="${el.id}"]`));
  for (const el of document.querySelectorAll('button, a[href], input, select, audio[controls]')) {
    if (el.closest('[hidden]') || el.closest('dialog:not([open])')) continue;
    if (el.tabIndex < 0) out.push(`not focusable: ${el.outerHTML.slice(0, 80)}`);
    if (!named(el)) out.push(`no name: ${el.outerHTML.slice(0, 80)}`);
  }
  const lum = (c) => {
    const [r, g, b] = c.match(/\\d+(\\.\\d+)?/g).slice(0, 3).map(Number).map((v) => {
      v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; });
    return 0.2126 * r + 0.7152 * g + 0.0722 * b;
  };
  const bg = lum(getComputedStyle(document.body).backgroundColor);
  for (const el of document.querySelectorAll('#view *, header *')) {
    const own = [...el.childNodes].some((n) => n.nodeType === 3 && n.textContent.trim());
    if (!own) continue;
    if (el.closest('button, .button, .tag, tr.selected')) continue;
    const fg = lum(getComputedStyle(el).color);
    const ratio = (Math.max(fg, bg) + 0.05) / (Math.min(fg, bg) + 0.05);
    if (ratio < 4.5) out.push(`contrast ${ratio.toFixed(2)}: ${el.textContent.slice(0, 30)}`);
  }
  return out;
})()"""


async def test_expired_session_in_the_page_returns_to_sign_in(tmp_path: Path) -> None:
    async with running_fake() as (_, url), \
            running_gateway(url, {"GATEWAY_CONSOLE_ENABLED": "true"}) as gw, \
            chromium(None, ARTIFACTS) as browser:
        page = await browser.new_page(f"{gw.base}/console/")
        await page.wait_for("window.consoleReady === true")
        await page.evaluate(f"document.getElementById('token').value = {json.dumps(ADMIN)}")
        await click(page, "#sign-in-form button[type=submit]")
        await page.wait_for("!document.getElementById('nav').hidden")
        from gateway.api.console_auth import SESSIONS
        store = gw.app[SESSIONS]
        later = time.monotonic() + store.ttl_s + 1
        store.clock = lambda: later
        await page.evaluate("location.hash = '#/capacity'")
        await page.wait_for("!document.getElementById('sign-in').hidden", 10)
        await asyncio.sleep(0)  # let the page settle before the screenshot
        await page.screenshot(ARTIFACTS / "console-expired.png")
