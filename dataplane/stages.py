"""The retriever stage grammar: what a stage may say, checked without any data.

A contract, so it lives in ``shared/``: the data plane checks a retriever's stages when one is
saved, and the engine (``dataplane/retrieval``) binds the same stages to inputs and runs them.
A stage is ``{"stage_name", "config": {"stage_id", "parameters"}}`` (Mixpeek's shape). Any
parameter may be a ``{{INPUT.name}}`` template; it is type-checked once the inputs are bound.
Every refusal is an ``Invalid`` naming the stage's index and name, and why.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from dataplane.filters import (
    DOC_FIELDS,
    OPERATORS,
    Logical,
    Node,
    canonical_field,
    parse_condition,
    parse_tree,
)
from shared.errors import Invalid

STAGE_IDS = ("bm25_search", "filter", "sort", "limit")
# Mixpeek's names for the same stages, so pipelines written for it keep working
ALIASES = {"attribute_filter": "filter", "sort_attribute": "sort", "text_search": "bm25_search"}
MAX_STAGES = 20
MAX_TOP_K = 10_000
_TEMPLATE = re.compile(r"\{\{\s*(?:INPUT|inputs?)\.([A-Za-z_][A-Za-z0-9_]*)\s*\}\}", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Bm25:
    query: str
    fields: tuple[str, ...] | None  # metadata paths; None = every text field
    top_k: int | None


@dataclass(frozen=True, slots=True)
class Filter:
    tree: Node
    case_insensitive: bool


@dataclass(frozen=True, slots=True)
class Sort:
    field: str
    descending: bool
    nulls_last: bool


@dataclass(frozen=True, slots=True)
class Limit:
    n: int
    offset: int


@dataclass(frozen=True, slots=True)
class Stage:
    index: int
    name: str
    stage_id: str
    params: Bm25 | Filter | Sort | Limit


class _Templated:
    """A parameter still holding a template: its type is checked once inputs are bound."""


TEMPLATED = _Templated()


def stage_error(index: int, name: str | None, stage_id: str | None, reason: str, **extra: Any) -> Invalid:
    label = f"Stage {index}" + (f" ({name!r}" + (f", {stage_id}" if stage_id else "") + ")" if name else "")
    return Invalid(f"{label}: {reason}", code="invalid_stage",
                   details={"stage_index": index, "stage_name": name, "stage_id": stage_id,
                            "reason": reason, **extra})


def normalize(raw: Any) -> list[dict[str, Any]]:
    """The canonical form of a stage list; the flat ``{stage_id, parameters}`` shorthand is
    accepted and rewritten. Structure only: see ``validate`` for the parameters."""
    if not isinstance(raw, list) or not raw:
        raise Invalid("stages must be a non-empty list", code="invalid_stages")
    if len(raw) > MAX_STAGES:
        raise Invalid(f"At most {MAX_STAGES} stages are allowed, got {len(raw)}", code="invalid_stages")
    out: list[dict[str, Any]] = []
    seen: set[str] = set()
    for i, stage in enumerate(raw):
        if not isinstance(stage, dict):
            raise stage_error(i, None, None, "a stage must be an object {stage_name, config: {stage_id, parameters}}")
        config = stage.get("config")
        if config is None and "stage_id" in stage:
            config = {"stage_id": stage["stage_id"], "parameters": stage.get("parameters", {})}
            stage = {k: v for k, v in stage.items() if k not in ("stage_id", "parameters")}
        name = stage.get("stage_name", config.get("stage_id") if isinstance(config, dict) else None)
        if not isinstance(name, str) or not name.strip():
            raise stage_error(i, None, None, "stage_name must be a non-empty string")
        unknown = set(stage) - {"stage_name", "config", "description", "stage_type"}
        if unknown:
            raise stage_error(i, name, None, f"unknown keys {sorted(unknown)}; a stage has stage_name, config "
                              "and optionally description")
        if not isinstance(config, dict):
            raise stage_error(i, name, None, "config must be an object {stage_id, parameters}")
        unknown = set(config) - {"stage_id", "parameters"}
        if unknown:
            raise stage_error(i, name, None, f"unknown config keys {sorted(unknown)}; config has stage_id and "
                              "parameters")
        stage_id = config.get("stage_id")
        if not isinstance(stage_id, str) or ALIASES.get(stage_id, stage_id) not in STAGE_IDS:
            raise stage_error(i, name, None, f"unknown stage_id {stage_id!r}; accepted: {', '.join(STAGE_IDS)}",
                              accepted=list(STAGE_IDS))
        params = config.get("parameters", {})
        if params is None:
            params = {}
        if not isinstance(params, dict):
            raise stage_error(i, name, stage_id, "parameters must be an object")
        if name in seen:
            raise stage_error(i, name, stage_id, "stage_name must be unique within a retriever")
        seen.add(name)
        entry: dict[str, Any] = {"stage_name": name,
                                 "config": {"stage_id": ALIASES.get(stage_id, stage_id), "parameters": params}}
        if isinstance(stage.get("description"), str):
            entry["description"] = stage["description"]
        out.append(entry)
    return out


def validate(raw: Any) -> list[dict[str, Any]]:
    """Normalize and check every parameter that is not a template. Returns the canonical stages."""
    stages = normalize(raw)
    for i, stage in enumerate(stages):
        _parse(i, stage, static=True)
    return stages


def bind(stages: list[dict[str, Any]], inputs: dict[str, Any]) -> list[Stage]:
    """Canonical stages with their templates filled from ``inputs``, parsed for running."""
    bound = []
    for i, stage in enumerate(stages):
        params = stage["config"]["parameters"]
        rendered = render(params, inputs, i, stage["stage_name"], stage["config"]["stage_id"])
        spec = {**stage, "config": {**stage["config"], "parameters": rendered}}
        parsed = _parse(i, spec, static=False)
        assert parsed is not None
        bound.append(parsed)
    return bound


def render(value: Any, inputs: dict[str, Any], index: int, name: str, stage_id: str) -> Any:
    if isinstance(value, str):
        def value_of(m: re.Match[str]) -> Any:
            key = m.group(1)
            if key not in inputs:
                raise stage_error(index, name, stage_id, f"template {m.group(0)} needs input {key!r}, which "
                                  "was not given", input=key)
            return inputs[key]

        whole = _TEMPLATE.fullmatch(value.strip())
        if whole:  # the whole string is one template: keep the input's own type
            return value_of(whole)
        return _TEMPLATE.sub(lambda m: str(value_of(m)), value)
    if isinstance(value, list):
        return [render(v, inputs, index, name, stage_id) for v in value]
    if isinstance(value, dict):
        return {k: render(v, inputs, index, name, stage_id) for k, v in value.items()}
    return value


def template_inputs(value: Any) -> set[str]:
    """The input names a value's templates refer to."""
    if isinstance(value, str):
        return set(_TEMPLATE.findall(value))
    if isinstance(value, list):
        return set().union(*(template_inputs(v) for v in value))
    if isinstance(value, dict):
        return set().union(*(template_inputs(v) for v in value.values()))
    return set()


def has_template(value: Any) -> bool:
    if isinstance(value, str):
        return bool(_TEMPLATE.search(value))
    if isinstance(value, list):
        return any(has_template(v) for v in value)
    if isinstance(value, dict):
        return any(has_template(v) for v in value.values())
    return False


class _Reader:
    def __init__(self, index: int, stage: dict[str, Any], static: bool) -> None:
        self.index, self.name = index, stage["stage_name"]
        self.stage_id = stage["config"]["stage_id"]
        self.params: dict[str, Any] = stage["config"]["parameters"]
        self.static = static
        self.accepted: list[str] = []

    def error(self, reason: str, parameter: str | None = None) -> Invalid:
        extra = {"parameter": parameter} if parameter else {}
        return stage_error(self.index, self.name, self.stage_id, reason, **extra)

    def take(self, key: str, kind: type | tuple[type, ...], what: str, required: bool = False,
             default: Any = None) -> Any:
        self.accepted.append(key)
        if key not in self.params or self.params[key] is None:
            if required:
                raise self.error(f"parameter {key!r} is required ({what})", key)
            return default
        value = self.params[key]
        if self.static and has_template(value):
            return TEMPLATED
        if not isinstance(value, kind) or (isinstance(value, bool) and bool not in _tuple(kind)):
            raise self.error(f"parameter {key!r} must be {what}, got {type(value).__name__}", key)
        return value

    def done(self) -> None:
        unknown = sorted(set(self.params) - set(self.accepted))
        if unknown:
            raise self.error(f"unknown parameters {unknown}; accepted: {', '.join(self.accepted)}", unknown[0])


def _tuple(kind: type | tuple[type, ...]) -> tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)


def _field(r: _Reader, value: Any, key: str) -> str:
    if value is TEMPLATED:
        return ""
    if not isinstance(value, str) or not value or any(not p for p in value.split(".")) or value == "metadata":
        raise r.error(f"{key} must be a field path like 'metadata.category', got {value!r}", key)
    return canonical_field(value)


def _parse(index: int, stage: dict[str, Any], static: bool) -> Stage | None:
    r = _Reader(index, stage, static)
    params: Bm25 | Filter | Sort | Limit
    match r.stage_id:
        case "bm25_search":
            query = r.take("query", str, "the text to search for", required=True)
            if query is not TEMPLATED and not query.strip():
                raise r.error("parameter 'query' is empty", "query")
            fields = r.take("fields", list, "a list of metadata field names")
            if isinstance(fields, list):
                if not fields:
                    raise r.error("parameter 'fields' must name at least one field (or be left out for all "
                                  "text fields)", "fields")
                fields = [_field(r, f, "fields") for f in fields]
                if any(f in DOC_FIELDS for f in fields):
                    raise r.error("fields must be metadata fields, not document_id/collection_id/score/"
                                  "created_at", "fields")
            top_k = r.take("top_k", int, f"an integer from 1 to {MAX_TOP_K}")
            if isinstance(top_k, int) and not 1 <= top_k <= MAX_TOP_K:
                raise r.error(f"parameter 'top_k' must be from 1 to {MAX_TOP_K}", "top_k")
            params = Bm25(query, tuple(f.removeprefix("metadata.") for f in fields)
                          if isinstance(fields, list) else None, top_k)
        case "filter":
            conditions = r.take("conditions", (dict, list), "an object {AND|OR|NOT: [...]} or a list (AND)")
            if isinstance(conditions, list):
                conditions = {"AND": conditions}
            field = r.take("field", str, "a field path like 'metadata.category'")
            operator = r.take("operator", str, f"one of {', '.join(OPERATORS)}", default="eq")
            value = r.params.get("value")
            r.accepted.append("value")
            value_templated = static and has_template(value)
            case_insensitive = r.take("case_insensitive", bool, "true or false", default=False)
            if conditions is not None and field is not None:
                raise r.error("give either 'conditions' or 'field'/'operator'/'value', not both", "conditions")
            if conditions is None and field is None:
                raise r.error("parameter 'field' (with 'operator' and 'value') or 'conditions' is required",
                              "field")
            if any(x is TEMPLATED for x in (conditions, field, operator)) or value_templated:
                tree: Node = Logical("AND", ())  # checked when bound; static checks end here
            elif conditions is not None:
                tree = parse_tree(conditions, r.error)
            else:
                tree = parse_condition({"field": field, "operator": operator, "value": value}, r.error)
            params = Filter(tree, case_insensitive is True)
        case "sort":
            field = _field(r, r.take("field", str, "a field path like 'metadata.year' or 'score'",
                                     required=True), "field")
            direction = r.take("direction", str, "'asc' or 'desc'", default="desc")
            if direction is not TEMPLATED and direction not in ("asc", "desc"):
                raise r.error(f"parameter 'direction' must be 'asc' or 'desc', got {direction!r}", "direction")
            nulls_last = r.take("nulls_last", bool, "true or false", default=True)
            params = Sort(field, direction == "desc", nulls_last is not False)
        case _:  # limit
            n = r.take("n", int, "an integer >= 1", required=True)
            if n is not TEMPLATED and n < 1:
                raise r.error("parameter 'n' must be >= 1", "n")
            offset = r.take("offset", int, "an integer >= 0", default=0)
            if offset is not TEMPLATED and offset < 0:
                raise r.error("parameter 'offset' must be >= 0", "offset")
            params = Limit(n, offset)
    r.done()
    return None if static else Stage(index, r.name, r.stage_id, params)


def input_values(input_schema: dict[str, Any] | None, inputs: dict[str, Any] | None) -> dict[str, Any]:
    """Inputs with the schema's defaults filled in; a required input that is missing is refused."""
    values = dict(inputs or {})
    for key, spec in (input_schema or {}).items():
        if key in values or not isinstance(spec, dict):
            continue
        if "default" in spec and spec["default"] is not None:
            values[key] = spec["default"]
        elif spec.get("required"):
            raise Invalid(f"Input {key!r} is required by the retriever's input_schema", code="missing_input",
                          details={"input": key, "input_schema": input_schema})
    return values
