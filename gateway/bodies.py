"""Request bodies: size limit (413), media type (415), JSON syntax and depth (400), schema (422,
unknown keys named)."""

from __future__ import annotations

import re
from typing import Any, TypeVar

import msgspec
from starlette.requests import Request

from shared.errors import BadRequest, Invalid, PayloadTooLarge, UnsupportedMediaType
from shared.nesting import MAX_JSON_DEPTH, depth_exceeds

T = TypeVar("T")
_UNKNOWN = re.compile(r"Object contains unknown field `([^`]*)`(?: - at `([^`]*)`)?")
_AT = re.compile(r" - at `([^`]*)`$")


async def read_body(request: Request, limit: int) -> bytes:
    """Refuses an oversized body from its Content-Length, or while it streams in."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"Request body over {limit} bytes", code="body_too_large",
                              details={"limit_bytes": limit})
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"Request body over {limit} bytes", code="body_too_large",
                                  details={"limit_bytes": limit})
        chunks.append(chunk)
    raw = b"".join(chunks)
    if raw.strip():
        _check_media_type(request.headers.get("content-type"))
    return raw


def _check_media_type(declared: str | None) -> None:
    """A body must say it is JSON (``application/json``, or any ``+json`` type). ``text/plain`` was
    parsed as JSON (issue 15.9); it is what a cross-site form or a header-less fetch sends. A
    body with no Content-Type at all is read as JSON: only non-browser clients send one, and
    that is what they mean."""
    if declared is None:
        return
    media = declared.partition(";")[0].strip().lower()
    if media == "application/json" or (media.startswith("application/") and media.endswith("+json")):
        return
    raise UnsupportedMediaType(f"Content-Type {media or declared!r} is not supported: send application/json",
                               code="unsupported_media_type", details={"content_type": declared[:100],
                                                                       "accepted": ["application/json"]})


def parse(raw: bytes, type_: type[T], *, optional: bool = False) -> T:
    if not raw.strip():
        if optional:
            return msgspec.convert({}, type_)
        raise Invalid("Request body is required", code="body_required")
    try:
        data = msgspec.json.decode(raw)
    except msgspec.DecodeError as exc:
        raise BadRequest(f"Malformed JSON: {exc}", code="malformed_json", details={"error": str(exc)}) from None
    except RecursionError:  # nesting deeper than the decoder itself goes
        raise _too_deep() from None
    if depth_exceeds(data, MAX_JSON_DEPTH):
        raise _too_deep()
    return convert(data, type_)


def _too_deep() -> BadRequest:
    # Refused before anything recursive (validation, storage, filters) sees it (issue 15.3).
    return BadRequest(f"JSON nests deeper than {MAX_JSON_DEPTH} levels", code="json_too_deep",
                      details={"limit_depth": MAX_JSON_DEPTH})


def convert(data: Any, type_: type[T]) -> T:
    try:
        return msgspec.convert(data, type_)
    except msgspec.ValidationError as exc:
        text = str(exc)
        m = _UNKNOWN.match(text)
        if m:
            path = m.group(2) or "$"
            field = m.group(1)
            raise Invalid(
                f"Unknown key {field!r} at {path}; accepted keys: {', '.join(accepted_keys(type_, path))}",
                code="extra_forbidden",
                details={"field": field, "path": path, "accepted_keys": accepted_keys(type_, path)},
            ) from None
        at = _AT.search(text)
        raise Invalid(text, code="invalid_body",
                      details={"path": at.group(1) if at else "$", "reason": _AT.sub("", text)}) from None


def accepted_keys(type_: Any, path: str) -> list[str]:
    """The fields of the struct found at a msgspec error path like ``$.agent_config``."""
    import typing

    current: Any = type_
    for part in [p for p in path.lstrip("$").split(".") if p]:
        if "[" in part:
            return []
        hints = typing.get_type_hints(current) if isinstance(current, type) else {}
        nxt = hints.get(part)
        for arg in typing.get_args(nxt) or (nxt,):
            if isinstance(arg, type) and issubclass(arg, msgspec.Struct):
                current = arg
                break
        else:
            return []
    if isinstance(current, type) and issubclass(current, msgspec.Struct):
        return list(current.__struct_fields__)
    return []
