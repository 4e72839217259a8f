"""Which voice API a profile speaks, checked where a client picks one.

A Realtime client on a Live profile or a Live client on a Realtime profile is refused when
the token is minted or the connection opens (docs/live.md, "Cross-API"): each would lose
what the other API cannot express (manual turns, truncation, ``response.create`` options
one way; delegation, the appends and the session timeline the other).
"""

from __future__ import annotations

from gateway.config import Config, Profile
from gateway.errors import ApiError

_ROUTES = {"realtime": "the Realtime API (/v1/realtime)",
           "live": "GPT-Live (/v1/live/sessions)"}


def offered(config: Config, api: str) -> list[str]:
    out: list[str] = []
    for p in config.profiles.values():
        if p.api == api:
            out += [m for m in (p.model, *p.model_patterns()) if m not in out]
    return out


def require_api(config: Config, profile: Profile, api: str, model: object,
                param: str | None) -> None:
    """400 ``unsupported_api`` unless ``profile`` speaks ``api``, naming what does."""
    if profile.api == api:
        return
    models = ", ".join(offered(config, api)) or "none"
    raise ApiError(400, "unsupported_api", f"The model '{model or profile.model}' is served "
                   f"over {_ROUTES.get(profile.api, profile.api)} here, not over "
                   f"{_ROUTES[api]}. Models offered over {_ROUTES[api]}: {models}.",
                   param=param)
