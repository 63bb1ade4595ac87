"""The data plane's storage: a namespace's collections and their documents, in Redis.

Each namespace's keys share one hash tag, so every write below is one MULTI in one slot. A
write first WATCHes what it read (the collection's existence, the ids it must not reuse) and
retries if another process changed those. Every document write bumps the collection's version
in the same MULTI: an index built in any process is keyed by that version, so it is never
served stale. Another namespace's collection is simply not in this namespace's keys, so it
answers exactly as a missing one does.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import msgspec
import redis.asyncio as aioredis
from redis.exceptions import WatchError

from dataplane import offload
from dataplane.models import (
    ID_PATTERN,
    NAME_PATTERN,
    AddDocumentRequest,
    Collection,
    CollectionView,
    Document,
)
from dataplane.retrievers import RetrieverStore
from dataplane.stages import STAGE_IDS
from dataplane.text import flatten, tokenize
from intent import EXECUTION, GREETING, SETUP
from shared import keys
from shared.errors import Conflict, Invalid, NotFound
from shared.ids import iso, new_id, now_ms
from shared.lru import LRU
from shared.models import SuitableCollection

T = TypeVar("T")
MAX_DOCUMENT_BYTES = 256 * 1024
INT_MIN, INT_MAX = -(2**63), 2**64 - 1  # signed and unsigned 64-bit integers both fit
WATCH_RETRIES = 50
FEATURE_EXTRACTOR = "text_bm25"

_NAME, _ID = re.compile(NAME_PATTERN), re.compile(ID_PATTERN)
_enc = msgspec.json.Encoder()
_collection = msgspec.json.Decoder(Collection)
_document = msgspec.json.Decoder(Document)
# words that say what to do, not what about: they must not make every collection "match"
_INSTRUCTION_TERMS = frozenset(t for phrase in SETUP + EXECUTION + GREETING for t in tokenize(phrase))
# vocabulary per (namespace, collection, version): rebuilt only after a write
_VOCABULARIES: LRU[tuple[str, str, int], frozenset[str]] = LRU(256)
_BUILDING: dict[tuple[str, str, int], asyncio.Future[frozenset[str]]] = {}  # builds in flight


def _str(value: bytes | str | None) -> str | None:
    return value.decode() if isinstance(value, bytes) else value


def collection_not_found(identifier: str) -> NotFound:
    return NotFound(f"Collection {identifier!r} not found", code="collection_not_found",
                    details={"collection_identifier": identifier})


def document_not_found(collection_id: str, document_id: str) -> NotFound:
    return NotFound(f"Document {document_id!r} not found in collection {collection_id!r}",
                    code="document_not_found", details={"collection_id": collection_id, "document_id": document_id})


def _huge_integer(metadata: dict[str, Any]) -> str | None:
    """The path of an integer outside the 64-bit range, if any: JSON allows any size, but such a
    number cannot be compared or sorted with floats safely, nor printed past 4,300 digits, nor
    read back exactly by most clients (issue 15.4)."""
    stack: list[tuple[str, Any]] = [(k, v) for k, v in metadata.items()]
    while stack:
        path, value = stack.pop()
        if isinstance(value, int) and not isinstance(value, bool) and not INT_MIN <= value <= INT_MAX:
            return path
        if isinstance(value, dict):
            stack.extend((f"{path}.{k}", v) for k, v in value.items())
        elif isinstance(value, list):
            stack.extend((f"{path}[{i}]", v) for i, v in enumerate(value))
    return None


def check_metadata(metadata: Any, where: str) -> None:
    if not isinstance(metadata, dict):
        raise Invalid(f"{where}: metadata must be an object", code="invalid_document")
    for key in metadata:
        if not key or "." in key:
            raise Invalid(f"{where}: metadata key {key!r} is invalid: keys are non-empty and contain no '.' "
                          "(dots address nested fields)", code="invalid_document", details={"key": key})
    huge = _huge_integer(metadata)
    if huge is not None:
        raise Invalid(f"{where}: metadata.{huge} is an integer outside the 64-bit range; store it as a string",
                      code="number_out_of_range", details={"field": huge, "min": INT_MIN, "max": INT_MAX})
    size = len(_enc.encode(metadata))
    if size > MAX_DOCUMENT_BYTES:
        raise Invalid(f"{where}: metadata is {size} bytes; at most {MAX_DOCUMENT_BYTES} are allowed",
                      code="document_too_large", details={"limit_bytes": MAX_DOCUMENT_BYTES})


def _decode_documents(raws: list[bytes]) -> list[Document]:
    return sorted((_document.decode(r) for r in raws), key=lambda d: (d.created_ns, d.seq, d.document_id))


def _vocabulary_of(docs: list[Document]) -> frozenset[str]:
    return frozenset(t for d in docs for t in tokenize(" ".join(flatten(d.metadata))))


class DataPlane(RetrieverStore):
    def __init__(self, redis: aioredis.Redis) -> None:
        self.redis = redis

    async def _atomic(self, watch: list[str], body: Callable[[Any], Awaitable[T]]) -> T:
        """Runs ``body(pipe)``: it reads (watched), calls ``pipe.multi()`` and queues writes."""
        for _ in range(WATCH_RETRIES):
            async with self.redis.pipeline(transaction=True) as pipe:
                try:
                    await pipe.watch(*watch)
                    result = await body(pipe)
                    await pipe.execute()
                    return result
                except WatchError:
                    continue
        raise Conflict("Too many concurrent writes to this namespace's data; retry", code="write_contention")

    # Collections

    async def create_collection(self, ns_id: str, name: str, description: str | None = None,
                                metadata: dict[str, Any] | None = None) -> Collection:
        if not _NAME.fullmatch(name) or name.startswith("col_"):
            raise Invalid(f"Invalid collection_name {name!r}: 1-128 letters, digits, '_', '.', '-', starting "
                          "with a letter or digit, and not starting with 'col_'", code="invalid_name",
                          details={"collection_name": name})
        col = Collection(collection_id=new_id("col"), collection_name=name, description=description,
                         metadata=metadata, created_at=iso(now_ms()), created_ns=time.time_ns())

        async def body(pipe: Any) -> Collection:
            if await pipe.hexists(keys.collection_names(ns_id), name):
                raise Conflict(f"A collection named {name!r} already exists", code="collection_exists",
                               details={"collection_name": name})
            pipe.multi()
            pipe.hset(keys.collections(ns_id), col.collection_id, _enc.encode(col))
            pipe.hset(keys.collection_names(ns_id), name, col.collection_id)
            return col

        return await self._atomic([keys.collection_names(ns_id)], body)

    async def get_collection(self, ns_id: str, identifier: str) -> Collection:
        col_id = identifier if identifier.startswith("col_") else \
            _str(await self.redis.hget(keys.collection_names(ns_id), identifier))
        raw = await self.redis.hget(keys.collections(ns_id), col_id) if col_id else None
        if raw is None:
            raise collection_not_found(identifier)
        return _collection.decode(raw)

    async def list_collections(self, ns_id: str) -> list[CollectionView]:
        raw = await self.redis.hgetall(keys.collections(ns_id))
        cols = sorted((_collection.decode(v) for v in raw.values()), key=lambda c: (c.created_ns, c.collection_id))
        async with self.redis.pipeline(transaction=False) as pipe:
            for c in cols:
                pipe.hlen(keys.documents(ns_id, c.collection_id))
            counts = await pipe.execute()
        return [c.view(n) for c, n in zip(cols, counts, strict=True)]

    async def delete_collection(self, ns_id: str, identifier: str) -> tuple[Collection, int]:
        """Deletes the collection and its documents; returns it and how many documents went."""
        col = await self.get_collection(ns_id, identifier)
        docs = keys.documents(ns_id, col.collection_id)

        async def body(pipe: Any) -> int:
            if not await pipe.hexists(keys.collections(ns_id), col.collection_id):
                raise collection_not_found(identifier)
            count = int(await pipe.hlen(docs))
            pipe.multi()
            pipe.hdel(keys.collections(ns_id), col.collection_id)
            pipe.hdel(keys.collection_names(ns_id), col.collection_name)
            pipe.delete(docs, keys.collection_version(ns_id, col.collection_id))
            return count

        return col, await self._atomic([keys.collections(ns_id), docs], body)

    # Documents

    async def add_document(self, ns_id: str, identifier: str, metadata: dict[str, Any],
                           document_id: str | None = None) -> Document:
        return (await self.add_documents(ns_id, identifier, [AddDocumentRequest(metadata, document_id)]))[0]

    async def add_documents(self, ns_id: str, identifier: str, items: list[AddDocumentRequest]) -> list[Document]:
        """All or nothing: every document is checked first, then all are written in one MULTI."""
        col = await self.get_collection(ns_id, identifier)
        if not items:
            raise Invalid("documents must hold at least one document", code="invalid_document")
        now, now_ns, seen = now_ms(), time.time_ns(), set()
        new: list[Document] = []
        for i, item in enumerate(items):
            where = f"documents[{i}]" if len(items) > 1 else "document"
            check_metadata(item.metadata, where)
            if item.collection_id not in (None, col.collection_id, col.collection_name):
                raise Invalid(f"{where}: collection_id {item.collection_id!r} differs from the collection in the "
                              f"path ({col.collection_id})", code="collection_mismatch")
            doc_id = item.document_id or new_id("doc")
            if not _ID.fullmatch(doc_id):
                raise Invalid(f"{where}: invalid document_id {doc_id!r}", code="invalid_document")
            if doc_id in seen:
                raise Invalid(f"{where}: document_id {doc_id!r} appears twice in the batch", code="duplicate_document")
            seen.add(doc_id)
            new.append(Document(document_id=doc_id, collection_id=col.collection_id, metadata=item.metadata,
                                created_at=iso(now), created_ns=now_ns, seq=i))
        docs = keys.documents(ns_id, col.collection_id)
        given = [d.document_id for d, item in zip(new, items, strict=True) if item.document_id]

        async def body(pipe: Any) -> list[Document]:
            if not await pipe.hexists(keys.collections(ns_id), col.collection_id):
                raise collection_not_found(identifier)
            if given:
                taken = [d for d, hit in zip(given, await pipe.hmget(docs, given), strict=True) if hit is not None]
                if taken:
                    raise Conflict(f"Document {taken[0]!r} already exists in collection {col.collection_id!r}",
                                   code="document_exists", details={"document_ids": taken})
            pipe.multi()
            pipe.hset(docs, mapping={d.document_id: _enc.encode(d) for d in new})
            pipe.incr(keys.collection_version(ns_id, col.collection_id))
            return new

        return await self._atomic([keys.collections(ns_id), docs], body)

    async def get_document(self, ns_id: str, identifier: str, document_id: str) -> Document:
        col = await self.get_collection(ns_id, identifier)
        raw = await self.redis.hget(keys.documents(ns_id, col.collection_id), document_id)
        if raw is None:
            raise document_not_found(col.collection_id, document_id)
        return _document.decode(raw)

    async def delete_document(self, ns_id: str, identifier: str, document_id: str) -> Document:
        col = await self.get_collection(ns_id, identifier)
        docs = keys.documents(ns_id, col.collection_id)

        async def body(pipe: Any) -> Document:
            raw = await pipe.hget(docs, document_id)
            if raw is None:
                raise document_not_found(col.collection_id, document_id)
            pipe.multi()
            pipe.hdel(docs, document_id)
            pipe.incr(keys.collection_version(ns_id, col.collection_id))
            return _document.decode(raw)

        return await self._atomic([docs], body)

    async def count_documents(self, ns_id: str, identifier: str) -> int:
        col = await self.get_collection(ns_id, identifier)
        return int(await self.redis.hlen(keys.documents(ns_id, col.collection_id)))

    async def collection_version(self, ns_id: str, col_id: str) -> int:
        return int(await self.redis.get(keys.collection_version(ns_id, col_id)) or 0)

    async def documents_for(self, ns_id: str, col_id: str) -> tuple[int, list[Document]]:
        """The version and the documents it names, read together, in insertion order."""
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.get(keys.collection_version(ns_id, col_id))
            pipe.hvals(keys.documents(ns_id, col_id))
            version, raws = await pipe.execute()
        return int(version or 0), await offload.run(len(raws), _decode_documents, raws)

    # Matching a request to collections (intent detection)

    async def _vocabulary(self, ns_id: str, col_id: str) -> frozenset[str]:
        version = await self.collection_version(ns_id, col_id)
        cached = _VOCABULARIES.get((ns_id, col_id, version))
        if cached is not None:
            return cached
        # One build per version however many requests ask meanwhile; the build itself runs off
        # the event loop (issue 15.2: 5,000 documents held the gateway for seconds).
        building = _BUILDING.get((ns_id, col_id, version))
        if building is None:
            building = asyncio.ensure_future(self._build_vocabulary(ns_id, col_id))
            _BUILDING[(ns_id, col_id, version)] = building
            building.add_done_callback(lambda _: _BUILDING.pop((ns_id, col_id, version), None))
        return await asyncio.shield(building)

    async def _build_vocabulary(self, ns_id: str, col_id: str) -> frozenset[str]:
        version, docs = await self.documents_for(ns_id, col_id)
        vocabulary = await offload.run(len(docs), _vocabulary_of, docs)
        _VOCABULARIES.put((ns_id, col_id, version), vocabulary)
        return vocabulary

    async def suitable_collections(self, ns_id: str, text: str, limit: int = 5) -> list[SuitableCollection]:
        """Collections ranked by the share of the request's content words they know: a word in
        the name or description counts 1, a word only in the documents 0.8."""
        terms = set(tokenize(text)) - _INSTRUCTION_TERMS
        if not terms:
            return []
        ranked: list[tuple[float, str, CollectionView]] = []
        for col in await self.list_collections(ns_id):
            own = set(tokenize(f"{col.collection_name.replace('-', ' ').replace('_', ' ')} {col.description or ''}"))
            vocabulary = await self._vocabulary(ns_id, col.collection_id)
            score = sum(1.0 if t in own else 0.8 if t in vocabulary else 0.0 for t in terms) / len(terms)
            if score > 0:
                ranked.append((min(1.0, round(score, 4)), col.collection_name, col))
        ranked.sort(key=lambda r: (-r[0], r[1]))
        return [SuitableCollection(collection_id=c.collection_id, collection_name=c.collection_name,
                                   feature_extractor=FEATURE_EXTRACTOR, match_score=s, capabilities=list(STAGE_IDS))
                for s, _, c in ranked[:limit]]
