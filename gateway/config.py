"""Settings: a TOML file, then ``GATEWAY_<SECTION>_<KEY>`` environment overrides.

Secrets come only from the environment and are held in :class:`Secret`, whose ``repr``
never shows the value, so a logged config cannot leak one.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import ipaddress
import logging
import os
import secrets
import tomllib
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

log = logging.getLogger("gateway.config")


class Secret:
    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __bool__(self) -> bool:
        return bool(self._value)


@dataclass(frozen=True, slots=True)
class VadPreset:
    threshold: float
    prefix_padding_ms: int
    silence_duration_ms: int

    def turn_detection(self, *, create_response: bool = True,
                       interrupt_response: bool = True) -> dict[str, Any]:
        return {"type": "server_vad", "threshold": self.threshold,
                "prefix_padding_ms": self.prefix_padding_ms,
                "silence_duration_ms": self.silence_duration_ms,
                "create_response": create_response, "interrupt_response": interrupt_response}


VAD_PRESETS: dict[str, VadPreset] = {
    "quiet_office": VadPreset(0.4, 200, 500),
    "noisy_call_center": VadPreset(0.7, 400, 700),
    "phone_line": VadPreset(0.5, 300, 600),
}

#: The model names client code hard-codes, per API (the ``openai`` package's model lists):
#: a profile with no ``models`` of its own answers to these.
DEFAULT_MODEL_PATTERNS: dict[str, tuple[str, ...]] = {
    "realtime": ("gpt-realtime*", "gpt-4o-realtime-preview*", "gpt-4o-mini-realtime-preview*",
                 "gpt-4o-transcribe*", "gpt-4o-mini-transcribe*", "whisper-1"),
    "live": ("gpt-live*",),
}
APIS = frozenset(DEFAULT_MODEL_PATTERNS)

#: Session fields a profile may lock (``Profile.locked``). The model is always the operator's.
CHANGEABLE_FIELDS = frozenset({
    "instructions", "voice", "speed", "turn_detection", "tools", "tool_choice",
    "output_modalities", "transcription", "noise_reduction", "max_output_tokens", "include",
    "truncation", "tracing",
})


@dataclass(frozen=True, slots=True)
class Profile:
    """An agent: what the operator decides for the calls that pick it.

    Transparent by default: a client may set any session field it could set at OpenAI, and
    nothing is locked until ``locked`` names it. The upstream model is always the operator's.
    """

    name: str
    #: Which OpenAI voice API this profile's calls speak upstream: "realtime" or "live".
    api: str = "realtime"
    #: What clients see as ``model``.
    model: str = "gpt-realtime"
    #: Model names that pick this profile: exact names or shell patterns (``gpt-realtime*``).
    #: Empty: the usual names of the profile's API (see :data:`DEFAULT_MODEL_PATTERNS`).
    models: tuple[str, ...] = ()
    #: Exact model names that also pick this profile (kept for older configs).
    aliases: tuple[str, ...] = ()
    #: The real upstream model; never shown to a client.
    upstream_model: str = "gpt-realtime"
    instructions: str = "You are a helpful, concise voice assistant."
    voice: str = "marin"
    turn_detection: str = "quiet_office"
    transcription_model: str | None = "gpt-4o-mini-transcribe"
    #: Server tools: run on the gateway. Tools a client declares are the client's own.
    tools: tuple[str, ...] = ("lookup_customer", "schedule_appointment")
    #: Session fields (from :data:`CHANGEABLE_FIELDS`) a client holding a token may not
    #: change, on any event that can carry them (``session.update``, ``response.create``,
    #: ``conversation.item.create`` with a system/developer message, Live's appends).
    locked: tuple[str, ...] = ()
    #: Locks hold for API-key holders too (a backend minting tokens, a server program on the
    #: WebSocket, a sideband connection); by default those are trusted like an OpenAI key.
    lock_api_keys: bool = False
    #: Older configs: the fields a client may change (every other changeable field is
    #: locked). Superseded by ``locked``; empty means "not used".
    client_may_change: tuple[str, ...] = ()
    recording: bool = True
    #: Record only calls whose token request carried ``recording_consent: true``.
    recording_requires_consent: bool = False
    #: When the caller's microphone goes silent, the agent asks whether they can hear it.
    ask_on_dead_mic: bool = True

    def names(self) -> tuple[str, ...]:
        return (self.model, *self.aliases)

    def model_patterns(self) -> tuple[str, ...]:
        return self.models or DEFAULT_MODEL_PATTERNS.get(self.api, ())

    def matches_model(self, model: str) -> bool:
        """Exact names first (``model``, ``aliases``, the profile's own name), then patterns."""
        if model in self.names() or model == self.name:
            return True
        return any(fnmatch.fnmatchcase(model, pat) for pat in self.model_patterns())

    def locked_fields(self) -> frozenset[str]:
        if self.locked:
            return frozenset(self.locked)
        if self.client_may_change:
            return CHANGEABLE_FIELDS - frozenset(self.client_may_change)
        return frozenset()


@dataclass(frozen=True, slots=True)
class ToolConfig:
    name: str
    kind: str = "builtin"  # builtin | webhook | python
    description: str = ""
    parameters: Mapping[str, Any] | None = None
    url: str = ""
    target: str = ""
    timeout_s: float = 8.0
    auth_env: str = ""  # environment variable holding the webhook's credential
    auth_header: str = "Authorization"
    auth_scheme: str = "Bearer"
    filler_after_s: float = 1.5


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


BUILTIN_TOOLS = frozenset({"lookup_customer", "schedule_appointment"})

_SECTIONS: dict[str, type[Any]] = {
    "server": ServerConfig, "upstream": UpstreamConfig, "tokens": TokenConfig,
    "media": MediaConfig, "recording": RecordingConfig, "guards": GuardConfig,
    "registry": RegistryConfig,
}
#: Short names of the operator contract (DESIGN.md) -> (section, key).
_SHORT_ENV = {
    "GATEWAY_HOST": ("server", "host"), "GATEWAY_PORT": ("server", "port"),
    "GATEWAY_PUBLIC_URL": ("server", "public_url"),
    "GATEWAY_CORS_ORIGINS": ("server", "cors_origins"),
    "GATEWAY_RECORDINGS_DIR": ("recording", "dir"),
    "GATEWAY_UPSTREAM_URL": ("upstream", "url"),
    "GATEWAY_DEMO_ENABLED": ("server", "demo_enabled"),
    "GATEWAY_CONSOLE_ENABLED": ("server", "console_enabled"),
}


def _coerce(value: Any, hint: Any, where: str) -> Any:
    origin = typing.get_origin(hint)
    if origin in (types.UnionType, typing.Union):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if value is None or value == "":
            return None
        return _coerce(value, args[0], where)
    if hint is bool:
        if isinstance(value, bool):
            return value
        if str(value).lower() in ("1", "true", "yes", "on"):
            return True
        if str(value).lower() in ("0", "false", "no", "off", ""):
            return False
        raise ValueError(f"{where}: expected a boolean, got {value!r}")
    if hint in (int, float, str):
        try:
            return hint(value)
        except (TypeError, ValueError) as e:
            raise ValueError(f"{where}: expected {hint.__name__}, got {value!r}") from e
    if origin is tuple:
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        return tuple(str(v) for v in value)
    return value


def _build(cls: type[Any], data: Mapping[str, Any], where: str) -> Any:
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(data) - names
    if unknown:
        raise ValueError(f"{where}: unknown setting(s) {sorted(unknown)}")
    return cls(**{k: _coerce(v, hints[k], f"{where}.{k}") for k, v in data.items()})


def load(path: str | Path | None = None, env: Mapping[str, str] | None = None) -> Config:
    env = os.environ if env is None else env
    raw: dict[str, Any] = {}
    if path:
        with open(path, "rb") as f:
            raw = tomllib.load(f)
    sections: dict[str, dict[str, Any]] = {s: dict(raw.get(s, {})) for s in _SECTIONS}
    for var, (sec, key) in _SHORT_ENV.items():
        if var in env:
            sections[sec][key] = env[var]
    for var, value in env.items():
        if not var.startswith("GATEWAY_") or var in _SHORT_ENV:
            continue
        rest = var[len("GATEWAY_"):].lower()
        for sec, cls in _SECTIONS.items():
            if rest.startswith(sec + "_"):
                key = rest[len(sec) + 1:]
                if key in {f.name for f in dataclasses.fields(cls)}:
                    sections[sec][key] = value
    built = {s: _build(cls, sections[s], s) for s, cls in _SECTIONS.items()}

    profiles: dict[str, Profile] = {}
    for name, pdata in raw.get("profiles", {}).items():
        p = _build(Profile, {"name": name, **pdata}, f"profiles.{name}")
        if p.turn_detection not in VAD_PRESETS and p.turn_detection != "none":
            raise ValueError(f"profiles.{name}.turn_detection: unknown preset {p.turn_detection!r}"
                             f" (known: {sorted(VAD_PRESETS)} or 'none')")
        for key in ("client_may_change", "locked"):
            bad = set(getattr(p, key)) - CHANGEABLE_FIELDS
            if bad:
                raise ValueError(f"profiles.{name}.{key}: unknown field(s) {sorted(bad)} "
                                 f"(known: {sorted(CHANGEABLE_FIELDS)})")
        if p.api not in APIS:
            raise ValueError(f"profiles.{name}.api: {p.api!r} is not one of {sorted(APIS)}")
        if p.client_may_change and not p.locked:
            log.warning("profiles.%s.client_may_change is superseded by 'locked' (the fields "
                        "a client may not change); read as locked = %s", name,
                        sorted(p.locked_fields()))
        profiles[name] = p
    if not profiles:
        profiles = {"default": Profile(name="default")}
    default_profile = str(raw.get("default_profile", next(iter(profiles))))
    if default_profile not in profiles:
        raise ValueError(f"default_profile {default_profile!r} is not a profile")

    tools = {name: _build(ToolConfig, {"name": name, **tdata}, f"tools.{name}")
             for name, tdata in raw.get("tools", {}).items()}
    for p in profiles.values():
        for t in p.tools:
            if t not in tools and t not in BUILTIN_TOOLS:
                raise ValueError(f"profiles.{p.name}.tools: no tool named {t!r}")
    token_secret = env.get("GATEWAY_TOKEN_SECRET", "")
    if not token_secret:
        token_secret = secrets.token_urlsafe(32)
        log.warning("GATEWAY_TOKEN_SECRET is unset: tokens are signed with a random key and "
                    "do not survive a restart or work across instances")
    if not built["server"].instance_id:
        built["server"] = dataclasses.replace(built["server"], instance_id=secrets.token_hex(3))
    held = Secrets(
        openai_api_key=Secret(env.get("OPENAI_API_KEY", "")),
        api_keys=tuple(Secret(k.strip()) for k in env.get("GATEWAY_API_KEYS", "").split(",")
                       if k.strip()),
        admin_token=Secret(env.get("GATEWAY_ADMIN_TOKEN", "")),
        token_secret=Secret(token_secret),
        twilio_auth_token=Secret(env.get("TWILIO_AUTH_TOKEN", "")),
    )
    return Config(profiles=profiles, default_profile=default_profile, secrets=held, tools=tools,
                  **built)
