"""Tools the gateway executes: built-in demo tools, HTTP webhooks, Python callables."""

from __future__ import annotations

import asyncio
import importlib
import inspect
import json
import logging
import os
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp

from ..config import ToolConfig
from .demo import DemoDb
from .schema import validate
from .specs import BUILTIN_SPECS

log = logging.getLogger("gateway.tools")

ToolFn = Callable[[dict[str, Any]], Awaitable[Any]]


class ToolError(Exception):
    """A failure reported back to the model as the tool's output (never raised to a client)."""


@dataclass
class Tool:
    spec: dict[str, Any]
    run: ToolFn
    timeout_s: float
    filler_after_s: float


class ToolRegistry:
    def __init__(self, configs: Mapping[str, ToolConfig], http: aiohttp.ClientSession,
                 db: DemoDb | None = None) -> None:
        self._db = db or DemoDb()
        self._http = http
        self._tools: dict[str, Tool] = {}
        for name in BUILTIN_SPECS:
            self._tools[name] = self._builtin(name, ToolConfig(name=name))
        for name, cfg in configs.items():
            self._tools[name] = self._build(name, cfg)

    def _build(self, name: str, cfg: ToolConfig) -> Tool:
        if cfg.kind == "builtin":
            return self._builtin(name, cfg)
        spec = {"type": "function", "name": name, "description": cfg.description,
                "parameters": dict(cfg.parameters or {"type": "object", "properties": {}})}
        if cfg.kind == "webhook":
            return Tool(spec, self._webhook(cfg), cfg.timeout_s, cfg.filler_after_s)
        if cfg.kind == "python":
            return Tool(spec, _python_callable(cfg.target), cfg.timeout_s, cfg.filler_after_s)
        raise ValueError(f"tools.{name}.kind: unknown kind {cfg.kind!r}")

    def _builtin(self, name: str, cfg: ToolConfig) -> Tool:
        if name not in BUILTIN_SPECS:
            raise ValueError(f"tools.{name}: no built-in tool of that name")
        method = getattr(self._db, name)

        async def run(args: dict[str, Any]) -> Any:
            return await asyncio.to_thread(method, args)

        return Tool(dict(BUILTIN_SPECS[name]), run, cfg.timeout_s, cfg.filler_after_s)

    def _webhook(self, cfg: ToolConfig) -> ToolFn:
        async def run(args: dict[str, Any]) -> Any:
            headers = {"Content-Type": "application/json"}
            if cfg.auth_env:
                secret = os.environ.get(cfg.auth_env, "")
                if secret:
                    headers[cfg.auth_header] = f"{cfg.auth_scheme} {secret}".strip()
            try:
                async with self._http.post(cfg.url, data=json.dumps(args),
                                           headers=headers) as r:
                    text = await r.text()
                    if r.status >= 400:
                        raise ToolError(f"the tool service answered HTTP {r.status}")
            except aiohttp.ClientError as e:
                raise ToolError("the tool service could not be reached") from e
            try:
                return json.loads(text)
            except ValueError:
                return text

        return run

    def spec(self, name: str) -> dict[str, Any] | None:
        tool = self._tools.get(name)
        return dict(tool.spec) if tool else None

    def get(self, name: str) -> Tool | None:
        return self._tools.get(name)

    def check_args(self, name: str, args: Any) -> list[str]:
        tool = self._tools[name]
        return validate(args, tool.spec.get("parameters") or {})

    async def call(self, name: str, arguments: str) -> tuple[Any, str]:
        """Run a tool the model called with its JSON ``arguments``: the result (or an
        ``{"error"}`` the model can act on) and the outcome for the metrics."""
        tool = self._tools.get(name)
        if tool is None:
            return {"error": f"The tool '{name}' is not available."}, "unknown_tool"
        try:
            args = json.loads(arguments or "{}")
        except ValueError:
            args = None
        problems = (["arguments must be a JSON object"] if not isinstance(args, dict)
                    else self.check_args(name, args))
        if problems:
            return {"error": "Invalid arguments: " + "; ".join(problems) + ". Ask the caller "
                    "for what is missing and try again."}, "invalid_arguments"
        assert isinstance(args, dict)
        try:
            async with asyncio.timeout(tool.timeout_s):
                return await tool.run(args), "ok"
        except TimeoutError:
            return {"error": "The tool did not answer in time."}, "timeout"
        except ToolError as e:
            return {"error": str(e)}, "error"
        except Exception:
            log.exception("tool %s failed", name)
            return {"error": "The tool failed."}, "error"

    def close(self) -> None:
        self._db.close()


def _python_callable(target: str) -> ToolFn:
    module, _, attr = target.partition(":")
    fn = getattr(importlib.import_module(module), attr)

    async def run(args: dict[str, Any]) -> Any:
        if inspect.iscoroutinefunction(fn):
            return await fn(args)
        return await asyncio.to_thread(fn, args)

    return run
