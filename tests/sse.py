"""A strict SSE text parser for tests (the SDK hands back the whole stream as one string)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from shared import cursor


@dataclass(frozen=True)
class Ev:
    id: str | None
    type: str
    data: Any


def parse(text: str) -> list[Ev]:
    out: list[Ev] = []
    for block in text.replace("\r\n", "\n").split("\n\n"):
        fields: dict[str, list[str]] = {}
        for line in block.split("\n"):
            if not line or line.startswith(":"):
                continue
            name, _, value = line.partition(":")
            fields.setdefault(name, []).append(value[1:] if value.startswith(" ") else value)
        if "event" in fields or "data" in fields:
            data = "\n".join(fields.get("data", []))
            out.append(Ev(fields.get("id", [None])[-1], fields.get("event", ["message"])[-1], json.loads(data)))
    return out


def check_stream(events: list[Ev]) -> None:
    """Ids strictly increase as (ms, seq); exactly one terminal event, and it is last."""
    ids = [cursor.parse(e.id) for e in events if e.id is not None and e.type != "reset"]
    assert ids == sorted(ids) and len(set(ids)) == len(ids), ids
    terminals = [e for e in events if e.type in ("done", "error")]
    assert len(terminals) == 1, [e.type for e in events]
    assert events[-1].type in ("done", "error")
