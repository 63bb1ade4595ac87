"""The one place where errors become the API's ``ErrorResponse`` shape (reference §6)."""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import Any

import msgspec
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from shared import metrics
from shared.errors import ApiError
from shared.ids import new_id
from shared.models import ErrorDetail, ErrorResponse

log = logging.getLogger("agentstream.gateway")
_encoder = msgspec.json.Encoder()
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")

_HTTP_TYPES = {
    400: "BadRequestError", 401: "UnauthorizedError", 403: "ForbiddenError", 404: "NotFoundError",
    405: "MethodNotAllowedError", 409: "ConflictError", 413: "PayloadTooLargeError",
    414: "UriTooLongError", 415: "UnsupportedMediaTypeError", 431: "RequestHeaderFieldsTooLargeError",
    422: "ValidationError", 429: "RateLimitError", 500: "InternalError", 503: "ServiceUnavailableError",
}


def error_response(status: int, message: str, type_: str | None = None, code: str | None = None,
                   details: dict[str, Any] | None = None, headers: Mapping[str, str] | None = None) -> Response:
    # `details` is always an object (empty when there is nothing to add), so a client can read
    # `error.details.get(...)` on any error without a None check.
    body = ErrorResponse(status=status, error=ErrorDetail(
        message=message, type=type_ or _HTTP_TYPES.get(status, "Error"), code=code, details=details or {}))
    return Response(_encoder.encode(body), status_code=status, media_type="application/json",
                    headers=headers)


async def api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    if exc.status == 429:
        metrics.RATE_LIMITED.labels(metrics.bounded("limit", exc.code or "")).inc()
    return error_response(exc.status, exc.message, exc.type, exc.code, exc.details, exc.headers)


async def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = {404: "route_not_found", 405: "method_not_allowed"}.get(exc.status_code)
    return error_response(exc.status_code, str(exc.detail), code=code, headers=exc.headers)


async def redis_down(request: Request, exc: Exception) -> Response:
    log.warning("redis unavailable: %s", exc)
    return error_response(503, "Storage is unavailable; retry shortly", code="redis_unavailable",
                          details={"retryable": True, "retry_after_seconds": 1},
                          headers={"Retry-After": "1"})


def request_id(request: Request) -> str:
    """The caller's ``X-Request-Id`` when it is a sane token, else a new one."""
    given = request.headers.get("x-request-id", "")
    return given if _REQUEST_ID.fullmatch(given) else new_id("req")


async def unexpected(request: Request, exc: Exception) -> Response:
    # One line per failure, with the id the client also gets: a traceback per request let a
    # few KB of hostile input write hundreds of KB of log (issue 15.3). DEBUG keeps the trace.
    rid = request_id(request)
    log.error("unhandled %s on %s %s (request_id=%s): %.200s", type(exc).__name__, request.method,
              request.url.path, rid, exc)
    log.debug("traceback of request %s", rid, exc_info=exc)
    return error_response(500, "Internal server error", code="internal_error", details={"request_id": rid},
                          headers={"X-Request-Id": rid})


HANDLERS = {
    ApiError: api_error,
    HTTPException: http_error,
    RedisConnectionError: redis_down,
    RedisTimeoutError: redis_down,
    ConnectionError: redis_down,
    Exception: unexpected,
}
