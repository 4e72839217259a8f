"""Logging: plain or JSON lines, the call id on every line of a call, no secrets."""

from __future__ import annotations

import contextvars
import json
import logging
import time

call_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("call_id", default=None)


def call_context(call_id: str) -> contextvars.Context:
    """A context whose log lines carry ``call_id`` (for tasks a call starts)."""
    ctx = contextvars.copy_context()
    ctx.run(call_id_var.set, call_id)
    return ctx


class _CallIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.call_id = call_id_var.get() or "-"
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out = {"ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)),
               "level": record.levelname, "logger": record.name,
               "call_id": getattr(record, "call_id", "-"), "msg": record.getMessage()}
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out)


def setup_logging(*, json_lines: bool = False, level: int = logging.INFO) -> None:
    handler = logging.StreamHandler()
    handler.addFilter(_CallIdFilter())
    if json_lines:
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter(
            "%(asctime)s %(levelname)s %(name)s [%(call_id)s] %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
