"""Typed application state (``web.AppKey``): no module globals."""

from __future__ import annotations

from typing import TYPE_CHECKING

import aiohttp
from aiohttp import web

from .config import Config
from .metrics import Metrics
from .registry import LocalCalls, Registry
from .tokens import TokenService

if TYPE_CHECKING:
    pass

CONFIG = web.AppKey("config", Config)
METRICS = web.AppKey("metrics", Metrics)
REGISTRY = web.AppKey("registry", Registry)
CALLS = web.AppKey("calls", LocalCalls)
TOKENS = web.AppKey("tokens", TokenService)
HTTP = web.AppKey("http", aiohttp.ClientSession)
FACTORY = web.AppKey("factory", "CallFactory")
