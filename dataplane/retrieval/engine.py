"""The retrieval engine: an ordered list of stages over one or more collections.

Pure apart from getting documents (a ``DocumentSource``): the gateway runs it as a library for
``POST /v1/retrievers/.../execute`` and the worker's tools run it for the agent. Candidates
start as every document of the chosen collections in insertion order; each stage maps the
candidate list to a new one (``bm25_search`` scores and ranks, ``filter`` keeps, ``sort``
reorders, ``limit`` cuts). The result is the reference's ``ExecuteRetrieverResponse`` subset.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from dataplane import offload
from dataplane.filters import DOC_FIELDS, Node, filter_fields, parse_filters
from dataplane.models import DEFAULT_PAGE, MAX_PAGE, Collection
from dataplane.retrieval.index import SHARED_CACHE, CollectionData, DocumentSource, IndexCache
from dataplane.retrieval.matching import Hit, matches, sort_hits
from dataplane.stages import Bm25, Filter, Limit, Sort, Stage, bind, input_values, stage_error, validate
from shared import tracing
from shared.errors import Invalid
from shared.ids import new_id


class Source(DocumentSource, Protocol):
    async def get_collection(self, ns_id: str, identifier: str) -> Collection: ...


@dataclass(frozen=True, slots=True)
class Plan:
    """What a run needs, resolved: the collections' data and the bound stages."""

    collections: list[CollectionData]
    stages: list[Stage]
    filters: Node | None


def _ms(since: float) -> float:
    return round((time.perf_counter() - since) * 1000, 3)


def _known(field: str, data: list[CollectionData]) -> bool:
    return field in DOC_FIELDS or any(field.removeprefix("metadata.") in d.fields for d in data)


class Engine:
    def __init__(self, source: Source, cache: IndexCache | None = None) -> None:
        self.source = source
        self.cache = cache or SHARED_CACHE

    async def resolve(self, ns_id: str, identifiers: Sequence[str]) -> list[Collection]:
        """The collections named (by name or id), once each, in the order given."""
        if not identifiers:
            raise Invalid("collection_identifiers must name at least one collection", code="invalid_collections")
        cols: dict[str, Collection] = {}
        for identifier in identifiers:
            col = await self.source.get_collection(ns_id, identifier)
            cols.setdefault(col.collection_id, col)
        return list(cols.values())

    async def text_fields(self, ns_id: str, col_ids: Sequence[str]) -> list[str]:
        """Every top-level field holding text in some document of these collections."""
        data = [await self.cache.load(self.source, ns_id, c) for c in col_ids]
        return sorted({f for d in data for f in d.text_fields})

    async def plan(self, ns_id: str, col_ids: Sequence[str], stages: list[dict[str, Any]],
                   inputs: dict[str, Any] | None = None, input_schema: dict[str, Any] | None = None,
                   filters: dict[str, Any] | None = None) -> Plan:
        """Binds the stages and checks every field they name against the documents: a field
        no document of these collections has is refused (if there are documents at all)."""
        bound = bind(validate(stages), input_values(input_schema, inputs))
        tree = parse_filters(filters) if filters else None
        data = [await self.cache.load(self.source, ns_id, c) for c in col_ids]
        if any(d.docs for d in data):
            for stage in bound:
                for name in _fields_of(stage):
                    if not _known(name, data):
                        raise stage_error(stage.index, stage.name, stage.stage_id,
                                          f"no document in the collections has field {name!r}", field=name,
                                          known_fields=sorted({f for d in data for f in d.fields}))
            for name in filter_fields(tree) if tree else []:
                if not _known(name, data):
                    raise Invalid(f"filters: no document in the collections has field {name!r}",
                                  code="invalid_filters", details={"field": name})
        return Plan(data, bound, tree)

    @tracing.traced("retriever.execute")
    async def execute(self, ns_id: str, collection_identifiers: Sequence[str], stages: list[dict[str, Any]], *,
                      inputs: dict[str, Any] | None = None, input_schema: dict[str, Any] | None = None,
                      filters: dict[str, Any] | None = None, limit: int | None = None, offset: int = 0,
                      retriever_id: str | None = None) -> dict[str, Any]:
        """Runs a pipeline and answers with the ``ExecuteRetrieverResponse`` shape."""
        started = time.perf_counter()
        limit = DEFAULT_PAGE if limit is None else limit
        if not 1 <= limit <= MAX_PAGE or offset < 0:
            raise Invalid(f"limit must be from 1 to {MAX_PAGE} and offset >= 0", code="invalid_pagination",
                          details={"limit": limit, "offset": offset})
        cols = await self.resolve(ns_id, collection_identifiers)
        plan = await self.plan(ns_id, [c.collection_id for c in cols], stages, inputs, input_schema, filters)
        # ``None`` stands for "every document of the collections, in order": a leading BM25 stage
        # then scores the whole index at once instead of one Python object per document.
        hits: Sequence[Hit] | None = None
        if plan.filters is not None:  # execute-time filters narrow the candidates before any stage
            hits = await offload.run(sum(len(d.docs) for d in plan.collections), _filtered,
                                     _all_hits(plan.collections), plan.filters, False)
        by_id = {d.collection_id: d for d in plan.collections}
        statistics: dict[str, Any] = {}
        for stage in plan.stages:
            t0 = time.perf_counter()
            before = sum(len(d.docs) for d in plan.collections) if hits is None else len(hits)
            hits = await self._run(stage, hits, by_id)
            statistics[stage.name] = {
                "input_count": before, "output_count": len(hits), "duration_ms": _ms(t0),
                "efficiency": round(len(hits) / before, 4) if before else 0.0,
                "metadata": {"stage_id": stage.stage_id, "stage_index": stage.index},
            }
        if hits is None:
            hits = _all_hits(plan.collections)
        page = hits[offset: offset + limit]
        total_ms = _ms(started)
        warnings = [f"collection {d.collection_id} has no documents" for d in plan.collections if not d.docs]
        result: dict[str, Any] = {
            "execution_id": new_id("exec"),
            "status": "completed",
            "retriever_id": retriever_id,
            "documents": [{"document_id": h.doc.document_id, "collection_id": h.doc.collection_id,
                           "score": round(h.score, 6), "metadata": h.doc.metadata} for h in page],
            "pagination": {"method": "offset", "limit": limit, "offset": offset, "page_size": limit,
                           "page_number": offset // limit + 1, "returned": len(page), "total": len(hits),
                           "has_next": offset + limit < len(hits)},
            "stage_statistics": {"stages": statistics, "total_time_ms": total_ms},
            "budget": {"credits_used": 0, "time_used_ms": total_ms},
            "cache_hit": False,
        }
        if warnings:
            result["warnings"] = warnings
        return result

    async def _run(self, stage: Stage, hits: Sequence[Hit] | None,
                   data: dict[str, CollectionData]) -> Sequence[Hit]:
        p = stage.params
        if isinstance(p, Bm25):
            if hits is None:  # every document: rank the positive scores as arrays, build Hits lazily
                scored_arrays = []
                for d in data.values():
                    index = await d.index(p.fields if p.fields is not None else d.text_fields)
                    scored_arrays.append((d, await offload.run(len(d.docs), index.scores, p.query)))
                return await offload.run(sum(len(d.docs) for d in data.values()), Ranked.of, scored_arrays, p.top_k)
            scored: list[Hit] = []
            by_collection: dict[str, list[Hit]] = {}
            for h in hits:
                by_collection.setdefault(h.doc.collection_id, []).append(h)
            for col_id, group in by_collection.items():
                d = data[col_id]
                index = await d.index(p.fields if p.fields is not None else d.text_fields)
                scores = await offload.run(len(d.docs), index.scores, p.query)
                position = d.positions()
                for h in group:
                    s = float(scores[position[h.doc.document_id]])
                    if s > 0:
                        scored.append(Hit(h.doc, s))
            scored.sort(key=lambda h: -h.score)  # stable: ties keep their order
            return scored[: p.top_k] if p.top_k else scored
        if hits is None:
            hits = _all_hits(list(data.values()))
        if isinstance(p, Filter):
            return await offload.run(len(hits), _filtered, hits, p.tree, p.case_insensitive)
        if isinstance(p, Sort):
            return await offload.run(len(hits), sort_hits, list(hits), p.field, p.descending, p.nulls_last)
        assert isinstance(p, Limit)
        return hits[p.offset: p.offset + p.n]


class Ranked(Sequence[Hit]):
    """BM25 matches of whole collections, best first, as arrays: a ``Hit`` is built only for
    the positions a later stage or the page actually reads (a 100,000-document collection
    usually needs ten)."""

    def __init__(self, docs: list[Any], rows: np.ndarray, scores: np.ndarray) -> None:
        self._docs, self._rows, self._scores = docs, rows, scores  # rows index into docs

    @classmethod
    def of(cls, scored: list[tuple[CollectionData, np.ndarray]], top_k: int | None) -> Ranked:
        docs: list[Any] = []
        rows, scores = [], []
        for d, s in scored:
            matched = np.flatnonzero(s > 0)
            rows.append(matched + len(docs))
            scores.append(s[matched])
            docs.extend(d.docs)
        all_rows = np.concatenate(rows) if rows else np.zeros(0, dtype=np.int64)
        all_scores = np.concatenate(scores) if scores else np.zeros(0, dtype=np.float32)
        order = np.argsort(-all_scores, kind="stable")  # stable: ties keep collection, then document order
        if top_k:
            order = order[:top_k]
        return cls(docs, all_rows[order], all_scores[order])

    def __len__(self) -> int:
        return len(self._rows)

    def __getitem__(self, i):  # type: ignore[no-untyped-def]
        if isinstance(i, slice):
            return [Hit(self._docs[r], float(sc)) for r, sc in zip(self._rows[i].tolist(),
                                                                  self._scores[i].tolist(), strict=True)]
        return Hit(self._docs[int(self._rows[i])], float(self._scores[i]))

    def __iter__(self):  # type: ignore[no-untyped-def]
        for r, sc in zip(self._rows.tolist(), self._scores.tolist(), strict=True):
            yield Hit(self._docs[r], float(sc))


def _filtered(hits: Sequence[Hit], tree: Node, case_insensitive: bool) -> list[Hit]:
    return [h for h in hits if matches(tree, h, case_insensitive)]


def _all_hits(collections: Sequence[CollectionData]) -> list[Hit]:
    return [Hit(doc) for d in collections for doc in d.docs]


def _fields_of(stage: Stage) -> list[str]:
    p = stage.params
    if isinstance(p, Bm25):
        return ["metadata." + f for f in p.fields or ()]
    if isinstance(p, Filter):
        return filter_fields(p.tree)
    if isinstance(p, Sort):
        return [p.field]
    return []
