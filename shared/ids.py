"""Ids with the reference's prefixes, and the one timestamp format."""

from __future__ import annotations

import secrets
import time
from datetime import UTC, datetime

_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz"


def new_id(prefix: str, length: int = 16) -> str:
    """``prefix_`` + random base36; 16 chars is ~82 bits, enough to be unguessable.

    One read of the system's random source per id (``secrets.choice`` per character made one or
    two, ~26 µs per id; the send path makes two): a byte below 252 (7 × 36) is one character,
    uniformly; a byte above is drawn again."""
    chars: list[str] = []
    while len(chars) < length:
        chars += [_ALPHABET[b % 36] for b in secrets.token_bytes(length - len(chars) + 2) if b < 252]
    return prefix + "_" + "".join(chars[:length])


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def iso(ms: int | float) -> str:
    """ISO-8601 UTC with a ``Z``; the SDK's datetime fields parse it."""
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="milliseconds").replace(
        "+00:00", "Z"
    )
