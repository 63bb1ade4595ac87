"""Log lines with the context they belong to: human by default, JSON lines when configured.

``AGENTSTREAM_LOG_FORMAT=json`` writes one JSON object per line with ``ts``, ``level``,
``logger``, ``msg`` and, where they exist, ``request_id``, ``namespace_id``, ``session_id``,
``message_id`` and ``attempt``. Those come from one context variable that the gateway's
middleware sets per request and the worker sets per job, so a line logged anywhere below them
carries them without being passed along.

What never goes into a line: message content, API keys, tokens, Authorization headers, query
strings. Code logs ids and codes, not payloads; the access line logs the route and the path
without its query string.
"""

from __future__ import annotations

import contextvars
import logging
import sys
import time
from typing import Any

import msgspec

FIELDS = ("request_id", "namespace_id", "session_id", "message_id", "attempt")

# One mutable dict per request or job: the middleware sets it once, and code further down (auth
# learns the namespace, the send path the message id) adds to it in place, which the access line
# written at the end then sees.
_context: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar("agentstream_log_context",
                                                                                 default=None)
_encoder = msgspec.json.Encoder()


def start(**values: Any) -> contextvars.Token[dict[str, Any] | None]:
    """Begin a fresh context (a request, a job); ``reset`` it with the returned token."""
    return _context.set({k: v for k, v in values.items() if v is not None})


def reset(token: contextvars.Token[dict[str, Any] | None]) -> None:
    _context.reset(token)


def bind(**values: Any) -> None:
    """Add fields to the current request's or job's context (no-op outside one)."""
    ctx = _context.get()
    if ctx is not None:
        ctx.update({k: v for k, v in values.items() if v is not None})


def current() -> dict[str, Any]:
    return dict(_context.get() or {})


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        line.update(_context.get() or {})
        extra = getattr(record, "fields", None)
        if extra:
            line.update(extra)
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return _encoder.encode(line).decode()


class HumanFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        ctx = _context.get()  # a record's own ``fields`` are for JSON; its message says them already
        if ctx:
            text += " [" + " ".join(f"{k}={v}" for k, v in ctx.items()) + "]"
        return text


def configure(level: str, fmt: str) -> None:
    """Replace the root handler: one stream handler on stderr in the chosen format."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else HumanFormatter())
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # uvicorn's own loggers would print their own lines in their own format: route them here.
    for name in ("uvicorn", "uvicorn.error", "arq", "arq.worker"):
        lg = logging.getLogger(name)
        lg.handlers.clear()
        lg.propagate = True
