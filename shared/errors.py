"""Domain errors shared by gateway and worker. The gateway maps each to the API's error shape
in one place (``gateway/errors.py``); ``status`` and ``type`` are that mapping's input."""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    status = 500
    type = "InternalError"

    def __init__(
        self,
        message: str,
        code: str | None = None,
        details: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.details = details
        self.headers = headers or {}


class BadRequest(ApiError, ValueError):
    status = 400
    type = "BadRequestError"


class Unauthorized(ApiError, PermissionError):
    status = 401
    type = "UnauthorizedError"


class Forbidden(ApiError, PermissionError):
    status = 403
    type = "ForbiddenError"


class NotFound(ApiError, LookupError):
    status = 404
    type = "NotFoundError"


class Conflict(ApiError):
    status = 409
    type = "ConflictError"


class PayloadTooLarge(ApiError, ValueError):
    status = 413
    type = "PayloadTooLargeError"


class UnsupportedMediaType(ApiError, ValueError):
    status = 415
    type = "UnsupportedMediaTypeError"


class Invalid(ApiError, ValueError):
    status = 422
    type = "ValidationError"


class RateLimited(ApiError):
    status = 429
    type = "RateLimitError"


class Unavailable(ApiError):
    status = 503
    type = "ServiceUnavailableError"


class Fenced(Exception):
    """This attempt was superseded (or the message ended): it may not append any more."""
