"""A collection's documents as the engine holds them, with their BM25 indexes, cached per version.

The cache key is ``(namespace, collection_id, version)``; the version is bumped by every
document write in any process (``dataplane/service.py``), so a lookup after a write misses and
the index is rebuilt from the documents read together with that version. Nothing is ever
invalidated in place.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Protocol

import bm25s
import numpy as np

from dataplane import offload
from dataplane.models import Document
from dataplane.text import document_text, field_paths, is_text, tokenize
from shared.lru import LRU

log = logging.getLogger("agentstream.retrieval")
CACHE_SIZE = 128  # collections (per process); an entry costs about its documents' size


class DocumentSource(Protocol):
    """Where the engine gets documents (``dataplane.service.DataPlane`` in production)."""

    async def collection_version(self, ns_id: str, col_id: str) -> int: ...

    async def documents_for(self, ns_id: str, col_id: str) -> tuple[int, list[Document]]: ...


class Bm25Index:
    """BM25 (bm25s, Lucene variant) over the text of chosen fields of every document."""

    def __init__(self, docs: list[Document], fields: tuple[str, ...]) -> None:
        corpus = [tokenize(document_text(d.metadata, fields)) for d in docs]
        self.size = len(docs)
        self.model: bm25s.BM25 | None = None
        if any(corpus):  # bm25s divides by the mean length: an all-empty corpus cannot be indexed
            self.model = bm25s.BM25()
            self.model.index(corpus, show_progress=False)

    def scores(self, query: str) -> np.ndarray:
        terms = list(dict.fromkeys(tokenize(query)))
        if self.model is None or not terms:
            return np.zeros(self.size, dtype=np.float32)
        return np.asarray(self.model.get_scores(terms), dtype=np.float32)


@dataclass
class CollectionData:
    collection_id: str
    version: int
    docs: list[Document]
    fields: frozenset[str]  # every metadata path some document has
    text_fields: tuple[str, ...]  # top-level fields holding text in some document
    indexes: dict[tuple[str, ...], Bm25Index] = field(default_factory=dict)
    _positions: dict[str, int] | None = None

    @classmethod
    def build(cls, col_id: str, version: int, docs: list[Document]) -> CollectionData:
        paths = frozenset(p for d in docs for p in field_paths(d.metadata))
        text = tuple(sorted({k for d in docs for k, v in d.metadata.items() if is_text(v)}))
        return cls(col_id, version, docs, paths, text)

    def positions(self) -> dict[str, int]:
        """document_id -> position in ``docs`` (the index's row), built once per version."""
        if self._positions is None:
            self._positions = {doc.document_id: i for i, doc in enumerate(self.docs)}
        return self._positions

    async def index(self, fields: tuple[str, ...]) -> Bm25Index:
        key = tuple(sorted(set(fields)))
        built = self.indexes.get(key)
        if built is None:
            built = await offload.run(len(self.docs), Bm25Index, self.docs, key)
            self.indexes[key] = built
        return built


class IndexCache:
    def __init__(self, maxsize: int = CACHE_SIZE) -> None:
        self.entries: LRU[tuple[str, str, int], CollectionData] = LRU(maxsize)

    async def load(self, source: DocumentSource, ns_id: str, col_id: str) -> CollectionData:
        version = await source.collection_version(ns_id, col_id)
        data = self.entries.get((ns_id, col_id, version))
        if data is None:
            # read again with the documents: the version may have moved since, and the entry
            # must carry the version its documents belong to
            version, docs = await source.documents_for(ns_id, col_id)
            data = await offload.run(len(docs), CollectionData.build, col_id, version, docs)
            self.entries.put((ns_id, col_id, version), data)
            log.debug("indexed %s/%s at version %d (%d documents)", ns_id, col_id, version, len(docs))
        return data


# One per process, shared by every engine: the gateway and the worker each build their own
# indexes, and the version in the key keeps them all current.
SHARED_CACHE = IndexCache()
