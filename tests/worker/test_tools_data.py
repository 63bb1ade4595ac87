"""The agent's data tools over fakeredis with a few seeded documents."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import fakeredis
import pytest

from dataplane.catalogue import BY_NAME
from dataplane.models import AddDocumentRequest
from dataplane.service import DataPlane
from worker.tools.base import ToolContext, ToolError, ToolOutcome
from worker.tools.data import TOOLS

pytestmark = pytest.mark.anyio
NS = "ns_tools"

NOTES = [
    {"title": "Redis streams consumer groups", "body": "XREADGROUP and XACK", "year": 2024, "tags": ["redis"]},
    {"title": "Redis cluster hash tags", "body": "keep keys in one slot", "year": 2023, "tags": ["redis"]},
    {"title": "Python asyncio cancellation", "body": "always re-raise CancelledError", "year": 2022,
     "tags": ["python"]},
    {"title": "SSE heartbeats", "body": "comments keep proxies from closing idle streams", "year": 2024,
     "tags": ["sse"]},
]
INCIDENTS = [
    {"title": "Redis failover duplicated answers", "body": "fencing fixed it", "year": 2024, "tags": ["redis"]},
    {"title": "Expired certificate", "body": "renewal now weekly", "year": 2022, "tags": ["tls"]},
]


@pytest.fixture
async def ctx() -> AsyncIterator[ToolContext]:
    redis = fakeredis.FakeAsyncRedis(server=fakeredis.FakeServer())
    dp = DataPlane(redis)
    await dp.create_collection(NS, "notes", "engineering notes")
    await dp.add_documents(NS, "notes", [AddDocumentRequest(metadata=m, document_id=f"n{i}")
                                         for i, m in enumerate(NOTES)])
    await dp.create_collection(NS, "incidents", "post-mortems")
    await dp.add_documents(NS, "incidents", [AddDocumentRequest(metadata=m, document_id=f"i{i}")
                                             for i, m in enumerate(INCIDENTS)])
    yield ToolContext(redis=redis, namespace_id=NS, session_id="ses_t", message_id="msg_t")
    await redis.aclose()


async def call(ctx: ToolContext, name: str, **inputs: Any) -> ToolOutcome:
    return await TOOLS[name](ctx, inputs)


def ids(outcome: ToolOutcome) -> list[str]:
    return [d["document_id"] for d in outcome.output["documents"]]


def test_every_catalogue_tool_has_an_implementation() -> None:
    assert set(TOOLS) == set(BY_NAME)


async def test_smart_search_searches_every_collection(ctx: ToolContext) -> None:
    out = await call(ctx, "smart_search", query="redis", limit=10)
    assert set(ids(out)) == {"n0", "n1", "i0"}
    assert sorted(out.output["collections_searched"]) == ["incidents", "notes"]
    [run] = out.retriever_runs
    assert run.is_adhoc and run.retriever_id is None and run.documents_returned == 3
    assert run.execution_id == out.output["execution_id"] and run.latency_ms >= 0
    assert len(ids(await call(ctx, "smart_search", query="redis", limit=2))) == 2


async def test_smart_search_in_an_empty_namespace(ctx: ToolContext) -> None:
    empty = ToolContext(ctx.redis, "ns_empty", "ses_t", "msg_t")
    out = await call(empty, "smart_search", query="redis")
    assert out.output["documents"] == [] and out.retriever_runs == []


async def test_execute_retriever_by_name_or_id_with_inputs(ctx: ToolContext) -> None:
    ret = await DataPlane(ctx.redis).create_retriever(
        NS, "recent-notes",
        [{"stage_name": "search", "config": {"stage_id": "bm25_search", "parameters": {"query": "{{INPUT.query}}"}}},
         {"stage_name": "recent", "config": {"stage_id": "filter",
                                             "parameters": {"field": "year", "operator": "gte", "value": 2024}}}],
        ["notes"], "recent engineering notes")
    by_name = await call(ctx, "execute_retriever", retriever_id="recent-notes", inputs={"query": "redis"})
    assert ids(by_name) == ["n0"]
    assert by_name.output["retriever_id"] == ret.retriever_id
    [run] = by_name.retriever_runs
    assert (run.retriever_id, run.is_adhoc, run.documents_returned) == (ret.retriever_id, False, 1)
    by_id = await call(ctx, "execute_retriever", retriever_id=ret.retriever_id, inputs={"query": "streams"})
    assert set(ids(by_id)) == {"n0", "n3"}
    with pytest.raises(ToolError, match="needs input 'query'"):
        await call(ctx, "execute_retriever", retriever_id="recent-notes")
    with pytest.raises(ToolError, match="Retriever 'nope' not found"):
        await call(ctx, "execute_retriever", retriever_id="nope")


async def test_adhoc_query_pipeline_saved_as_a_retriever_returns_the_same_documents(ctx: ToolContext) -> None:
    adhoc = await call(ctx, "execute_adhoc_retriever", collection_identifiers=["notes", "incidents"],
                       query="redis", limit=2)
    assert len(ids(adhoc)) == 2 and adhoc.retriever_runs[0].is_adhoc
    config = adhoc.pipeline_config
    assert config is not None and all(c.startswith("col_") for c in config["collection_identifiers"])
    assert config["stages"][-1]["config"] == {"stage_id": "limit", "parameters": {"n": 2}}
    await DataPlane(ctx.redis).create_retriever(NS, "saved", config["stages"], config["collection_identifiers"])
    saved = await call(ctx, "execute_retriever", retriever_id="saved", limit=100)  # any page size
    assert ids(saved) == ids(adhoc)


async def test_adhoc_stages_with_templates_are_saved_with_the_query_filled_in(ctx: ToolContext) -> None:
    stages = [{"stage_name": "search", "config": {"stage_id": "bm25_search", "parameters": {"query": "{{INPUT.query}}"}}},
              {"stage_name": "newest", "config": {"stage_id": "sort", "parameters": {"field": "year"}}}]
    adhoc = await call(ctx, "execute_adhoc_retriever", collection_identifiers=["notes"], query="redis streams",
                       stages=stages, limit=5)
    assert adhoc.pipeline_config is not None
    assert adhoc.pipeline_config["stages"][0]["config"]["parameters"] == {"query": "redis streams"}
    years = [d["metadata"]["year"] for d in adhoc.output["documents"]]
    assert years == sorted(years, reverse=True) and ids(adhoc)
    dp = DataPlane(ctx.redis)
    await dp.create_retriever(NS, "saved-2", **adhoc.pipeline_config)
    assert ids(await call(ctx, "execute_retriever", retriever_id="saved-2")) == ids(adhoc)


async def test_adhoc_refusals_reach_the_agent(ctx: ToolContext) -> None:
    with pytest.raises(ToolError, match="Give a query or stages"):
        await call(ctx, "execute_adhoc_retriever", collection_identifiers=["notes"])
    bad = [{"stage_name": "order", "config": {"stage_id": "sort", "parameters": {"field": "colour"}}}]
    with pytest.raises(ToolError, match=r"Stage 0 \('order', sort\): no document .* field 'metadata.colour'"):
        await call(ctx, "execute_adhoc_retriever", collection_identifiers=["notes"], stages=bad)
    with pytest.raises(ToolError, match="Collection 'ghost' not found"):
        await call(ctx, "execute_adhoc_retriever", collection_identifiers=["ghost"], query="x")
    with pytest.raises(ToolError, match="Invalid input"):
        await call(ctx, "execute_adhoc_retriever", collection_identifiers=["notes"], query="x", colour="red")


async def test_retriever_listing_and_search(ctx: ToolContext) -> None:
    dp = DataPlane(ctx.redis)
    search = [{"stage_name": "search", "config": {"stage_id": "bm25_search", "parameters": {"query": "{{INPUT.q}}"}}}]
    await dp.create_retriever(NS, "incident-finder", search, ["incidents"], "search post-mortems")
    await dp.create_retriever(NS, "notes-finder", search, ["notes"], "search engineering notes")
    listed = await call(ctx, "list_retrievers")
    assert [r["retriever_name"] for r in listed.output["results"]] == ["incident-finder", "notes-finder"]
    assert listed.output["results"][0]["stages"] == ["search (bm25_search)"]
    found = await call(ctx, "search_retrievers", query="post-mortems")
    assert [r["retriever_name"] for r in found.output["results"]] == ["incident-finder"]
    assert 0 < found.output["results"][0]["match_score"] <= 1


async def test_list_collections_and_get_document(ctx: ToolContext) -> None:
    listed = await call(ctx, "list_collections")
    assert {(c["collection_name"], c["document_count"]) for c in listed.output["results"]} == \
        {("notes", 4), ("incidents", 2)}
    doc = await call(ctx, "get_document", collection_identifier="notes", document_id="n2")
    assert doc.output["metadata"] == NOTES[2] and doc.output["collection_id"].startswith("col_")
    with pytest.raises(ToolError, match="Document 'n9' not found"):
        await call(ctx, "get_document", collection_identifier="notes", document_id="n9")
    with pytest.raises(ToolError, match="Invalid input"):
        await call(ctx, "get_document", collection_identifier="notes")


async def test_detect_intent_names_suitable_collections(ctx: ToolContext) -> None:
    out = (await call(ctx, "detect_intent", user_request="find post-mortems about redis failover")).output
    assert out["intent"] == "execution" and 0 <= out["confidence"] <= 1
    assert out["suitable_collections"][0]["collection_name"] == "incidents"
    assert out["keywords_found"]["execution_keywords"]


async def test_create_and_delete_collection(ctx: ToolContext) -> None:
    created = await call(ctx, "create_collection", collection_name="videos", description="tutorials")
    assert created.output["collection_id"].startswith("col_") and created.output["document_count"] == 0
    with pytest.raises(ToolError, match="already exists"):
        await call(ctx, "create_collection", collection_name="videos")
    deleted = await call(ctx, "delete_collection", collection_identifier="notes")
    assert deleted.output == {"collection_id": deleted.output["collection_id"], "collection_name": "notes",
                              "deleted": True, "documents_deleted": 4}
    with pytest.raises(ToolError, match="not found"):
        await call(ctx, "delete_collection", collection_identifier="notes")


async def test_write_tools_change_nothing_once_the_session_is_terminated(ctx: ToolContext) -> None:
    """Issue 15.6: an approval that raced the session's termination still ran the write."""
    from shared import keys

    await ctx.redis.hset(keys.session(ctx.session_id), mapping={"status": "terminated"})
    with pytest.raises(ToolError, match="terminated"):
        await call(ctx, "create_collection", collection_name="pwn3")
    with pytest.raises(ToolError, match="terminated"):
        await call(ctx, "delete_collection", collection_identifier="notes")
    names = [c.collection_name for c in await DataPlane(ctx.redis).list_collections(NS)]
    assert "pwn3" not in names and "notes" in names
