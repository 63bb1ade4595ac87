"""Stream entry ids: the SSE ``id:`` and the resume cursor.

Ids compare as (milliseconds, sequence) tuples, never as strings: "10-0" > "9-0".
"""

from __future__ import annotations

import re

# ASCII digits only, the whole text: ``\d`` also takes other scripts' digits ("١٢٣") and
# ``$`` a trailing newline (issue 15.9)
_ID = re.compile(r"([0-9]{1,20})(?:-([0-9]{1,20}))?")
START = (0, 0)


class CursorError(ValueError):
    """A malformed stream id (the API answers 400)."""


def parse(raw: str | bytes) -> tuple[int, int]:
    text = raw.decode() if isinstance(raw, bytes) else raw
    m = _ID.fullmatch(text)
    if not m:
        raise CursorError(f"malformed event id {text[:64]!r}: expected <ms>-<seq>")
    ms, seq = int(m.group(1)), int(m.group(2) or 0)
    if ms >= 2**64 or seq >= 2**64:
        raise CursorError(f"event id {text[:64]!r} out of range")
    return ms, seq


def fmt(cursor: tuple[int, int]) -> str:
    return f"{cursor[0]}-{cursor[1]}"


def of_entry(raw: bytes) -> tuple[int, int]:
    """A stream entry id straight from Redis (always well formed): the hot-path parse."""
    ms, _, seq = raw.partition(b"-")
    return int(ms), int(seq)
