"""OpenAI's browser SDK for voice agents (``@openai/agents-realtime`` from the npm registry,
pinned in tests/conformance/js/package-lock.json, bundled by esbuild at test set-up) in
headless Chromium over WebRTC, its base URL pointed at the gateway and nothing else changed:
an agent with its own instructions and a client-side tool, connecting with an ``ek_`` the
app's backend minted with a gateway API key."""

from __future__ import annotations

from pathlib import Path

import pytest
from aiohttp import web

from tests.browser import chromium
from tests.conformance.sdk_client import APP_INSTRUCTIONS
from tests.conformance.support import (
    ARTIFACTS,
    PAGE_STORY,
    bound_port,
    check_events,
    mic_wav,
)
from tests.gateway_fixtures import running_gateway

JS = Path(__file__).resolve().parent / "js"
BUNDLE = JS / "dist" / "agents_page.js"
PAGE_CONFIRMATION = "PAGE-2718"
PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>agents sdk</title></head>
<body><script src="/agents_page.js"></script></body></html>"""


def _bundle() -> bytes:
    if not BUNDLE.exists():
        pytest.fail(f"{BUNDLE} is missing: `make test` builds it (npm ci + esbuild in "
                    f"{JS}); by hand: cd {JS} && npm ci && npm run bundle")
    return BUNDLE.read_bytes()


async def _serve_app(bundle: bytes) -> web.AppRunner:
    """The app's own origin: its page and the SDK bundle (the gateway is another origin)."""
    app = web.Application()

    async def page(_: web.Request) -> web.Response:
        return web.Response(text=PAGE, content_type="text/html")

    async def script(_: web.Request) -> web.Response:
        return web.Response(body=bundle, content_type="application/javascript")

    app.router.add_get("/", page)
    app.router.add_get("/agents_page.js", script)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    return runner


@pytest.mark.browser
async def test_agents_sdk_webrtc_client_tool(tmp_path: Path, local_engine_url: str) -> None:
    bundle = _bundle()
    wav = mic_wav(tmp_path, ["schedule"], lead_s=5.0)
    runner = await _serve_app(bundle)
    origin = f"http://127.0.0.1:{bound_port(runner)}"
    # The operator lets the app's origin call the gateway from a browser (OpenAI allows all).
    # The fake microphone's lead-in is digital silence (a real one never is): the dead-mic
    # guard would ask "can you hear me?" over the caller's first words.
    env = {"OPENAI_API_KEY": "", "GATEWAY_CORS_ORIGINS": origin,
           "GATEWAY_GUARDS_DEAD_MIC_S": "60"}
    try:
        async with running_gateway(local_engine_url, env=env) as gw, \
                chromium(Path(f"{wav}%noloop"), ARTIFACTS) as browser:
            ek = await gw.mint()
            page = await browser.new_page(f"{origin}/")
            await page.wait_for("typeof window.startAgent === 'function'", 10)
            call = await page.evaluate(
                f"window.startAgent({{callsUrl: '{gw.base}/v1/realtime/calls', ek: '{ek}', "
                f"instructions: {APP_INSTRUCTIONS!r}, confirmation: '{PAGE_CONFIRMATION}'}})",
                timeout_s=20)
            assert str(call).startswith("rtc_") or call == "connected", call
            try:
                runs = await page.wait_for("window.toolRuns.length > 0 && window.toolRuns", 35)
            except TimeoutError:
                story = await page.evaluate(PAGE_STORY % "window.transportEvents")
                errors = await page.evaluate("window.sessionErrors")
                raise AssertionError(f"the page's tool never ran: {story} {errors}") from None
            assert runs[0]["date"] and runs[0]["time"], runs
            try:
                await page.wait_for(
                    "window.transportEvents.find(e => e.type === "
                    "'response.output_audio_transcript.done' && "
                    f"e.transcript.includes('{PAGE_CONFIRMATION}'))", 30)
            except TimeoutError:
                story = await page.evaluate(PAGE_STORY % "window.transportEvents")
                raise AssertionError(f"the agent never said the page's result: {story}"
                                     ) from None
            events = await page.evaluate("window.transportEvents")
            errors = [e for e in events if e.get("type") == "error"]
            assert not errors, f"the gateway refused what the SDK sent: {errors}"
            assert not await page.evaluate("window.sessionErrors")
            check_events(events, "ga")
            await page.evaluate("window.agentSession.close()")
    finally:
        await runner.cleanup()
