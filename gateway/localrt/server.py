"""The engine's HTTP side: ``/v1/realtime`` (WebSocket, GA dialect) and ``/healthz``.

Reached exactly like OpenAI: ``ws://HOST:PORT/v1/realtime?model=X`` with any
``Authorization: Bearer`` (it is a local dev server; nothing is checked). The model in the
query is logged and otherwise ignored: sessions report ``model: "local-offline"``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
from collections.abc import AsyncIterator, Callable

from aiohttp import web

from .config import EngineConfig
from .engine import Engine
from .handlers import HANDLERS
from .live_backend import emit_function_call
from .live_handlers import LIVE_HANDLERS
from .live_session import LiveSession
from .session import Session

log = logging.getLogger(__name__)

CONFIG_KEY = web.AppKey("localrt_config", EngineConfig)
ENGINE_KEY = web.AppKey("localrt_engine", Engine)
SESSIONS_KEY: web.AppKey[set[Session]] = web.AppKey("localrt_sessions")
LIVE_SESSIONS_KEY: web.AppKey[set[LiveSession]] = web.AppKey("localrt_live_sessions")

#: A 15 MiB append is ~20 MiB of base64 in JSON; larger frames would close the socket
#: instead of earning the client an error event.
MAX_FRAME_BYTES = 32 * 1024 * 1024


def make_app(config: EngineConfig | None = None, *,
             engine: Engine | None = None) -> web.Application:
    """The engine as an aiohttp app. Models load at start-up (in a thread), once, unless an
    already loaded ``engine`` is passed in (tests share one across apps)."""
    app = web.Application()
    app[CONFIG_KEY] = config or (engine.config if engine else EngineConfig())
    app[SESSIONS_KEY] = set()
    app[LIVE_SESSIONS_KEY] = set()
    app.cleanup_ctx.append(_engine_ctx(engine))
    app.on_shutdown.append(_close_sessions)
    app.router.add_get("/v1/realtime", _realtime)
    app.router.add_get("/v1/live/sessions", _live)
    app.router.add_get("/healthz", _healthz)
    return app


def _engine_ctx(engine: Engine | None) -> Callable[[web.Application], AsyncIterator[None]]:
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        if engine is not None:
            app[ENGINE_KEY] = engine
            yield
            return
        loaded = await asyncio.to_thread(Engine, app[CONFIG_KEY])
        app[ENGINE_KEY] = loaded
        try:
            yield
        finally:
            loaded.close()

    return ctx


async def _close_sessions(app: web.Application) -> None:
    sessions: set[Session] = app[SESSIONS_KEY]
    for session in list(sessions):
        await session.close()
    lives: set[LiveSession] = app[LIVE_SESSIONS_KEY]
    for live in list(lives):
        await live.close()


async def _healthz(request: web.Request) -> web.Response:
    return web.Response(text="ok")


def _websocket_required() -> web.Response:
    body = {"error": {"type": "invalid_request_error", "code": "websocket_required",
                      "message": "Connect with a WebSocket upgrade.", "param": None}}
    return web.json_response(body, status=400, dumps=json.dumps)


async def _live(request: web.Request) -> web.StreamResponse:
    """GPT-Live over a WebSocket: ``session.start`` first (``live_session.py``)."""
    ws = web.WebSocketResponse(max_msg_size=MAX_FRAME_BYTES, compress=False)
    if not ws.can_prepare(request).ok:
        return _websocket_required()
    await ws.prepare(request)
    app = request.app
    session = LiveSession(ws, app[ENGINE_KEY], app[CONFIG_KEY], LIVE_HANDLERS,
                          emit_function_call)
    log.info("live session %s opened", session.id)
    app[LIVE_SESSIONS_KEY].add(session)
    try:
        await session.run()
    finally:
        app[LIVE_SESSIONS_KEY].discard(session)
        log.info("live session %s closed", session.id)
    return ws


async def _realtime(request: web.Request) -> web.StreamResponse:
    ws = web.WebSocketResponse(protocols=("realtime",), max_msg_size=MAX_FRAME_BYTES,
                               compress=False)
    if not ws.can_prepare(request).ok:
        return _websocket_required()
    await ws.prepare(request)
    app = request.app
    transcription = request.query.get("intent") == "transcription"
    session = Session(ws, app[ENGINE_KEY], app[CONFIG_KEY], HANDLERS,
                      transcription=transcription)
    log.info("session %s opened (%s)", session.id, "transcription" if transcription
             else f"model requested: {request.query.get('model', '-')}")
    app[SESSIONS_KEY].add(session)
    try:
        await session.run()
    finally:
        app[SESSIONS_KEY].discard(session)
        log.info("session %s closed", session.id)
    return ws


async def serve(host: str, port: int, config: EngineConfig | None = None,
                ready: Callable[[str], None] | None = None) -> None:
    """Run until SIGINT/SIGTERM. ``ready`` gets the base URL once the socket listens."""
    runner = web.AppRunner(make_app(config), handle_signals=False)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        bound = runner.addresses[0][1] if runner.addresses else port
        url = f"http://{host}:{bound}"
        (ready or (lambda u: print(f"localrt listening on {u}", flush=True)))(url)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
    finally:
        await runner.cleanup()


def parse_args(argv: list[str] | None = None) -> tuple[argparse.Namespace, EngineConfig]:
    """The command line: the options, and the engine's settings they make."""
    defaults = EngineConfig()
    parser = argparse.ArgumentParser(
        prog="python -m gateway localrt",
        description="Offline stand-in for the OpenAI Realtime API (GA dialect) at /v1/realtime.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8090, help="0 picks a free port")
    parser.add_argument("--pace", type=float, default=defaults.output_pace,
                        help="audio leaves at most this many times faster than real time "
                             "(0: unpaced)")
    parser.add_argument("--asr", choices=("whisper", "pocketsphinx"),
                        default=defaults.asr, help="the recogniser (EngineConfig.asr)")
    parser.add_argument("--asr-beam", type=int, default=defaults.asr_beam_size,
                        help="Whisper's beam width (1: greedy)")
    parser.add_argument("--asr-lm-weight", type=float, default=defaults.asr_lm_weight,
                        help="Whisper n-best rescoring by the domain LM (0: off)")
    parser.add_argument("--asr-word-bonus", type=float,
                        default=defaults.asr_word_bonus,
                        help="Whisper n-best rescoring: added per word of a hypothesis "
                             "(0: none)")
    parser.add_argument("--asr-preemphasis", type=float,
                        default=defaults.asr_preemphasis,
                        help="pre-emphasis before Whisper's log-mel (0: off)")
    parser.add_argument("--asr-wiener", type=float, default=defaults.asr_wiener,
                        help="Wiener noise reduction before Whisper's log-mel, its gain "
                             "floor (0: off)")
    parser.add_argument("--asr-stretch", type=float, default=defaults.asr_stretch,
                        help="also decode the utterance slowed to this speed (1: off)")
    parser.add_argument("--asr-stretch-by", choices=("tape", "wsola"),
                        default=defaults.asr_stretch_by,
                        help="slow it as a tape (pitch and formants fall) or by WSOLA "
                             "(pitch kept)")
    parser.add_argument("--asr-third-by", choices=("tape", "wsola", ""),
                        default=defaults.asr_third_by,
                        help="when the two decodes disagree, decode a third time, slowed "
                             "this way ('': never)")
    parser.add_argument("--asr-third-low-snr", type=float,
                        default=defaults.asr_third_low_snr,
                        help="Whisper: the third decode's audio, when its estimated SNR is "
                             "under this (dB), is Wiener filtered on its live frames' noise "
                             "(0: never)")
    parser.add_argument("--asr-short-share", type=float,
                        default=defaults.asr_short_share,
                        help="Whisper: a hypothesis with fewer words than this share of the "
                             "n-best's median is not picked while another is left (0: off)")
    parser.add_argument("--asr-low-snr", type=float, default=defaults.asr_low_snr,
                        help="Whisper: audio whose estimated SNR is under this (dB) is "
                             "Wiener filtered on its live frames' noise (0: off)")
    parser.add_argument("--asr-low-floor", type=float, default=defaults.asr_low_floor,
                        help="Whisper: the Wiener gain floor for such low-SNR audio")
    parser.add_argument("--asr-expand", type=int, default=defaults.asr_expand,
                        help="Whisper: at most this many candidate sentences near the best "
                             "hypotheses, scored by teacher forcing (0: off)")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    return args, EngineConfig(
        output_pace=args.pace, asr=args.asr, asr_beam_size=args.asr_beam,
        asr_lm_weight=args.asr_lm_weight, asr_word_bonus=args.asr_word_bonus,
        asr_preemphasis=args.asr_preemphasis,
        asr_wiener=args.asr_wiener, asr_stretch=args.asr_stretch,
        asr_stretch_by=args.asr_stretch_by, asr_third_by=args.asr_third_by,
        asr_third_low_snr=args.asr_third_low_snr,
        asr_short_share=args.asr_short_share,
        asr_expand=args.asr_expand, asr_low_snr=args.asr_low_snr,
        asr_low_floor=args.asr_low_floor)


def main(argv: list[str] | None = None) -> int:
    args, config = parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        asyncio.run(serve(args.host, args.port, config))
    except KeyboardInterrupt:
        pass
    return 0
