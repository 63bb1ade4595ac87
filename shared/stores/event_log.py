"""Event logs as JSON lines: the pure half of ``agentstream events`` (no Redis, no terminal).

One line per stored event: ``{"id", "type", "payload", "timestamp", "message_id"}``. The payload
is the stream entry's ``d`` bytes embedded verbatim (``msgspec.Raw``), so an export replays
byte-for-byte what the API streamed.
"""

from __future__ import annotations

import re
from pathlib import Path

import msgspec

from shared import cursor
from shared.ids import iso


class LogLine(msgspec.Struct, frozen=True):
    id: str
    type: str
    payload: msgspec.Raw
    # Defaults so a hand-written log with only id/type/payload still replays.
    timestamp: str = ""
    message_id: str = ""


class LogFileError(ValueError):
    """An export file that cannot be read or has a malformed line; the message names which."""


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(LogLine)
# What the gateway would accept as an SSE ``event:`` name: no way to forge another field.
_EVENT_TYPE = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")


def line_of(event_id: bytes | str, type_: bytes | str, payload: bytes, message_id: str) -> LogLine:
    eid = event_id.decode() if isinstance(event_id, bytes) else event_id
    return LogLine(
        id=eid,
        type=type_.decode() if isinstance(type_, bytes) else type_,
        payload=msgspec.Raw(payload),
        timestamp=iso(cursor.parse(eid)[0]),
        message_id=message_id,
    )


def encode_line(line: LogLine) -> bytes:
    return _encoder.encode(line) + b"\n"


def decode_line(raw: bytes) -> LogLine:
    """One line, validated: a well-formed stream id and a type that is safe as an SSE field."""
    line = _decoder.decode(raw)
    cursor.parse(line.id)
    if not _EVENT_TYPE.match(line.type):
        raise msgspec.ValidationError(f"malformed event type {line.type[:64]!r}")
    return line


def read_file(path: str | Path) -> list[LogLine]:
    """Every line of an export file; the first bad line fails the whole file, by number."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise LogFileError(f"cannot read {path}: {exc.strerror or exc}") from None
    out: list[LogLine] = []
    for number, raw in enumerate(data.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            out.append(decode_line(raw))
        except (msgspec.DecodeError, msgspec.ValidationError, cursor.CursorError) as exc:
            raise LogFileError(f"{path}: line {number}: {exc}") from None
    return out


def delays_s(lines: list[LogLine], speed: float | None) -> list[float]:
    """Seconds to wait before each line: the original gaps between ids, divided by ``speed``.

    ``None`` is ``--speed max``. Gaps are never negative: a session export jumps back in time
    when a message's events interleave with the next message's.
    """
    if speed is None or not lines:
        return [0.0] * len(lines)
    times = [cursor.parse(line.id)[0] for line in lines]
    return [0.0] + [max(0, b - a) / 1000 / speed for a, b in zip(times, times[1:], strict=False)]


def parse_speed(text: str) -> float | None:
    if text == "max":
        return None
    try:
        speed = float(text)
    except ValueError:
        raise ValueError(f"speed must be a positive number or 'max', not {text!r}") from None
    if not speed > 0 or speed == float("inf"):
        raise ValueError(f"speed must be a positive number or 'max', not {text!r}")
    return speed


def progress_bar(done: int, total: int, width: int = 30) -> str:
    """``[#####.....]  50% 5/10 events``; ``total`` is an estimate and may be passed."""
    total = max(total, done)
    part = done / total if total else 1.0
    filled = int(width * part)
    return f"[{'#' * filled}{'.' * (width - filled)}] {int(100 * part):3d}% {done}/{total} events"
