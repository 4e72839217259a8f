"""Typed application state (``web.AppKey``): no module globals."""

from __future__ import annotations

import aiohttp
from aiohttp import web

from gateway.call.factory import CallFactory
from gateway.cluster.registry import LocalCalls, Registry
from gateway.config import Config
from gateway.obs.metrics import Metrics
from gateway.recording.s3 import S3Uploader

from .tokens import TokenService

CONFIG = web.AppKey("config", Config)
METRICS = web.AppKey("metrics", Metrics)
REGISTRY = web.AppKey("registry", Registry)
CALLS = web.AppKey("calls", LocalCalls)
TOKENS = web.AppKey("tokens", TokenService)
HTTP = web.AppKey("http", aiohttp.ClientSession)
FACTORY = web.AppKey("factory", CallFactory)
S3_UPLOADER = web.AppKey("s3_uploader", S3Uploader)
