"""Saved retrievers: a name, the collections they read and their stages, per namespace.

Mixed into ``DataPlane`` (which supplies the Redis client, the WATCH/MULTI helper and the
collection lookup), so that callers hold one data-plane object. Stages are checked when a
retriever is saved, with the same grammar the engine runs (``dataplane/stages.py``), so a saved
retriever can fail at run time only for what depends on the data or the inputs.
"""

from __future__ import annotations

import re
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

import msgspec
import redis.asyncio as aioredis

from dataplane.models import NAME_PATTERN, Collection, Retriever
from dataplane.stages import template_inputs, validate
from dataplane.text import tokenize
from shared import keys
from shared.errors import Conflict, Invalid, NotFound
from shared.ids import iso, new_id, now_ms

T = TypeVar("T")
_NAME = re.compile(NAME_PATTERN)
_enc = msgspec.json.Encoder()
_retriever = msgspec.json.Decoder(Retriever)


def retriever_not_found(identifier: str) -> NotFound:
    return NotFound(f"Retriever {identifier!r} not found", code="retriever_not_found",
                    details={"retriever_identifier": identifier})


class RetrieverStore:
    redis: aioredis.Redis

    if TYPE_CHECKING:
        async def _atomic(self, watch: list[str], body: Callable[[Any], Awaitable[T]]) -> T: ...

        async def get_collection(self, ns_id: str, identifier: str) -> Collection: ...

    async def create_retriever(self, ns_id: str, retriever_name: str, stages: list[dict[str, Any]],
                               collection_identifiers: list[str], description: str | None = None,
                               input_schema: dict[str, Any] | None = None, tags: list[str] | None = None,
                               metadata: dict[str, Any] | None = None) -> Retriever:
        if not _NAME.fullmatch(retriever_name) or retriever_name.startswith("ret_"):
            raise Invalid(f"Invalid retriever_name {retriever_name!r}: 1-128 letters, digits, '_', '.', '-', "
                          "starting with a letter or digit, and not starting with 'ret_'", code="invalid_name",
                          details={"retriever_name": retriever_name})
        canonical = validate(stages)
        if input_schema is not None:
            missing = sorted(template_inputs(canonical) - set(input_schema))
            if missing:
                raise Invalid(f"The stages use inputs {missing} that input_schema does not declare",
                              code="undeclared_input", details={"inputs": missing,
                                                                "declared": sorted(input_schema)})
        if not collection_identifiers:
            raise Invalid("collection_identifiers must name at least one collection", code="invalid_retriever")
        for identifier in collection_identifiers:
            try:
                await self.get_collection(ns_id, identifier)
            except NotFound:
                raise NotFound(f"collection_identifiers: collection {identifier!r} not found in this namespace",
                               code="collection_not_found", details={"collection_identifier": identifier}) from None
        ret = Retriever(retriever_id=new_id("ret"), retriever_name=retriever_name, description=description,
                        collection_identifiers=list(collection_identifiers), stages=canonical,
                        input_schema=input_schema, tags=tags, metadata=metadata, created_at=iso(now_ms()),
                        created_ns=time.time_ns())

        async def body(pipe: Any) -> Retriever:
            if await pipe.hexists(keys.retriever_names(ns_id), retriever_name):
                raise Conflict(f"A retriever named {retriever_name!r} already exists", code="retriever_exists",
                               details={"retriever_name": retriever_name})
            pipe.multi()
            pipe.hset(keys.retrievers(ns_id), ret.retriever_id, _enc.encode(ret))
            pipe.hset(keys.retriever_names(ns_id), retriever_name, ret.retriever_id)
            return ret

        return await self._atomic([keys.retriever_names(ns_id)], body)

    async def get_retriever(self, ns_id: str, identifier: str) -> Retriever:
        ret_id: Any = identifier
        if not identifier.startswith("ret_"):
            ret_id = await self.redis.hget(keys.retriever_names(ns_id), identifier)
        raw = await self.redis.hget(keys.retrievers(ns_id), ret_id) if ret_id else None
        if raw is None:
            raise retriever_not_found(identifier)
        return _retriever.decode(raw)

    async def list_retrievers(self, ns_id: str) -> list[Retriever]:
        raw = await self.redis.hgetall(keys.retrievers(ns_id))
        return sorted((_retriever.decode(v) for v in raw.values()), key=lambda r: (r.created_ns, r.retriever_id))

    async def delete_retriever(self, ns_id: str, identifier: str) -> Retriever:
        ret = await self.get_retriever(ns_id, identifier)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hdel(keys.retrievers(ns_id), ret.retriever_id)
            pipe.hdel(keys.retriever_names(ns_id), ret.retriever_name)
            removed, _ = await pipe.execute()
        if not removed:  # deleted meanwhile by someone else
            raise retriever_not_found(identifier)
        return ret

    async def search_retrievers(self, ns_id: str, query: str, limit: int = 10) -> list[tuple[float, Retriever]]:
        """Retrievers whose name, description, tags or stage names share words with ``query``,
        best first, with the share of the query's words each matches."""
        terms = set(tokenize(query))
        needle = query.strip().lower()
        ranked: list[tuple[float, Retriever]] = []
        for ret in await self.list_retrievers(ns_id):
            words = " ".join([ret.retriever_name.replace("-", " ").replace("_", " "), ret.description or "",
                              *(ret.tags or []), *(s["stage_name"] for s in ret.stages)])
            score = len(terms & set(tokenize(words))) / len(terms) if terms else 0.0
            if needle and needle in ret.retriever_name.lower():
                score = 1.0
            if score > 0:
                ranked.append((round(score, 4), ret))
        ranked.sort(key=lambda r: (-r[0], r[1].retriever_name))
        return ranked[:limit]
