"""Loading: a TOML file, then ``GATEWAY_<SECTION>_<KEY>`` environment overrides (and the
short names of the operator contract), checked against the sections' types."""

from __future__ import annotations

import dataclasses
import logging
import os
import secrets
import tomllib
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .profiles import APIS, CHANGEABLE_FIELDS, VAD_PRESETS, Profile, ToolConfig
from .secret import Secret
from .sections import (
    Config,
    GuardConfig,
    MediaConfig,
    RecordingConfig,
    RegistryConfig,
    Secrets,
    ServerConfig,
    TokenConfig,
    UpstreamConfig,
)

log = logging.getLogger("gateway.config")


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
