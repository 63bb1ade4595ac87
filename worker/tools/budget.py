"""Tool results cut to a budget, so a search that finds huge documents still answers.

Every event is capped (``AGENTSTREAM_MAX_EVENT_BYTES``); a ``tool_result`` above the cap used to
end the whole message with ``event_too_large`` (issue 15.9). Instead, each returned document's
metadata is shortened (long strings clipped, long lists cut) until the result fits, and the
output says so: ``truncated: true`` on the result and on each document that was cut. Pure.
"""

from __future__ import annotations

from typing import Any

import msgspec

_enc = msgspec.json.Encoder()
MARK = "…"


def for_event(max_event_bytes: int) -> int:
    """The budget of a tool's output inside a ``tool_result`` event of at most ``max_event_bytes``
    (the event's other fields take well under a kilobyte)."""
    return max(max_event_bytes - 1024, max_event_bytes // 2)


def size(value: Any) -> int:
    return len(_enc.encode(value))


def clip(value: Any, chars: int) -> Any:
    """Strings longer than ``chars`` cut (with a mark), lists longer than ``chars`` items cut."""
    if isinstance(value, str):
        return value if len(value) <= chars else value[:chars] + MARK
    if isinstance(value, dict):
        return {k: clip(v, chars) for k, v in value.items()}
    if isinstance(value, list):
        return [clip(v, chars) for v in value[:chars]]
    return value


def fit(output: Any, budget_bytes: int) -> Any:
    """``output`` unchanged if it fits; otherwise its documents' metadata clipped to fit."""
    if size(output) <= budget_bytes or not isinstance(output, dict):
        return output
    docs = output.get("documents")
    if not isinstance(docs, list) or not docs:
        return _clip_whole(output, budget_bytes)
    rest = size({k: v for k, v in output.items() if k != "documents"}) + 64
    per_doc = max(256, (budget_bytes - rest) // len(docs))
    trimmed = [_fit_document(d, per_doc) for d in docs]
    out = {**output, "documents": trimmed, "truncated": True}
    if size(out) > budget_bytes:  # the documents' own fields were not the bulk: drop from the end
        while trimmed and size(out) > budget_bytes:
            trimmed.pop()
            out = {**output, "documents": trimmed, "truncated": True}
    return out


def _fit_document(doc: Any, budget_bytes: int) -> Any:
    if not isinstance(doc, dict) or size(doc) <= budget_bytes:
        return doc
    metadata = doc.get("metadata")
    base = {k: v for k, v in doc.items() if k != "metadata"}
    lo, hi = 0, max(_longest(metadata), 1)
    best = clip(metadata, 0)
    while lo <= hi:  # the longest clip length whose document fits
        mid = (lo + hi) // 2
        candidate = clip(metadata, mid)
        if size({**base, "metadata": candidate, "truncated": True}) <= budget_bytes:
            best, lo = candidate, mid + 1
        else:
            hi = mid - 1
    return {**base, "metadata": best, "truncated": True}


def _longest(value: Any) -> int:
    if isinstance(value, str):
        return len(value)
    if isinstance(value, dict):
        return max((_longest(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return max([len(value), *(_longest(v) for v in value)])
    return 0


def _clip_whole(output: dict[str, Any], budget_bytes: int) -> Any:
    lo, hi = 0, max(_longest(output), 1)
    best = clip(output, 0)
    while lo <= hi:
        mid = (lo + hi) // 2
        candidate = clip(output, mid)
        if size({**candidate, "truncated": True}) <= budget_bytes:
            best, lo = candidate, mid + 1
        else:
            hi = mid - 1
    return {**best, "truncated": True}
