"""The client's exceptions. An answer in the API's error shape becomes ``ApiError`` with the
same status, code, message and details; anything the network did becomes ``ConnectionLost``
once the retries are spent."""

from __future__ import annotations

from typing import Any

import msgspec


class AgentStreamError(Exception):
    """Base of every error this client raises."""


class ApiError(AgentStreamError):
    """The server answered with an error (``{"status", "error": {"message", "type", "code", "details"}}``)."""

    def __init__(self, status: int, message: str, code: str | None = None, type: str | None = None,
                 details: dict[str, Any] | None = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(f"{status} {code or type or 'error'}: {message}")
        self.status = status
        self.message = message
        self.code = code
        self.type = type
        self.details = details or {}
        self.headers = headers or {}

    @classmethod
    def from_response(cls, status: int, body: bytes, headers: dict[str, str]) -> ApiError:
        try:
            doc = msgspec.json.decode(body)
            err = doc["error"]
            return cls(status, str(err.get("message", "")), err.get("code"), err.get("type"),
                       err.get("details") or {}, headers)
        except (msgspec.DecodeError, KeyError, TypeError, AttributeError):
            text = body[:200].decode("utf-8", "replace")
            return cls(status, text or f"HTTP {status}", None, None, {}, headers)


class ConnectionLost(AgentStreamError):
    """The stream could not be resumed within ``max_retries`` attempts in a row."""


class StreamNotEnded(AgentStreamError):
    """``result`` was asked for before the stream reached its terminal (or pause) event."""
