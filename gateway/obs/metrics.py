"""Every Prometheus metric of the gateway, defined once.

The names are a contract with ``grafana/`` dashboards. Labels are bounded sets
(transport, direction, outcome, tool, code, reason), never a call id.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from .hotmetrics import HotCounter, HotHistogram

# Voice-scale buckets: 5 ms to 10 s.
LATENCY_BUCKETS = (0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75,
                   1.0, 1.5, 2.0, 3.0, 5.0, 10.0)
FRAME_BUCKETS = (0.00005, 0.0001, 0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05)
LAG_BUCKETS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.0)
DBFS_BUCKETS = (-90.0, -70.0, -60.0, -50.0, -40.0, -30.0, -20.0, -10.0, -3.0, 0.0)


TRANSPORTS = ("webrtc", "websocket", "twilio")
DIRECTIONS = ("in", "out")
#: Error codes kept as label values; anything else (an upstream may send any string) is
#: counted as "other", so a misbehaving upstream cannot blow up the series count.
KNOWN_CODES = frozenset({
    "session_expired", "conversation_already_has_active_response", "response_cancel_not_active",
    "input_audio_buffer_commit_empty", "beta_api_shape_disabled", "invalid_api_key",
    "rate_limit_exceeded", "server_error", "invalid_request_error", "invalid_value",
    "unknown_parameter", "upstream_closed", "upstream_timeout", "upstream_unreachable",
    "upstream_rejected", "upstream_protocol", "bad_audio_delta", "send_queue_full",
    "invalid_sdp", "at_capacity", "server_draining", "internal_error", "invalid_token",
    "token_expired", "token_already_used", "model_not_found", "client_resumed", "rollover",
    "unknown",
})


def bounded(code: str) -> str:
    return code if code in KNOWN_CODES else "other"


class Metrics:
    """One instance per process (workers each have their own; see docs/ARCHITECTURE.md)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        r = self.registry = registry or CollectorRegistry()
        # process_cpu_seconds_total, process_resident_memory_bytes..., python_info: the
        # dashboard's CPU and memory panels (the default registry is not used).
        from prometheus_client import PlatformCollector, ProcessCollector
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)
        self.active_calls = Gauge(
            "gateway_active_calls", "Calls in progress", ["transport"], registry=r)
        self.calls_total = Counter(
            "gateway_calls_total", "Calls ended, by how they ended", ["transport", "outcome"],
            registry=r)
        self.call_setup_failures = Counter(
            "gateway_call_setup_failures_total", "Call setups refused or failed",
            ["transport", "code"], registry=r)
        self.turn_latency = Histogram(
            "gateway_turn_latency_seconds",
            "Caller's end of speech -> first agent audio frame sent to the caller",
            ["transport"], buckets=LATENCY_BUCKETS, registry=r)
        self.upstream_ttfa = Histogram(
            "gateway_upstream_time_to_first_audio_seconds",
            "response.created -> first response.output_audio.delta from upstream",
            buckets=LATENCY_BUCKETS, registry=r)
        # Observed every frame of every call: see gateway/hotmetrics.py.
        self.frame_seconds = HotHistogram(
            "gateway_frame_processing_seconds",
            "Time the gateway spends on one 20 ms frame (wall clock, on the event loop)",
            ["direction"], buckets=FRAME_BUCKETS, registry=r)
        self.loop_lag = Histogram(
            "gateway_event_loop_lag_seconds", "How late the event loop runs a timer",
            buckets=LAG_BUCKETS, registry=r)
        self.audio_level = HotHistogram(
            "gateway_audio_level_dbfs", "RMS level of 20 ms frames", ["direction"],
            buckets=DBFS_BUCKETS, registry=r)
        self.audio_peak = HotHistogram(
            "gateway_audio_peak_dbfs", "Peak level of 20 ms frames", ["direction"],
            buckets=DBFS_BUCKETS, registry=r)
        self.clipped_samples = HotCounter(
            "gateway_audio_clipped_samples_total", "Samples at full scale", ["direction"],
            registry=r)
        self.audio_seconds = HotCounter(
            "gateway_audio_seconds_total", "Audio carried (cost)", ["direction"], registry=r)
        self.interruptions = Counter(
            "gateway_interruptions_total", "Agent speech cut off by the caller", ["transport"],
            registry=r)
        self.barge_in_cutoff = Histogram(
            "gateway_barge_in_cutoff_seconds",
            "speech_started received -> outbound audio silenced", buckets=LATENCY_BUCKETS,
            registry=r)
        self.idle_events = Counter(
            "gateway_idle_events_total", "Idle prompts and idle hang-ups", ["action"], registry=r)
        self.dead_mic_events = Counter(
            "gateway_dead_mic_events_total", "Caller microphone went silent or stopped",
            ["kind"], registry=r)
        self.tool_calls = Counter(
            "gateway_tool_calls_total", "Server-side tool calls", ["tool", "outcome"], registry=r)
        self.tool_duration = Histogram(
            "gateway_tool_duration_seconds", "Tool execution time", ["tool"],
            buckets=LATENCY_BUCKETS, registry=r)
        self.upstream_errors = Counter(
            "gateway_upstream_errors_total", "Error events and failures from upstream", ["code"],
            registry=r)
        self.upstream_reconnects = Counter(
            "gateway_upstream_reconnects_total", "Upstream reconnects", ["reason"], registry=r)
        self.client_errors = Counter(
            "gateway_client_errors_total", "Error events sent to clients", ["code"], registry=r)
        self.webrtc_packets_lost = Counter(
            "gateway_webrtc_inbound_packets_lost", "Inbound RTP packets lost (from RTCP stats)",
            registry=r)
        self.webrtc_jitter = Histogram(
            "gateway_webrtc_jitter_seconds", "Inbound RTP interarrival jitter (per stats sample)",
            buckets=LAG_BUCKETS, registry=r)
        self.webrtc_rtt = Histogram(
            "gateway_webrtc_rtt_seconds", "Round-trip time reported by RTCP",
            buckets=LATENCY_BUCKETS, registry=r)
        self.webrtc_candidate_pairs = Counter(
            "gateway_webrtc_candidate_pairs", "ICE candidate pair selected by connected WebRTC "
            "peers, by candidate type (host, srflx, prflx, relay)",
            ["local_type", "remote_type"], registry=r)
        self.outbound_frames = HotCounter(
            "gateway_outbound_frames_total", "Frames sent to callers", ["kind"], registry=r)
        self.recording_bytes = Counter(
            "gateway_recording_bytes_total", "Bytes written to recordings", registry=r)
        self.recording_errors = Counter(
            "gateway_recording_errors_total", "Recording write failures", registry=r)
        self.tokens_minted = Counter(
            "gateway_tokens_minted_total", "Ephemeral tokens minted", ["dialect"], registry=r)
        self.http_errors = Counter(
            "gateway_http_errors_total", "Error responses", ["status", "code"], registry=r)
        self._precreate()

    def _precreate(self) -> None:
        """Create the series of every bounded label value now, at 0: a series born at its
        first event at 1 is never counted by rate()/increase(), so the first interruption
        of a process would never show on a graph."""
        for t in TRANSPORTS:
            for m in (self.active_calls, self.interruptions, self.turn_latency):
                m.labels(t)
        for d in DIRECTIONS:
            for h in (self.frame_seconds, self.audio_level, self.audio_peak,
                      self.clipped_samples, self.audio_seconds):
                h.labels(d)
        for action in ("prompt", "hangup"):
            self.idle_events.labels(action)
        for kind in ("silence", "no_audio"):
            self.dead_mic_events.labels(kind)
        for dialect in ("ga", "beta", "demo"):
            self.tokens_minted.labels(dialect)
        for kind in ("speech", "silence"):
            self.outbound_frames.labels(kind)
