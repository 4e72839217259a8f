"""Settings: a TOML file, then ``GATEWAY_<SECTION>_<KEY>`` environment overrides.

Secrets come only from the environment and are held in :class:`Secret`, whose ``repr``
never shows the value, so a logged config cannot leak one.

- ``secret.py``: :class:`Secret`;
- ``profiles.py``: profiles (the operator's agents), VAD presets, tool definitions;
- ``sections.py``: the ``[server]`` ... ``[guards]`` sections, the secrets, :class:`Config`;
- ``loading.py``: :func:`load` (TOML, environment, type checks, cross-checks).
"""

from __future__ import annotations

from .loading import _SECTIONS, _SHORT_ENV, BUILTIN_TOOLS, load
from .profiles import (
    APIS,
    CHANGEABLE_FIELDS,
    DEFAULT_MODEL_PATTERNS,
    VAD_PRESETS,
    Profile,
    ToolConfig,
    VadPreset,
)
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

__all__ = [
    "APIS", "BUILTIN_TOOLS", "CHANGEABLE_FIELDS", "DEFAULT_MODEL_PATTERNS", "VAD_PRESETS",
    "Config", "GuardConfig", "MediaConfig", "Profile", "RecordingConfig", "RegistryConfig",
    "Secret", "Secrets", "ServerConfig", "TokenConfig", "ToolConfig", "UpstreamConfig",
    "VadPreset", "_SECTIONS", "_SHORT_ENV", "load",
]
