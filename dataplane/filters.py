"""Metadata filters: the condition tree that filter stages and execute-time ``filters`` share.

Mixpeek's LogicalOperator shape: a condition ``{field, operator, value}`` or
``{"AND"|"OR"|"NOT": [nodes]}``. Parsed here without data; evaluated by the engine.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from shared.errors import Invalid
from shared.nesting import MAX_FILTER_DEPTH

DOC_FIELDS = ("document_id", "collection_id", "score", "created_at")
OPERATORS = ("eq", "ne", "gt", "gte", "lt", "lte", "in", "nin", "contains", "starts_with", "ends_with",
             "exists", "is_null")
LOGICAL = ("AND", "OR", "NOT")
ErrorFactory = Callable[[str], Invalid]


@dataclass(frozen=True, slots=True)
class Condition:
    field: str  # canonical: a DOC_FIELDS name or "metadata.<path>"
    operator: str
    value: Any


@dataclass(frozen=True, slots=True)
class Logical:
    op: str  # AND | OR | NOT (NOT: none of the children holds)
    children: tuple[Condition | Logical, ...]


Node = Condition | Logical


def canonical_field(path: str) -> str:
    """``title`` and ``metadata.title`` name the same field; the document's own keys stay bare."""
    if path in DOC_FIELDS or path.startswith("metadata."):
        return path
    return "metadata." + path


def parse_tree(obj: Any, error: ErrorFactory, depth: int = 1) -> Node:
    """A filter tree: a condition ``{field, operator, value}`` or ``{AND|OR|NOT: [nodes]}``, at
    most ``MAX_FILTER_DEPTH`` levels deep (parsing and evaluating it recurse: issue 15.3)."""
    if depth > MAX_FILTER_DEPTH:
        raise error(f"filters nest deeper than {MAX_FILTER_DEPTH} levels")
    if not isinstance(obj, dict):
        raise error(f"a filter must be an object, got {type(obj).__name__}")
    logical = [k for k in obj if k in LOGICAL]
    if not logical:
        return parse_condition(obj, error)
    extra = set(obj) - set(LOGICAL)
    if extra:
        raise error(f"unknown keys {sorted(extra)} next to {logical[0]}")
    nodes: list[Node] = []
    for op in logical:
        items = obj[op]
        if not isinstance(items, list) or not items:
            raise error(f"{op} must be a non-empty list of conditions")
        nodes.append(Logical(op, tuple(parse_tree(item, error, depth + 1) for item in items)))
    return nodes[0] if len(nodes) == 1 else Logical("AND", tuple(nodes))


def parse_condition(obj: dict[str, Any], error: ErrorFactory) -> Condition:
    unknown = set(obj) - {"field", "operator", "value"}
    if unknown:
        raise error(f"unknown keys {sorted(unknown)} in a condition; a condition has field, operator, value")
    field, operator, value = obj.get("field"), obj.get("operator", "eq"), obj.get("value")
    if not isinstance(field, str) or not field or any(not p for p in field.split(".")):
        raise error(f"a condition needs a field path like 'metadata.category', got {field!r}")
    if operator not in OPERATORS:
        raise error(f"unknown operator {operator!r}; accepted: {', '.join(OPERATORS)}")
    if operator in ("in", "nin") and not isinstance(value, list):
        raise error(f"operator {operator!r} needs a list value, got {type(value).__name__}")
    if operator in ("gt", "gte", "lt", "lte") and (isinstance(value, bool) or not isinstance(value, int | float | str)):
        raise error(f"operator {operator!r} needs a number or string value, got {value!r}")
    if operator in ("starts_with", "ends_with") and not isinstance(value, str):
        raise error(f"operator {operator!r} needs a string value, got {value!r}")
    if operator in ("exists", "is_null"):
        if value is None:
            value = True
        elif not isinstance(value, bool):
            raise error(f"operator {operator!r} takes true or false, got {value!r}")
    elif value is None and operator not in ("eq", "ne"):
        raise error(f"operator {operator!r} needs a value")
    return Condition(canonical_field(field), operator, value)


def filter_fields(node: Node) -> list[str]:
    if isinstance(node, Condition):
        return [node.field]
    return [f for child in node.children for f in filter_fields(child)]


def parse_filters(obj: Any) -> Node:
    """Execute-time ``filters`` (not inside a stage): refused as a whole with the reason."""
    def error(reason: str) -> Invalid:
        return Invalid(f"filters: {reason}", code="invalid_filters", details={"reason": reason})

    return parse_tree(obj, error)
