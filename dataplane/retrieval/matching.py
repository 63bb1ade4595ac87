"""Evaluating filters and sort keys over candidate documents. Pure.

Semantics follow document stores: a condition on a list field holds if it holds for any
element; a missing field equals nothing and is ``ne`` everything; ranges compare numbers with
numbers and strings with strings only (booleans are not numbers here).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgspec

from dataplane.filters import Condition, Logical, Node
from dataplane.models import Document
from dataplane.text import lookup


@dataclass(slots=True)
class Hit:
    doc: Document
    score: float = 0.0


def value_of(hit: Hit, field: str) -> tuple[bool, Any]:
    """``field`` is canonical (``dataplane.filters.canonical_field``)."""
    if field.startswith("metadata."):
        return lookup(hit.doc.metadata, field.removeprefix("metadata."))
    if field == "score":
        return True, hit.score
    return True, getattr(hit.doc, field)


def _number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _fold(v: Any, ci: bool) -> Any:
    return v.lower() if ci and isinstance(v, str) else v


def _same(a: Any, b: Any, ci: bool) -> bool:
    if isinstance(a, bool) != isinstance(b, bool):
        return False
    return bool(_fold(a, ci) == _fold(b, ci))


def _compare(op: str, a: Any, b: Any, ci: bool) -> bool:
    if not ((_number(a) and _number(b)) or (isinstance(a, str) and isinstance(b, str))):
        return False
    a, b = _fold(a, ci), _fold(b, ci)
    match op:
        case "gt":
            return bool(a > b)
        case "gte":
            return bool(a >= b)
        case "lt":
            return bool(a < b)
        case _:
            return bool(a <= b)


def _scalar(op: str, v: Any, target: Any, ci: bool) -> bool:
    match op:
        case "eq":
            return _same(v, target, ci)
        case "in":
            return any(_same(v, t, ci) for t in target)
        case "gt" | "gte" | "lt" | "lte":
            return _compare(op, v, target, ci)
        case "contains":
            return isinstance(v, str) and isinstance(target, str) and _fold(target, ci) in _fold(v, ci)
        case "starts_with":
            return isinstance(v, str) and _fold(v, ci).startswith(_fold(target, ci))
        case "ends_with":
            return isinstance(v, str) and _fold(v, ci).endswith(_fold(target, ci))
    raise AssertionError(op)


def holds(cond: Condition, hit: Hit, ci: bool) -> bool:
    found, v = value_of(hit, cond.field)
    op, target = cond.operator, cond.value
    if op == "exists":
        return found is target
    if op == "is_null":
        return (not found or v is None) is target
    if op in ("ne", "nin"):
        return not holds(Condition(cond.field, "eq" if op == "ne" else "in", target), hit, ci)
    if not found:
        return False
    if isinstance(v, list):
        if op == "eq" and isinstance(target, list):
            return v == target
        return any(_scalar(op, item, target, ci) for item in v)
    return _scalar(op, v, target, ci)


def matches(node: Node, hit: Hit, ci: bool = False) -> bool:
    if isinstance(node, Condition):
        return holds(node, hit, ci)
    assert isinstance(node, Logical)
    if node.op == "AND":
        return all(matches(c, hit, ci) for c in node.children)
    if node.op == "OR":
        return any(matches(c, hit, ci) for c in node.children)
    return not any(matches(c, hit, ci) for c in node.children)


_enc = msgspec.json.Encoder()


def sort_hits(hits: list[Hit], field: str, descending: bool, nulls_last: bool) -> list[Hit]:
    """Stable sort; numbers before strings before anything else (compared as JSON). Documents
    without the field (or with null) go last, whatever the direction, unless ``nulls_last``
    is false (then they lead)."""
    present: list[tuple[tuple[int, Any], Hit]] = []
    absent: list[Hit] = []
    for hit in hits:
        found, v = value_of(hit, field)
        if not found or v is None:
            absent.append(hit)
        elif _number(v) or isinstance(v, bool):
            # compared as they are: Python orders ints and floats exactly, where float() of a
            # 309-digit integer raised OverflowError (issue 15.4)
            present.append(((0, int(v) if isinstance(v, bool) else v), hit))
        elif isinstance(v, str):
            present.append(((1, v), hit))
        else:
            present.append(((2, _enc.encode(v).decode()), hit))
    # the rank must order the same way in both directions: negate it when descending
    present.sort(key=lambda p: ((-p[0][0], p[0][1]) if descending else p[0]), reverse=descending)
    ordered = [h for _, h in present]
    return ordered + absent if nulls_last else absent + ordered
