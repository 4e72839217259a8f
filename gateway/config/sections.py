"""The settings sections (``[server]``, ``[upstream]``, ``[tokens]``, ``[media]``,
``[recording]``, ``[registry]``, ``[guards]``), the secrets, and the whole ``Config``."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from .profiles import Profile, ToolConfig
from .secret import Secret


@dataclass(frozen=True, slots=True)
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 8080
    public_url: str = ""
    #: Origins whose pages may call the ``/v1/`` routes. Any, by default, as at OpenAI: those
    #: routes authenticate with a bearer key or token, never a cookie, so a page of another
    #: origin gains nothing it does not already hold. List origins to narrow it.
    cors_origins: tuple[str, ...] = ("*",)
    max_body_bytes: int = 64 * 1024
    max_calls: int = 200
    demo_enabled: bool = False
    instance_id: str = ""
    drain_timeout_s: float = 20.0
    log_json: bool = False
    #: Set by ``serve --workers N`` for each worker (see gateway/workers.py).
    reuse_port: bool = False
    worker_index: int = -1
    worker_peers: tuple[str, ...] = ()
    demo_db: str = ""
    #: How other instances reach this one (forwarded requests); default http://<host>:<port>.
    internal_url: str = ""
    #: "uvloop" (libuv; measured cheaper per call, BENCHMARKS.md "Calls") or "asyncio".
    event_loop: str = "uvloop"
    #: After start-up, freeze what is alive into the permanent GC generation and collect
    #: young objects less often (per-packet objects are acyclic; see gateway/lifecycle.py).
    gc_tuned: bool = True
    #: glibc's mmap threshold, pinned for the process' life (gateway/allocator.py): blocks
    #: over it are mmapped and unmapped on free. 0 leaves glibc's dynamic threshold, which a
    #: single large message raises for good (freed memory then kept in every thread's arena).
    malloc_mmap_threshold_bytes: int = 128 * 1024
    #: After calls end, a full cycle collection + malloc_trim at most this often (s), so what
    #: released calls held goes back to the kernel; 0: never (a full collection holds the
    #: loop for a time that grows with live objects: 20-40 ms next to 10 calls).
    release_sweep_interval_s: float = 30.0
    #: Addresses (IPs or CIDRs) of reverse proxies whose X-Forwarded-Proto/Host are believed
    #: when public_url is unset (Twilio's signed URL); default none: nobody's are.
    trusted_proxies: tuple[str, ...] = ()
    #: HTTP connections: one idle this long is closed, and so is one that has not sent a
    #: whole request head (line + headers) this long after it opened or its last response
    #: (slowloris); a body must arrive within body_timeout_s (408 otherwise).
    keepalive_timeout_s: float = 15.0
    body_timeout_s: float = 20.0
    #: The operator console at /console/ (docs/console.md): off unless enabled.
    console_enabled: bool = False
    #: A console session's absolute lifetime and idle timeout (seconds).
    console_session_ttl_s: float = 3600.0
    console_idle_s: float = 900.0
    #: Linked from the console's capacity view when set (a Grafana dashboard URL).
    grafana_url: str = ""

    def __post_init__(self) -> None:
        if self.event_loop not in ("uvloop", "asyncio"):
            raise ValueError(f"server.event_loop: expected 'uvloop' or 'asyncio', "
                             f"got {self.event_loop!r}")
        for entry in self.trusted_proxies:
            try:
                ipaddress.ip_network(entry, strict=False)
            except ValueError as e:
                raise ValueError(f"server.trusted_proxies: {entry!r} is not an IP address "
                                 "or network") from e


@dataclass(frozen=True, slots=True)
class UpstreamConfig:
    url: str = "wss://api.openai.com/v1/realtime"
    #: GPT-Live's WebSocket (profiles with ``api = "live"``). Empty: ``url``'s scheme and
    #: host with the path ``/v1/live/sessions`` (what OpenAI and the local engine serve).
    live_url: str = ""
    connect_timeout_s: float = 10.0
    #: Caller audio is sent upstream in appends of this many ms (cost tracks message count).
    append_ms: int = 40
    send_queue_frames: int = 250
    #: Roll over to a fresh upstream session before the upstream's own limit (60 min).
    rollover_s: float = 55 * 60
    #: How long to keep trying to reconnect a lost upstream before ending the call.
    reconnect_budget_s: float = 30.0

    def live_sessions_url(self) -> str:
        if self.live_url:
            return self.live_url
        parts = urlsplit(self.url)
        return urlunsplit((parts.scheme, parts.netloc, "/v1/live/sessions", "", ""))


@dataclass(frozen=True, slots=True)
class TokenConfig:
    default_ttl_s: int = 60
    min_ttl_s: int = 10
    max_ttl_s: int = 7200
    single_use: bool = True


@dataclass(frozen=True, slots=True)
class MediaConfig:
    #: Max agent audio buffered ahead of playback (the upstream sends faster than real time).
    outbound_buffer_s: float = 120.0
    #: Max data-channel message accepted from a client.
    max_event_bytes: int = 256 * 1024
    #: Events waiting in the data channel's send buffer (bytes) above which the client is
    #: considered not reading and the call ends, as the WebSocket leg's bounded queue does.
    max_channel_buffer_bytes: int = 4 * 1024 * 1024
    #: An answered offer whose peer has not connected (ICE + DTLS) within this many seconds
    #: is released entirely: slot, upstream, media port, recording.
    connect_timeout_s: float = 10.0
    #: WebSocket clients send audio as events: room for large appends.
    max_ws_event_bytes: int = 16 * 1024 * 1024
    #: No RTP for this long: the caller's connection is lost (the call is then held).
    dead_peer_s: float = 4.0
    #: How long a call whose caller dropped is kept for a resume.
    resume_grace_s: float = 30.0
    #: How often WebRTC quality (loss, jitter, RTT) is sampled for the metrics.
    stats_interval_s: float = 5.0
    #: Agent voice encoding (see BENCHMARKS.md, "Outbound encoding"): at 96 kbit/s libopus
    #: codes CELT-only, which measured both cheaper and closer to the source than lower rates.
    opus_bitrate: int = 96_000
    opus_complexity: int = 0
    #: UDP ports WebRTC media may bind (one per call); 0/0 = any. See docs/networking.md.
    port_min: int = 0
    port_max: int = 0
    #: Public IPs of a 1:1 NAT, announced in answers on the same ports (mediasoup's announcedIp).
    announced_addresses: tuple[str, ...] = ()
    #: Keep the private host candidates in answers (at a lower priority) next to announced ones.
    announce_private: bool = True
    #: STUN/TURN servers (tables: urls, username + credential | credential_env |
    #: turn_secret_env + turn_ttl_s), parsed by gateway.legs.ice_servers.parse_ice_servers.
    #: May hold a credential: kept out of the config's repr.
    ice_servers: Sequence[Mapping[str, Any]] = field(default=(), repr=False)
    #: Who carries RTP/RTCP once ICE + DTLS are up: "owned" (the default:
    #: gateway/legs/datapath.py, bytes in and out, one 20 ms clock for every call) or "aiortc"
    #: (its sender/receiver tasks and packet objects; kept selectable as a fallback). See
    #: docs/ARCHITECTURE.md and BENCHMARKS.md.
    datapath: str = "owned"

    def __post_init__(self) -> None:
        if self.datapath not in ("aiortc", "owned"):
            raise ValueError(f"media.datapath: expected 'aiortc' or 'owned', "
                             f"got {self.datapath!r}")


@dataclass(frozen=True, slots=True)
class RecordingConfig:
    enabled: bool = True
    dir: str = "recordings"
    opus_copy: bool = False
    retention_days: int = 0
    #: Optional S3-compatible storage (gateway/recording/s3.py); off while the bucket is empty.
    s3_endpoint_url: str = ""
    s3_bucket: str = ""
    s3_prefix: str = "recordings"
    s3_region: str = "us-east-1"
    #: Names of the environment variables holding the credentials (never the values).
    s3_access_key_env: str = "AWS_ACCESS_KEY_ID"
    s3_secret_key_env: str = "AWS_SECRET_ACCESS_KEY"
    #: Keep the local copy after a confirmed upload.
    s3_keep_local: bool = False
    s3_max_attempts: int = 5
    s3_backoff_s: float = 1.0
    #: Files larger than this go up in parts of ``s3_part_size_mib`` (S3's minimum: 5).
    s3_multipart_threshold_mib: float = 64.0
    s3_part_size_mib: float = 16.0


@dataclass(frozen=True, slots=True)
class RegistryConfig:
    """Shared state for many instances: ``memory`` (one instance) or ``redis``."""

    backend: str = "memory"
    #: May hold a password: kept out of the config's repr, redacted in logs.
    url: str = field(default="redis://127.0.0.1:6379/0", repr=False)
    #: Instance heartbeat period; an instance silent for 3 periods is declared dead.
    heartbeat_s: float = 2.0
    key_prefix: str = "gw:"
    #: Budget for a request forwarded to the instance that owns the call.
    forward_timeout_s: float = 20.0

    def __post_init__(self) -> None:
        if self.backend not in ("memory", "redis"):
            raise ValueError(f"registry.backend: expected 'memory' or 'redis', "
                             f"got {self.backend!r}")
        if self.heartbeat_s <= 0:
            raise ValueError("registry.heartbeat_s must be positive")


@dataclass(frozen=True, slots=True)
class GuardConfig:
    idle_prompt_s: float = 15.0
    idle_hangup_s: float = 30.0
    max_call_s: float = 3600.0
    dead_mic_s: float = 5.0


@dataclass(frozen=True, slots=True)
class Secrets:
    openai_api_key: Secret = field(default_factory=lambda: Secret(""))
    api_keys: tuple[Secret, ...] = ()
    admin_token: Secret = field(default_factory=lambda: Secret(""))
    token_secret: Secret = field(default_factory=lambda: Secret(""))
    twilio_auth_token: Secret = field(default_factory=lambda: Secret(""))


@dataclass(frozen=True, slots=True)
class Config:
    server: ServerConfig = field(default_factory=ServerConfig)
    upstream: UpstreamConfig = field(default_factory=UpstreamConfig)
    tokens: TokenConfig = field(default_factory=TokenConfig)
    media: MediaConfig = field(default_factory=MediaConfig)
    recording: RecordingConfig = field(default_factory=RecordingConfig)
    guards: GuardConfig = field(default_factory=GuardConfig)
    registry: RegistryConfig = field(default_factory=RegistryConfig)
    profiles: Mapping[str, Profile] = field(
        default_factory=lambda: {"default": Profile(name="default")})
    default_profile: str = "default"
    secrets: Secrets = field(default_factory=Secrets)
    tools: Mapping[str, ToolConfig] = field(default_factory=dict)

    def profile_for_model(self, model: str | None, api: str | None = None) -> Profile | None:
        """The profile a client's ``model`` names; the default profile when it names none.

        Exact names win over patterns; among patterns the first profile in the file wins.
        ``api`` ("realtime"/"live") prefers that API's profiles for an empty model."""
        if not model:
            default = self.profiles.get(self.default_profile)
            if api is None or (default is not None and default.api == api):
                return default
            return next((p for p in self.profiles.values() if p.api == api), default)
        for p in self.profiles.values():
            if model in p.names() or model == p.name:
                return p
        for p in self.profiles.values():
            if p.matches_model(model):
                return p
        return None

    def offered_models(self) -> list[str]:
        """What an unknown model's error lists: each profile's name and its patterns."""
        out: list[str] = []
        for p in self.profiles.values():
            for m in (p.model, *p.model_patterns()):
                if m not in out:
                    out.append(m)
        return out
