"""Setting up a call: the leg and the upstream in parallel, then the session joins them."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from gateway.cluster.registry import CallInfo, LocalCalls, Registry
from gateway.config import Config, Profile
from gateway.errors import ApiError
from gateway.ids import new_id
from gateway.legs.base import Leg
from gateway.legs.ice import MediaNetwork
from gateway.legs.media_ports import PORTS_EXHAUSTED
from gateway.legs.webrtc import WebRtcLeg
from gateway.legs.websocket import WebSocketLeg
from gateway.obs.metrics import Metrics, bounded
from gateway.recording.s3 import S3Uploader
from gateway.tools.demo import DemoDb
from gateway.tools.registry import ToolRegistry
from gateway.upstream.client import UpstreamConnection, UpstreamError

from . import policy
from .continuity import UpstreamKeeper
from .dialect import attach_beta
from .guards import CallGuards
from .live_calls import check_dialect, connect_live
from .live_tools import LiveTools
from .live_upstream_events import LiveUpstreamEvents
from .recording import CallRecording
from .session import CallSession
from .toolrounds import ToolRounds

log = logging.getLogger("gateway.calls")


class CallFactory:
    """Builds calls. Extensions (recorder, guards, tools, dialects) register setup hooks."""

    def __init__(self, config: Config, metrics: Metrics, registry: Registry, calls: LocalCalls,
                 http: aiohttp.ClientSession) -> None:
        self.config = config
        self.metrics = metrics
        self.registry = registry
        self.calls = calls
        self.http = http
        self.tools = ToolRegistry(config.tools, http,
                                  DemoDb(config.server.demo_db or ":memory:"))
        self.setup_hooks: list[Any] = []
        #: Set by the recordings context when ``[recording] s3_bucket`` is configured.
        self.uploader: S3Uploader | None = None
        #: Port range, announced addresses, ICE servers (docs/networking.md).
        self.ice = MediaNetwork.from_config(config.media)

    def new_call_id(self) -> str:
        # The owning instance is part of the id, so any instance can route to the owner.
        return f"rtc_{self.config.server.instance_id}{new_id('', 10)[1:]}"

    def base_session(self, profile: Profile) -> dict[str, Any]:
        return policy.base_session(profile, self.tools.spec)

    async def connect_upstream(self, profile: Profile, session: dict[str, Any]
                               ) -> tuple[UpstreamConnection, dict[str, Any]]:
        if profile.api == "live":  # GPT-Live upstream (gateway/call/live_calls.py)
            return await connect_live(self, profile, session)
        up = self.config.upstream
        transcription = policy.session_kind(session) == policy.TRANSCRIPTION
        conn = await UpstreamConnection.connect(
            self.http, url=up.url, model=profile.upstream_model,
            api_key=self.config.secrets.openai_api_key.reveal(),
            timeout_s=up.connect_timeout_s, queue_size=up.send_queue_frames,
            on_drop=lambda: self.metrics.upstream_errors.labels("send_queue_full").inc(),
            intent="transcription" if transcription else None)
        try:
            effective = await conn.handshake(policy.for_upstream(session), up.connect_timeout_s)
        except BaseException:
            await conn.close()
            raise
        return conn, effective

    async def start_webrtc(self, *, offer_sdp: str, profile: Profile, session: dict[str, Any],
                           dialect: str = "ga", extra: dict[str, Any] | None = None,
                           trust: policy.Trust = policy.TOKEN, gateway_events: bool = False
                           ) -> tuple[CallSession, str]:
        try:
            self.ice.check_capacity()  # 503 + Retry-After when no media port is free
        except ApiError:
            self.metrics.call_setup_failures.labels("webrtc", PORTS_EXHAUSTED).inc()
            raise
        check_dialect(profile, dialect)
        self.calls.reserve()
        call_id = self.new_call_id()
        call = CallSession(call_id=call_id, config=self.config, profile=profile,
                           metrics=self.metrics, transport="webrtc", dialect=dialect,
                           session=session, tool_lookup=self.tools.spec, trust=trust,
                           gateway_events=gateway_events, on_closed=self.call_closed)
        leg = self._webrtc_leg(call)
        answer_t = asyncio.ensure_future(leg.answer(offer_sdp))
        upstream_t = asyncio.ensure_future(self.connect_upstream(profile, session))
        try:
            await asyncio.wait([answer_t, upstream_t], return_when=asyncio.FIRST_EXCEPTION)
            for t in (answer_t, upstream_t):
                if t.done() and t.exception() is not None:
                    raise t.exception()  # type: ignore[misc]
            answer = answer_t.result()
            upstream, effective = upstream_t.result()
        except BaseException as e:
            self.calls.release_reservation()
            for t in (answer_t, upstream_t):
                t.cancel()
            await asyncio.gather(answer_t, upstream_t, return_exceptions=True)
            if upstream_t.done() and not upstream_t.cancelled() and upstream_t.exception() is None:
                await upstream_t.result()[0].close()
            await leg.close()
            code = e.code if isinstance(e, ApiError | UpstreamError) else "internal_error"
            self.metrics.call_setup_failures.labels("webrtc", bounded(code)).inc()
            if isinstance(e, UpstreamError):
                log.warning("upstream unavailable at call setup: %s", e.code)
                raise ApiError(502, e.code, "The realtime upstream is unavailable: "
                               f"{e.message}", type_="server_error") from e
            raise
        await self.join(call, leg, upstream, effective, extra or {})
        return call, answer

    async def join(self, call: CallSession, leg: Leg, upstream: UpstreamConnection,
                    effective: dict[str, Any], extra: dict[str, Any]) -> None:
        """Everything after both legs are up, the same for every transport."""
        try:
            await self._join(call, leg, upstream, effective, extra)
        except BaseException:
            if self.calls.get(call.call_id) is None:
                self.calls.release_reservation()
            await call.close("setup_failed")
            await leg.close()
            await upstream.close()
            raise

    async def _join(self, call: CallSession, leg: Leg, upstream: UpstreamConnection,
                    effective: dict[str, Any], extra: dict[str, Any]) -> None:
        profile = call.profile
        if call.dialect == "beta":
            attach_beta(call)
        if self._should_record(profile, extra):
            try:
                CallRecording(call, Path(self.config.recording.dir), self.metrics,
                              opus_copy=self.config.recording.opus_copy,
                              uploader=self.uploader, metadata={
                                  "transport": call.transport,
                                  "caller": extra.get("caller") or call.caller,
                                  "agent": profile.name, "model": profile.model,
                                  "dialect": call.dialect,
                                  "session_type": policy.session_kind(call.session),
                                  "instance": self.config.server.instance_id})
            except OSError:
                # A full or read-only disk must not take the call down with it.
                log.exception("recording could not start")
                self.metrics.recording_errors.inc()
        # A transcription session has no agent: nothing runs tools or speaks a prompt.
        conversation = policy.session_kind(call.session) != policy.TRANSCRIPTION
        if isinstance(call.upstream_events, LiveUpstreamEvents):
            call.upstream_events.resource = dict(effective)
            if profile.tools:
                LiveTools(call, self.tools, self.metrics, profile.tools)
        elif profile.tools and conversation:
            ToolRounds(call, self.tools, self.metrics)
        self.metrics.calls_by_api.labels(profile.api).inc()
        if conversation:
            CallGuards(call, self.config.guards, ask_on_dead_mic=profile.ask_on_dead_mic)
        UpstreamKeeper(call, lambda: self.connect_upstream(profile, call.session),
                       rollover_s=self.config.upstream.rollover_s,
                       budget_s=self.config.upstream.reconnect_budget_s)
        for hook in self.setup_hooks:
            hook(call, extra)
        # Registered before the client hears session.created: whoever learns of the call from
        # the client (an admin list, a sideband, a hangup on another instance) finds it.
        self.calls.add(call)
        await self.registry.add_call(CallInfo(call.call_id, self.config.server.instance_id,
                                              call.transport, profile.name,
                                              call.stats.started_at, call.dialect))
        if call.transport == "webrtc":  # so any instance can route a resume here
            await self.registry.put_resume(call.resume_token, call.call_id,
                                           self.config.server.instance_id)
        call.attach(leg, upstream, effective)

    def _should_record(self, profile: Profile, extra: dict[str, Any]) -> bool:
        if not (self.config.recording.enabled and profile.recording):
            return False
        consent = extra.get("recording_consent")
        if consent is False:
            return False
        return consent is True or not profile.recording_requires_consent

    async def run_websocket(self, request: web.Request, *, profile: Profile,
                            session: dict[str, Any], dialect: str,
                            extra: dict[str, Any] | None = None,
                            trust: policy.Trust = policy.TOKEN,
                            gateway_events: bool = False) -> web.WebSocketResponse:
        """Serve one Realtime WebSocket call until the client or the upstream ends it."""
        check_dialect(profile, dialect)
        self.calls.reserve()
        call = CallSession(call_id=self.new_call_id(), config=self.config, profile=profile,
                           metrics=self.metrics, transport="websocket", dialect=dialect,
                           session=session, tool_lookup=self.tools.spec, trust=trust,
                           gateway_events=gateway_events, on_closed=self.call_closed)
        try:
            upstream, effective = await self.connect_upstream(profile, session)
        except UpstreamError as e:
            self.calls.release_reservation()
            self.metrics.call_setup_failures.labels("websocket", bounded(e.code)).inc()
            raise ApiError(502, e.code, f"The realtime upstream is unavailable: {e.message}",
                           type_="server_error") from e
        except BaseException:
            self.calls.release_reservation()
            raise
        # No permessage-deflate even when the client offers it (the `websockets` library and
        # so the openai SDK do): base64 audio deflates poorly and costs CPU every message.
        ws = web.WebSocketResponse(protocols=("realtime",), heartbeat=30.0,
                                   max_msg_size=20 * 1024 * 1024, compress=False)
        try:
            await ws.prepare(request)
        except BaseException:
            self.calls.release_reservation()
            await upstream.close()
            raise
        leg = WebSocketLeg(ws, call, max_event_bytes=self.config.media.max_ws_event_bytes,
                           output_format=call.output_format)
        await self.join(call, leg, upstream, effective, extra or {})
        try:
            await leg.run()
        finally:
            await call.close(call.end_reason or "client_closed")
        return ws

    async def resume_webrtc(self, *, resume_token: str, offer_sdp: str,
                            gateway_events: bool = False) -> tuple[CallSession, str]:
        """A caller whose connection dropped comes back: a new peer joins the held call."""
        call = self.calls.by_resume_token(resume_token)
        if not isinstance(call, CallSession) or call.closing:
            raise ApiError(404, "call_not_found", "No held call for this resume token; it "
                           "ended or the grace period passed.")
        # A resumed peer that never connects leaves the call held, as a drop does.
        leg = self._webrtc_leg(call, never_connected_reason="client_lost")
        try:
            answer = await leg.answer(offer_sdp)
        except BaseException:
            await leg.close()
            raise
        if call.leg is not None:  # resumed before the drop was noticed: replace the old peer
            call.suspend()
        call.gateway_events = gateway_events
        call.resume(leg)
        await self.registry.put_resume(call.resume_token, call.call_id,
                                       self.config.server.instance_id)
        return call, answer

    def _ice_pair_observer(self, call: CallSession) -> Callable[[str, str], None]:
        def observe(local_type: str, remote_type: str) -> None:
            self.metrics.webrtc_candidate_pairs.labels(local_type, remote_type).inc()
            call.note("note", event="ice", local_type=local_type, remote_type=remote_type)
        return observe

    def _webrtc_leg(self, call: CallSession, never_connected_reason: str = "connect_timeout"
                    ) -> WebRtcLeg:
        media = self.config.media
        return WebRtcLeg(call, max_buffer_s=media.outbound_buffer_s,
                         max_event_bytes=media.max_event_bytes, dead_peer_s=media.dead_peer_s,
                         stats_observer=self._observe_stats,
                         stats_interval_s=media.stats_interval_s,
                         opus_bitrate=media.opus_bitrate,
                         opus_complexity=media.opus_complexity,
                         on_encode=self.metrics.frame_seconds.labels("out").observe,
                         network=self.ice, on_ice_pair=self._ice_pair_observer(call),
                         max_channel_buffer_bytes=media.max_channel_buffer_bytes,
                         connect_timeout_s=media.connect_timeout_s,
                         never_connected_reason=never_connected_reason,
                         datapath=media.datapath)

    def _observe_stats(self, lost: int, jitter: float | None, rtt: float | None) -> None:
        m = self.metrics
        if lost:
            m.webrtc_packets_lost.inc(lost)
        if jitter is not None:
            m.webrtc_jitter.observe(jitter)
        if rtt is not None:
            m.webrtc_rtt.observe(rtt)

    async def call_closed(self, call: CallSession, reason: str) -> None:
        self.calls.remove(call.call_id)
        with contextlib.suppress(Exception):
            await self.registry.remove_call(call.call_id)
