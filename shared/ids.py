"""Ids with the reference's prefixes, and the one timestamp format."""

from __future__ import annotations

import secrets
import time
from datetime import UTC, datetime

_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz"


def new_id(prefix: str, length: int = 16) -> str:
    """``prefix_`` + random base36; 16 chars is ~82 bits, enough to be unguessable."""
    return prefix + "_" + "".join(secrets.choice(_ALPHABET) for _ in range(length))


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def iso(ms: int | float) -> str:
    """ISO-8601 UTC with a ``Z``; the SDK's datetime fields parse it."""
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="milliseconds").replace(
        "+00:00", "Z"
    )
