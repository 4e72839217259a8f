"""Headless Debian Chromium driven over the DevTools protocol (CDP), for real-browser tests.

No playwright or puppeteer: the browser is started with ``--remote-debugging-port=0``, the port
it picked is read from ``<user-data-dir>/DevToolsActivePort`` and the protocol is spoken over
aiohttp's own WebSocket client. One page = one target attached in flattened-session mode.

    async with chromium(wav, artifacts) as browser:
        page = await browser.new_page(url)
        await page.wait_for("window.ready === true", timeout_s=10)
        value = await page.evaluate("someAsyncFunction()")
        await page.screenshot(artifacts / "page.png")

If the body of the ``async with`` raises, every open page is screenshotted and its console
written into ``artifacts_dir`` before the browser is shut down. Shutdown always closes the
CDP socket, ends the process (politely, then by force) and removes the temporary profile.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import os
import shutil
import signal
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

CHROMIUM = Path("/usr/bin/chromium")

#: Flags from docs/field-notes ("Headless Chromium as a real WebRTC client"), plus the ones that
#: keep a headless page's timers and media running at full speed.
BASE_FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--disable-background-timer-throttling",
    "--disable-renderer-backgrounding",
    "--disable-backgrounding-occluded-windows",
    "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream",
    "--autoplay-policy=no-user-gesture-required",
    "--remote-debugging-address=127.0.0.1",
    "--remote-debugging-port=0",
)

STARTUP_TIMEOUT_S = 15.0
COMMAND_TIMEOUT_S = 15.0


#: Receives (method, params) of each CDP event of one session.
Listener = Callable[[str, dict[str, Any]], None]


class BrowserError(RuntimeError):
    """A CDP command failed, or JavaScript threw."""


class JSError(BrowserError):
    """JavaScript evaluated in a page threw (or its promise rejected)."""


class _Cdp:
    """One browser-level CDP WebSocket: commands by id, events to per-session listeners."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self._ws = ws
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._listeners: dict[str, list[Listener]] = {}
        self._reader = asyncio.ensure_future(self._read())
        self.closed_reason: str | None = None

    def listen(self, session_id: str, callback: Listener) -> None:
        self._listeners.setdefault(session_id, []).append(callback)

    async def send(self, method: str, params: dict[str, Any] | None = None,
                   session_id: str | None = None,
                   timeout_s: float = COMMAND_TIMEOUT_S) -> dict[str, Any]:
        if self.closed_reason is not None:
            raise BrowserError(f"CDP connection closed ({self.closed_reason}); cannot {method}")
        msg_id = next(self._ids)
        msg: dict[str, Any] = {"id": msg_id, "method": method, "params": params or {}}
        if session_id is not None:
            msg["sessionId"] = session_id
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[msg_id] = fut
        try:
            await self._ws.send_str(json.dumps(msg))
            async with asyncio.timeout(timeout_s):
                return await fut
        except TimeoutError:
            raise BrowserError(f"CDP {method} got no answer in {timeout_s} s") from None
        finally:
            self._pending.pop(msg_id, None)

    async def _read(self) -> None:
        try:
            async for msg in self._ws:
                if msg.type != aiohttp.WSMsgType.TEXT:
                    continue
                data = json.loads(msg.data)
                if "id" in data:
                    fut = self._pending.get(data["id"])
                    if fut is None or fut.done():
                        continue
                    if "error" in data:
                        err = data["error"]
                        fut.set_exception(BrowserError(
                            f"CDP error {err.get('code')}: {err.get('message')} "
                            f"{err.get('data', '')}".rstrip()))
                    else:
                        fut.set_result(data.get("result", {}))
                else:
                    for cb in self._listeners.get(data.get("sessionId", ""), []):
                        cb(data["method"], data.get("params", {}))
            self.closed_reason = "socket closed by the browser"
        except asyncio.CancelledError:
            self.closed_reason = "closed"
            raise
        except Exception as e:  # a broken socket must not leave commands hanging
            self.closed_reason = f"reader failed: {e!r}"
        finally:
            for fut in self._pending.values():
                if not fut.done():
                    fut.set_exception(BrowserError(f"CDP connection lost ({self.closed_reason})"))

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self._ws.close()
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader


def _describe(obj: dict[str, Any]) -> str:
    """A CDP RemoteObject as a console would print it."""
    if "value" in obj:
        v = obj["value"]
        return v if isinstance(v, str) else json.dumps(v)
    return str(obj.get("description") or obj.get("unserializableValue") or obj.get("type"))


def _exception_text(details: dict[str, Any]) -> str:
    exc = details.get("exception") or {}
    text = (exc.get("description") or _describe(exc)) if exc else ""
    return str(text or details.get("text") or "unknown JavaScript error")


class Page:
    """One tab. ``console`` collects console calls, uncaught exceptions and browser log entries."""

    def __init__(self, cdp: _Cdp, target_id: str, session_id: str) -> None:
        self._cdp = cdp
        self.target_id = target_id
        self.session_id = session_id
        self.console: list[str] = []
        self._loaded = asyncio.Event()
        self._t0 = time.monotonic()
        cdp.listen(session_id, self._on_event)

    def _on_event(self, method: str, params: dict[str, Any]) -> None:
        stamp = f"[{time.monotonic() - self._t0:7.3f}]"
        if method == "Runtime.consoleAPICalled":
            args = " ".join(_describe(a) for a in params.get("args", []))
            self.console.append(f"{stamp} console.{params.get('type')}: {args}")
        elif method == "Runtime.exceptionThrown":
            text = _exception_text(params.get("exceptionDetails", {}))
            self.console.append(f"{stamp} uncaught: {text}")
        elif method == "Log.entryAdded":
            e = params.get("entry", {})
            self.console.append(f"{stamp} log.{e.get('level')} ({e.get('source')}): "
                                f"{e.get('text')} {e.get('url', '')}".rstrip())
        elif method == "Page.loadEventFired":
            self._loaded.set()

    def console_tail(self, n: int = 30) -> str:
        lines = self.console[-n:]
        return "\n".join(lines) if lines else "(console empty)"

    async def _send(self, method: str, params: dict[str, Any] | None = None,
                    timeout_s: float = COMMAND_TIMEOUT_S) -> dict[str, Any]:
        return await self._cdp.send(method, params, self.session_id, timeout_s)

    async def goto(self, url: str, timeout_s: float = 10.0) -> None:
        """Navigate and wait for the load event."""
        self._loaded.clear()
        res = await self._send("Page.navigate", {"url": url})
        if res.get("errorText"):
            raise BrowserError(f"navigation to {url} failed: {res['errorText']}")
        try:
            async with asyncio.timeout(timeout_s):
                await self._loaded.wait()
        except TimeoutError:
            raise BrowserError(f"{url} did not load in {timeout_s} s\n"
                               f"{self.console_tail()}") from None

    async def evaluate(self, expression: str, await_promise: bool = True,
                       timeout_s: float = COMMAND_TIMEOUT_S) -> Any:
        """Evaluate a JS expression in the page; its JSON value (None for undefined).

        Raises ``JSError`` with the exception text (and the recent console) if it throws or
        its promise rejects.
        """
        res = await self._send("Runtime.evaluate", {
            "expression": expression, "awaitPromise": await_promise, "returnByValue": True,
            "userGesture": True}, timeout_s=timeout_s)
        if "exceptionDetails" in res:
            raise JSError(f"{_exception_text(res['exceptionDetails'])}\n"
                          f"  while evaluating: {expression[:200]}\n"
                          f"  console:\n{self.console_tail()}")
        return res.get("result", {}).get("value")

    async def wait_for(self, predicate: str, timeout_s: float = 10.0,
                       interval_ms: int = 50) -> Any:
        """Poll a JS expression inside the page until it is truthy; its value.

        The expression may be a promise (it is awaited). Raises ``TimeoutError`` (with the
        console) when ``timeout_s`` seconds pass first, ``JSError`` if it throws.
        """
        js = f"""(async () => {{
            const deadline = Date.now() + {int(timeout_s * 1000)};
            for (;;) {{
                const v = await ({predicate});
                if (v) return {{ok: true, value: v}};
                if (Date.now() > deadline) return {{ok: false}};
                await new Promise(r => setTimeout(r, {interval_ms}));
            }}
        }})()"""
        res = await self.evaluate(js, timeout_s=timeout_s + 5.0)
        if not res or not res.get("ok"):
            raise TimeoutError(f"not true after {timeout_s} s: {predicate}\n"
                               f"console:\n{self.console_tail()}")
        return res.get("value")

    async def type_text(self, text: str) -> None:
        """Type into the focused element, as a keyboard would (IME-style insert)."""
        await self._send("Input.insertText", {"text": text})

    async def press(self, key: str, code: int) -> None:
        """Press and release one key (``key`` as DOM names it, ``code`` its Windows code)."""
        for kind in ("keyDown", "keyUp"):
            await self._send("Input.dispatchKeyEvent", {
                "type": kind, "key": key, "code": key, "windowsVirtualKeyCode": code,
                **({"text": "\r"} if key == "Enter" and kind == "keyDown" else {})})

    async def set_viewport(self, width: int, height: int) -> None:
        await self._send("Emulation.setDeviceMetricsOverride", {
            "width": width, "height": height, "deviceScaleFactor": 1, "mobile": False})

    async def screenshot(self, path: Path) -> Path:
        """Save a PNG of the page's viewport."""
        res = await self._send("Page.captureScreenshot", {"format": "png"})
        await asyncio.to_thread(_write_file, path, base64.b64decode(res["data"]))
        return path

    async def close(self) -> None:
        with contextlib.suppress(BrowserError):
            await self._cdp.send("Target.closeTarget", {"targetId": self.target_id}, timeout_s=5)


class Browser:
    def __init__(self, cdp: _Cdp) -> None:
        self._cdp = cdp
        self.pages: list[Page] = []

    async def new_page(self, url: str | None = None, timeout_s: float = 10.0) -> Page:
        """Open a tab (console capture on), then navigate to ``url`` and wait for it to load."""
        target = await self._cdp.send("Target.createTarget", {"url": "about:blank"})
        attached = await self._cdp.send("Target.attachToTarget",
                                        {"targetId": target["targetId"], "flatten": True})
        page = Page(self._cdp, target["targetId"], attached["sessionId"])
        self.pages.append(page)
        for domain in ("Runtime", "Log", "Page"):
            await page._send(f"{domain}.enable")
        if url is not None:
            await page.goto(url, timeout_s)
        return page

    async def save_failure_artifacts(self, artifacts_dir: Path) -> None:
        """Best effort: a screenshot and the console of every open page."""
        for i, page in enumerate(self.pages):
            await asyncio.to_thread(_write_file, artifacts_dir / f"failure-page{i}-console.txt",
                                    ("\n".join(page.console) + "\n").encode())
            with contextlib.suppress(Exception):
                async with asyncio.timeout(5):
                    await page.screenshot(artifacts_dir / f"failure-page{i}.png")


def _write_file(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def _devtools_port(profile: Path) -> tuple[int, str] | None:
    """(port, browser WebSocket path) once Chromium has written them."""
    with contextlib.suppress(FileNotFoundError, ValueError):
        lines = (profile / "DevToolsActivePort").read_text().splitlines()
        if len(lines) >= 2:
            return int(lines[0]), lines[1]
    return None


def _tail(path: Path, n: int = 3000) -> str:
    with contextlib.suppress(OSError):
        return path.read_text(errors="replace")[-n:]
    return ""


async def _read_devtools_port(profile: Path, proc: asyncio.subprocess.Process,
                              log: Path) -> tuple[int, str]:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline and proc.returncode is None:
        found = _devtools_port(profile)
        if found is not None:
            return found
        await asyncio.sleep(0.05)
    tail = _tail(log)
    state = f"exited with {proc.returncode}" if proc.returncode is not None else "still running"
    raise BrowserError(f"chromium did not open its DevTools port ({state}); stderr:\n{tail}")


async def _stop(proc: asyncio.subprocess.Process, asked_to_close: bool) -> None:
    """End the browser: let it close if asked to; terminate, then kill its process group."""
    steps = ((None, 5.0),) if asked_to_close else ()
    for sig, wait in (*steps, (signal.SIGTERM, 3.0), (signal.SIGKILL, 3.0)):
        if sig is not None and proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                # Our own session (start_new_session): the group is this browser's processes.
                os.killpg(proc.pid, sig)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(wait):
                await proc.wait()
            break
    with contextlib.suppress(ProcessLookupError):  # any helper process left behind
        os.killpg(proc.pid, signal.SIGKILL)


def _prepare(artifacts_dir: Path) -> Path:
    """Skip unless Chromium is installed; make the artifacts directory; a fresh profile dir."""
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} not installed (CI installs it: `make sysdeps`, "
                    "or `apt-get install -y chromium`)")
    artifacts_dir.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix="gw-chromium-"))


@contextlib.asynccontextmanager
async def chromium(fake_audio_wav: Path | None, artifacts_dir: Path,
                   extra_flags: tuple[str, ...] = ()) -> AsyncIterator[Browser]:
    """Launch headless Chromium whose fake microphone plays ``fake_audio_wav``.

    Append ``%noloop`` to the WAV's path to play it once (default: it loops). Without a WAV
    the fake microphone beeps. Chromium's stderr goes to ``artifacts_dir/chromium.log``.
    Skips the test if Debian's chromium is not installed.
    """
    profile = _prepare(artifacts_dir)
    log_path = artifacts_dir / "chromium.log"
    flags = [*BASE_FLAGS, f"--user-data-dir={profile}", *extra_flags]
    if fake_audio_wav is not None:
        flags.append(f"--use-file-for-fake-audio-capture={fake_audio_wav}")
    proc: asyncio.subprocess.Process | None = None
    http: aiohttp.ClientSession | None = None
    cdp: _Cdp | None = None
    asked_to_close = False
    try:
        with log_path.open("wb") as log:
            proc = await asyncio.create_subprocess_exec(
                str(CHROMIUM), *flags, "about:blank", stdin=asyncio.subprocess.DEVNULL,
                stdout=log, stderr=log, start_new_session=True)
        port, ws_path = await _read_devtools_port(profile, proc, log_path)
        http = aiohttp.ClientSession()
        ws = await http.ws_connect(f"ws://127.0.0.1:{port}{ws_path}", max_msg_size=0,
                                   timeout=aiohttp.ClientWSTimeout(ws_close=2.0))
        cdp = _Cdp(ws)
        browser = Browser(cdp)
        try:
            yield browser
        except BaseException:
            with contextlib.suppress(Exception):
                await browser.save_failure_artifacts(artifacts_dir)
            raise
    finally:
        if cdp is not None:
            asked_to_close = True
            with contextlib.suppress(Exception):
                await cdp.send("Browser.close", timeout_s=3)
            await cdp.close()
        if http is not None:
            await http.close()
        if proc is not None:
            await _stop(proc, asked_to_close)
        shutil.rmtree(profile, ignore_errors=True)
