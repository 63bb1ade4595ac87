"""Data-plane storage over fakeredis (Redis is not the point here): collections, documents,
retrievers, namespace isolation and the version that keeps indexes current."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import fakeredis
import pytest

from cli.demo_data import DEMO_COLLECTION, DEMO_DOCUMENTS, seed_demo
from dataplane.models import AddDocumentRequest
from dataplane.service import DataPlane
from shared import keys
from shared.errors import Conflict, Invalid, NotFound

pytestmark = pytest.mark.anyio
A, B = "ns_a", "ns_b"


@pytest.fixture
async def dp() -> AsyncIterator[DataPlane]:
    redis = fakeredis.FakeAsyncRedis(server=fakeredis.FakeServer())
    yield DataPlane(redis)
    await redis.aclose()


def docs(*titles: str) -> list[AddDocumentRequest]:
    return [AddDocumentRequest(metadata={"title": t}) for t in titles]


async def test_a_collection_is_found_by_name_and_by_id(dp: DataPlane) -> None:
    col = await dp.create_collection(A, "kb", "notes", {"team": "core"})
    assert col.collection_id.startswith("col_") and col.created_at.endswith("Z")
    assert await dp.get_collection(A, "kb") == col
    assert await dp.get_collection(A, col.collection_id) == col
    with pytest.raises(NotFound) as err:
        await dp.get_collection(A, "nope")
    assert err.value.code == "collection_not_found" and err.value.details == {"collection_identifier": "nope"}


async def test_names_are_unique_per_namespace_and_well_formed(dp: DataPlane) -> None:
    await dp.create_collection(A, "kb")
    with pytest.raises(Conflict, match="already exists"):
        await dp.create_collection(A, "kb")
    await dp.create_collection(B, "kb")  # another namespace may reuse it
    for bad in ("col_kb", "", "-x", "a b", "x" * 129):
        with pytest.raises(Invalid):
            await dp.create_collection(A, bad)


async def test_another_namespaces_collection_answers_exactly_like_a_missing_one(dp: DataPlane) -> None:
    col = await dp.create_collection(A, "kb")
    await dp.add_documents(A, "kb", [AddDocumentRequest(metadata={"t": 1}, document_id="d1")])
    with pytest.raises(NotFound) as foreign:
        await dp.get_collection(B, col.collection_id)
    await dp.delete_collection(A, col.collection_id)
    with pytest.raises(NotFound) as missing:
        await dp.get_collection(A, col.collection_id)
    assert (foreign.value.message, foreign.value.code, foreign.value.details) == \
        (missing.value.message, missing.value.code, missing.value.details)
    for call in (dp.get_document(B, col.collection_id, "d1"), dp.count_documents(B, col.collection_id),
                 dp.delete_collection(B, "kb")):
        with pytest.raises(NotFound):
            await call


async def test_documents_crud_and_counts(dp: DataPlane) -> None:
    await dp.create_collection(A, "kb")
    one = await dp.add_document(A, "kb", {"title": "first", "year": 2024})
    given = await dp.add_document(A, "kb", {"title": "second"}, document_id="my-doc.2")
    assert one.document_id.startswith("doc_") and given.document_id == "my-doc.2"
    assert await dp.get_document(A, "kb", "my-doc.2") == given
    assert await dp.count_documents(A, "kb") == 2
    with pytest.raises(Conflict, match="already exists"):
        await dp.add_document(A, "kb", {"title": "again"}, document_id="my-doc.2")
    assert (await dp.delete_document(A, "kb", one.document_id)).metadata == {"title": "first", "year": 2024}
    with pytest.raises(NotFound, match="not found in collection"):
        await dp.get_document(A, "kb", one.document_id)
    with pytest.raises(NotFound):
        await dp.delete_document(A, "kb", one.document_id)
    assert await dp.count_documents(A, "kb") == 1


async def test_every_document_write_bumps_the_version_and_failures_do_not(dp: DataPlane) -> None:
    col = await dp.create_collection(A, "kb")
    assert await dp.collection_version(A, col.collection_id) == 0
    await dp.add_document(A, "kb", {"title": "a"}, document_id="a")
    await dp.add_documents(A, "kb", docs("b", "c", "d"))  # a batch is one write
    assert await dp.collection_version(A, col.collection_id) == 2
    await dp.delete_document(A, "kb", "a")
    assert await dp.collection_version(A, col.collection_id) == 3
    await dp.add_document(A, "kb", {"title": "e"}, document_id="e")
    with pytest.raises(Conflict):
        await dp.add_document(A, "kb", {"title": "e again"}, document_id="e")
    with pytest.raises(NotFound):
        await dp.delete_document(A, "kb", "a")
    assert await dp.collection_version(A, col.collection_id) == 4


async def test_a_batch_is_all_or_nothing(dp: DataPlane) -> None:
    col = await dp.create_collection(A, "kb")
    bad = [AddDocumentRequest(metadata={"title": "ok"}), AddDocumentRequest(metadata={"a.b": 1})]
    with pytest.raises(Invalid, match=r"documents\[1\]: metadata key 'a.b' is invalid"):
        await dp.add_documents(A, "kb", bad)
    dup = [AddDocumentRequest(metadata={}, document_id="x"), AddDocumentRequest(metadata={}, document_id="x")]
    with pytest.raises(Invalid, match="appears twice"):
        await dp.add_documents(A, "kb", dup)
    await dp.add_document(A, "kb", {}, document_id="taken")
    clash = [AddDocumentRequest(metadata={}, document_id="new"), AddDocumentRequest(metadata={}, document_id="taken")]
    with pytest.raises(Conflict) as err:
        await dp.add_documents(A, "kb", clash)
    assert err.value.details == {"document_ids": ["taken"]}
    assert await dp.count_documents(A, "kb") == 1
    assert await dp.collection_version(A, col.collection_id) == 1


async def test_documents_for_reads_the_version_with_documents_in_insertion_order(dp: DataPlane) -> None:
    col = await dp.create_collection(A, "kb")
    await dp.add_documents(A, "kb", docs(*[f"t{i}" for i in range(30)]))
    for name in "edcba":  # within one millisecond, and ids that sort backwards
        await dp.add_document(A, "kb", {"title": name}, document_id=name)
    version, stored = await dp.documents_for(A, col.collection_id)
    assert version == 6
    assert [d.metadata["title"] for d in stored] == [f"t{i}" for i in range(30)] + list("edcba")


async def test_concurrent_writers_of_one_id_leave_exactly_one_document(dp: DataPlane) -> None:
    col = await dp.create_collection(A, "kb")
    results = await asyncio.gather(*(dp.add_document(A, "kb", {"n": i}, document_id="same") for i in range(5)),
                                   return_exceptions=True)
    assert sum(not isinstance(r, BaseException) for r in results) == 1
    assert all(isinstance(r, Conflict) for r in results if isinstance(r, BaseException))
    assert await dp.collection_version(A, col.collection_id) == 1


async def test_listing_counts_documents_and_deleting_frees_the_name(dp: DataPlane) -> None:
    first = await dp.create_collection(A, "kb")
    await dp.create_collection(A, "empty")
    await dp.add_documents(A, "kb", docs("a", "b"))
    listed = await dp.list_collections(A)
    assert [(c.collection_name, c.document_count) for c in listed] == [("kb", 2), ("empty", 0)]
    assert await dp.list_collections(B) == []
    col, removed = await dp.delete_collection(A, "kb")
    assert (col.collection_id, removed) == (first.collection_id, 2)
    redis = dp.redis
    assert not await redis.exists(keys.documents(A, first.collection_id), keys.collection_version(A, first.collection_id))
    again = await dp.create_collection(A, "kb")
    assert again.collection_id != first.collection_id and await dp.count_documents(A, "kb") == 0


async def test_adding_to_a_deleted_collection_fails(dp: DataPlane) -> None:
    col = await dp.create_collection(A, "kb")
    await dp.delete_collection(A, "kb")
    with pytest.raises(NotFound):
        await dp.add_document(A, col.collection_id, {"t": 1})
    assert not await dp.redis.exists(keys.documents(A, col.collection_id))


# Retrievers

SEARCH = [{"stage_name": "search", "config": {"stage_id": "bm25_search", "parameters": {"query": "{{INPUT.q}}"}}}]


async def test_retriever_crud_by_id_and_name(dp: DataPlane) -> None:
    await dp.create_collection(A, "kb")
    ret = await dp.create_retriever(A, "kb-search", SEARCH, ["kb"], "find notes", {"q": {"type": "text"}})
    assert ret.retriever_id.startswith("ret_") and ret.stages == SEARCH
    assert await dp.get_retriever(A, "kb-search") == await dp.get_retriever(A, ret.retriever_id) == ret
    assert await dp.list_retrievers(A) == [ret] and await dp.list_retrievers(B) == []
    with pytest.raises(Conflict):
        await dp.create_retriever(A, "kb-search", SEARCH, ["kb"])
    with pytest.raises(NotFound):
        await dp.get_retriever(B, ret.retriever_id)
    assert (await dp.delete_retriever(A, "kb-search")).retriever_id == ret.retriever_id
    with pytest.raises(NotFound, match="Retriever 'kb-search' not found"):
        await dp.get_retriever(A, "kb-search")
    await dp.create_retriever(A, "kb-search", SEARCH, ["kb"])  # the name is free again


async def test_retrievers_are_checked_when_saved(dp: DataPlane) -> None:
    await dp.create_collection(A, "kb")
    bad = [SEARCH[0], {"stage_name": "cut", "config": {"stage_id": "limit", "parameters": {}}}]
    with pytest.raises(Invalid) as err:
        await dp.create_retriever(A, "r", bad, ["kb"])
    assert "Stage 1 ('cut', limit): parameter 'n' is required" in err.value.message
    with pytest.raises(NotFound, match="collection 'ghost' not found") as missing:
        await dp.create_retriever(A, "r", SEARCH, ["kb", "ghost"])
    assert missing.value.details == {"collection_identifier": "ghost"}
    with pytest.raises(Invalid, match=r"inputs \['q'\] that input_schema does not declare"):
        await dp.create_retriever(A, "r", SEARCH, ["kb"], input_schema={"query": {"type": "text"}})
    with pytest.raises(Invalid, match="not starting with 'ret_'"):
        await dp.create_retriever(A, "ret_x", SEARCH, ["kb"])
    assert await dp.list_retrievers(A) == []


async def test_search_retrievers_ranks_by_shared_words(dp: DataPlane) -> None:
    await dp.create_collection(A, "kb")
    await dp.create_retriever(A, "incident-search", SEARCH, ["kb"], "post-mortems and runbooks")
    await dp.create_retriever(A, "api-docs", SEARCH, ["kb"], "API guides")
    found = await dp.search_retrievers(A, "runbooks for incidents")
    assert [r.retriever_name for _, r in found] == ["incident-search"]
    assert 0 < found[0][0] <= 1
    assert [r.retriever_name for _, r in await dp.search_retrievers(A, "api-docs")] == ["api-docs"]


# Matching requests to collections


async def test_suitable_collections_rank_by_content_and_ignore_instruction_words(dp: DataPlane) -> None:
    await dp.create_collection(A, "incidents", "post-mortems of outages")
    await dp.create_collection(A, "recipes", "cooking")
    await dp.add_documents(A, "recipes", [AddDocumentRequest(metadata={"title": "Redis-free pancakes"})])
    await dp.add_documents(A, "incidents", [AddDocumentRequest(metadata={"body": "redis failover outage"})])
    found = await dp.suitable_collections(A, "find documents about redis outages")
    assert [c.collection_name for c in found] == ["incidents", "recipes"]
    assert all(0 <= c.match_score <= 1 and c.feature_extractor == "text_bm25" for c in found)
    # "outage": in the description (1.0); "redis": only in the documents (0.8)
    assert [c.match_score for c in found] == [0.9, 0.4]
    assert await dp.suitable_collections(A, "please find and show me the results") == []
    assert await dp.suitable_collections(B, "redis outages") == []


async def test_suitable_collections_see_new_documents(dp: DataPlane) -> None:
    await dp.create_collection(A, "kb")
    assert await dp.suitable_collections(A, "kubernetes") == []
    await dp.add_document(A, "kb", {"title": "Kubernetes operators"})
    assert [c.collection_name for c in await dp.suitable_collections(A, "kubernetes")] == ["kb"]


async def test_seed_demo_is_idempotent(dp: DataPlane) -> None:
    assert await seed_demo(dp, A) is True
    assert await seed_demo(dp, A) is False
    assert await dp.count_documents(A, DEMO_COLLECTION) == len(DEMO_DOCUMENTS) >= 40
    assert {"title", "body", "category", "year", "tags"} == set(DEMO_DOCUMENTS[0])


async def test_vocabulary_rebuild_after_a_write_does_not_block_the_event_loop(dp: DataPlane,
                                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 15.2: after any write, intent detection re-tokenised the whole collection on the event
    loop (5,001 documents held /healthz for 2.3 s). The build is held open here until the loop
    has shown it still runs; built on the loop, it would block until its own timeout."""
    import threading

    from dataplane import service

    col = await dp.create_collection(A, "big", "many notes")
    await dp.add_documents(A, col.collection_id, docs(*(f"redis note {i}" for i in range(400))))
    started, release = threading.Event(), threading.Event()
    finished: list[bool] = []
    real = service._vocabulary_of

    def held(documents):  # type: ignore[no-untyped-def]
        started.set()
        release.wait(10)
        finished.append(True)
        return real(documents)

    monkeypatch.setattr(service, "_vocabulary_of", held)
    task = asyncio.create_task(dp.suitable_collections(A, "redis notes"))
    for _ in range(1000):  # the loop keeps turning while the build runs
        if started.is_set():
            break
        await asyncio.sleep(0.01)
    ticks = 0
    for _ in range(5):
        await asyncio.sleep(0)
        ticks += 1
    loop_ran_during_build = started.is_set() and not finished
    release.set()
    found = await task
    assert loop_ran_during_build and ticks == 5
    assert [c.collection_name for c in found] == ["big"]


async def test_huge_integer_in_metadata_is_refused_at_ingest_with_422(dp: DataPlane) -> None:
    """Issue 15.4: a 309+-digit integer was accepted and then broke every sort on its field."""
    col = await dp.create_collection(A, "numbers")
    for bad in ({"n": 2**64}, {"n": -(2**63) - 1}, {"deep": {"list": [1, 10**400]}}):
        with pytest.raises(Invalid) as err:
            await dp.add_document(A, col.collection_id, bad)
        assert err.value.code == "number_out_of_range" and err.value.status == 422
    assert err.value.details["field"] == "deep.list[1]"
    kept = await dp.add_document(A, col.collection_id, {"n": 2**64 - 1, "m": -(2**63), "f": 1e308, "s": "9" * 400})
    assert kept.metadata["n"] == 2**64 - 1
