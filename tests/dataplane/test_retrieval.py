"""The retrieval engine over an in-memory document source: ranking, stages, errors, the cache."""

from __future__ import annotations

from typing import Any

import pytest

from dataplane.models import Collection, Document
from dataplane.retrieval import Engine, IndexCache, validate_stages
from dataplane.service import collection_not_found
from shared.errors import Invalid, NotFound

pytestmark = pytest.mark.anyio
NS = "ns_test"


class MemorySource:
    """A DocumentSource holding documents in dicts; counts full reads to observe the cache."""

    def __init__(self) -> None:
        self.collections: dict[str, Collection] = {}
        self.docs: dict[str, list[Document]] = {}
        self.versions: dict[str, int] = {}
        self.reads = 0

    def add(self, name: str, *metadatas: dict[str, Any]) -> str:
        col_id = "col_" + name
        self.collections.setdefault(col_id, Collection(collection_id=col_id, collection_name=name, created_at="t"))
        docs = self.docs.setdefault(col_id, [])
        for m in metadatas:
            docs.append(Document(document_id=f"{name}-{len(docs)}", collection_id=col_id, metadata=m,
                                 created_at="t", seq=len(docs)))
        self.versions[col_id] = self.versions.get(col_id, 0) + 1
        return col_id

    async def get_collection(self, ns_id: str, identifier: str) -> Collection:
        for col in self.collections.values():
            if identifier in (col.collection_id, col.collection_name):
                return col
        raise collection_not_found(identifier)

    async def collection_version(self, ns_id: str, col_id: str) -> int:
        return self.versions.get(col_id, 0)

    async def documents_for(self, ns_id: str, col_id: str) -> tuple[int, list[Document]]:
        self.reads += 1
        return self.versions.get(col_id, 0), list(self.docs.get(col_id, []))


KB = [
    {"title": "Redis streams and consumer groups", "body": "XREADGROUP reads a stream", "year": 2024,
     "category": "architecture", "tags": ["redis", "streams"], "stars": 5},
    {"title": "Python asyncio basics", "body": "event loops and tasks", "year": 2021,
     "category": "python", "tags": ["python"], "stars": 3},
    {"title": "Redis cluster slots", "body": "hash tags keep keys together", "year": 2023,
     "category": "architecture", "tags": ["redis", "cluster"]},
    {"title": "Release notes", "body": "streams can now be resumed", "year": 2022, "category": "Product",
     "tags": ["release"], "stars": 4},
]


def stage(name: str, stage_id: str, **parameters: Any) -> dict[str, Any]:
    return {"stage_name": name, "config": {"stage_id": stage_id, "parameters": parameters}}


def titles(result: dict[str, Any]) -> list[str]:
    return [d["metadata"]["title"] for d in result["documents"]]


@pytest.fixture
def source() -> MemorySource:
    s = MemorySource()
    s.add("kb", *KB)
    return s


@pytest.fixture
def engine(source: MemorySource) -> Engine:
    return Engine(source, IndexCache())


async def run(engine: Engine, *stages: dict[str, Any], **kw: Any) -> dict[str, Any]:
    return await engine.execute(NS, kw.pop("collections", ["kb"]), list(stages), **kw)


async def test_bm25_ranks_documents_with_more_query_terms_first_and_drops_non_matches(engine: Engine) -> None:
    result = await run(engine, stage("search", "bm25_search", query="redis streams"))
    assert titles(result)[0] == "Redis streams and consumer groups"
    assert "Python asyncio basics" not in titles(result)
    scores = [d["score"] for d in result["documents"]]
    assert scores == sorted(scores, reverse=True) and all(s > 0 for s in scores)
    assert result["status"] == "completed" and result["execution_id"].startswith("exec_")


async def test_bm25_folds_plurals_and_searches_only_the_chosen_fields(engine: Engine) -> None:
    assert "Release notes" in titles(await run(engine, stage("s", "bm25_search", query="stream")))
    only_titles = await run(engine, stage("s", "bm25_search", query="stream", fields=["title"]))
    assert titles(only_titles) == ["Redis streams and consumer groups"]
    # "metadata.title" names the same field
    assert titles(await run(engine, stage("s", "bm25_search", query="stream", fields=["metadata.title"]))) == \
        titles(only_titles)


async def test_bm25_top_k_and_a_query_of_stopwords_only(engine: Engine) -> None:
    assert len((await run(engine, stage("s", "bm25_search", query="redis", top_k=1)))["documents"]) == 1
    assert (await run(engine, stage("s", "bm25_search", query="the and of")))["documents"] == []


@pytest.mark.parametrize(("params", "expected"), [
    ({"field": "metadata.category", "value": "architecture"}, {0, 2}),
    ({"field": "tags", "operator": "eq", "value": "redis"}, {0, 2}),  # any element of a list
    ({"field": "category", "operator": "in", "value": ["python", "Product"]}, {1, 3}),
    ({"field": "year", "operator": "gte", "value": 2023}, {0, 2}),
    ({"field": "year", "operator": "lt", "value": 2022}, {1}),
    ({"field": "category", "operator": "ne", "value": "architecture"}, {1, 3}),
    ({"field": "category", "operator": "nin", "value": ["architecture", "python"]}, {3}),
    ({"field": "stars", "operator": "exists", "value": False}, {2}),
    ({"field": "title", "operator": "contains", "value": "Redis"}, {0, 2}),
    ({"field": "category", "value": "product", "case_insensitive": True}, {3}),
    ({"conditions": {"OR": [{"field": "year", "operator": "lte", "value": 2021},
                            {"field": "tags", "operator": "in", "value": ["cluster"]}]}}, {1, 2}),
    ({"conditions": {"NOT": [{"field": "tags", "value": "redis"}]}}, {1, 3}),
    ({"conditions": [{"field": "tags", "value": "redis"}, {"field": "year", "operator": "gt", "value": 2023}]}, {0}),
])
async def test_filter_operators(engine: Engine, params: dict[str, Any], expected: set[int]) -> None:
    result = await run(engine, stage("f", "filter", **params))
    assert {KB.index(d["metadata"]) for d in result["documents"]} == expected


async def test_filter_after_search_keeps_the_ranking(engine: Engine) -> None:
    result = await run(engine, stage("s", "bm25_search", query="redis streams"),
                       stage("f", "filter", field="year", operator="gte", value=2023))
    assert titles(result) == ["Redis streams and consumer groups", "Redis cluster slots"]
    stats = result["stage_statistics"]["stages"]
    assert stats["s"]["input_count"] == 4 and stats["s"]["output_count"] == 3
    assert stats["f"] == {**stats["f"], "input_count": 3, "output_count": 2}
    assert stats["f"]["metadata"] == {"stage_id": "filter", "stage_index": 1}


async def test_sort_directions_and_missing_values_last(engine: Engine) -> None:
    asc = await run(engine, stage("o", "sort", field="year", direction="asc"))
    assert [d["metadata"]["year"] for d in asc["documents"]] == [2021, 2022, 2023, 2024]
    desc = await run(engine, stage("o", "sort", field="metadata.stars"))  # desc by default
    assert [d["metadata"].get("stars") for d in desc["documents"]] == [5, 4, 3, None]
    first = await run(engine, stage("o", "sort", field="stars", direction="asc", nulls_last=False))
    assert [d["metadata"].get("stars") for d in first["documents"]] == [None, 3, 4, 5]


async def test_limit_stage_and_pagination(engine: Engine) -> None:
    result = await run(engine, stage("o", "sort", field="year"), stage("l", "limit", n=2, offset=1))
    assert [d["metadata"]["year"] for d in result["documents"]] == [2023, 2022]
    page = await run(engine, stage("o", "sort", field="year"), limit=3, offset=0)
    assert page["pagination"] == {"method": "offset", "limit": 3, "offset": 0, "page_size": 3, "page_number": 1,
                                  "returned": 3, "total": 4, "has_next": True}
    last = await run(engine, stage("o", "sort", field="year"), limit=3, offset=3)
    assert last["pagination"]["returned"] == 1 and last["pagination"]["has_next"] is False


async def test_inputs_fill_templates_keeping_their_type(engine: Engine) -> None:
    result = await run(engine, stage("s", "bm25_search", query="{{INPUT.query}}"),
                       stage("l", "limit", n="{{ INPUT.top }}"), inputs={"query": "redis", "top": 1})
    assert titles(result) == ["Redis streams and consumer groups"]  # "redis" in its title and its tags
    schema = {"query": {"type": "text", "default": "asyncio"}}
    assert titles(await run(engine, stage("s", "bm25_search", query="{{INPUT.query}}"), input_schema=schema)) == \
        ["Python asyncio basics"]


async def test_execute_time_filters_narrow_candidates_before_stages(engine: Engine) -> None:
    result = await run(engine, stage("s", "bm25_search", query="redis"),
                       filters={"AND": [{"field": "year", "operator": "lt", "value": 2024}]})
    assert titles(result) == ["Redis cluster slots"]
    with pytest.raises(Invalid, match="no document in the collections has field 'metadata.colour'"):
        await run(engine, stage("s", "bm25_search", query="redis"), filters={"field": "colour", "value": "red"})


@pytest.mark.parametrize(("stages", "fragment"), [
    ([stage("a", "sort", field="year"), stage("b", "vector_search")],
     "Stage 1 ('b'): unknown stage_id 'vector_search'"),
    ([stage("s", "bm25_search")], "Stage 0 ('s', bm25_search): parameter 'query' is required"),
    ([stage("s", "bm25_search", query="x", boost=2)], "Stage 0 ('s', bm25_search): unknown parameters ['boost']"),
    ([stage("l", "limit", n=0)], "Stage 0 ('l', limit): parameter 'n' must be >= 1"),
    ([stage("l", "limit", n="3")], "parameter 'n' must be an integer >= 1, got str"),
    ([stage("f", "filter", field="year", operator="between", value=1)], "unknown operator 'between'"),
    ([stage("f", "filter", field="year", operator="in", value=2024)], "operator 'in' needs a list value"),
    ([stage("o", "sort", field="year", direction="up")], "parameter 'direction' must be 'asc' or 'desc'"),
    ([stage("a", "limit", n=1), stage("a", "limit", n=2)], "Stage 1 ('a', limit): stage_name must be unique"),
    ([{"stage_name": "x", "config": {"stage_id": "limit", "parameters": {"n": 1}, "extra": 1}}],
     "unknown config keys ['extra']"),
])
async def test_bad_stages_are_refused_naming_the_stage(engine: Engine, stages: list[dict[str, Any]],
                                                       fragment: str) -> None:
    with pytest.raises(Invalid) as err:
        validate_stages(stages)
    assert fragment in err.value.message
    assert err.value.status == 422 and err.value.code == "invalid_stage"
    assert err.value.details is not None and err.value.details["stage_name"] in {s["stage_name"] for s in stages}
    with pytest.raises(Invalid):  # and the engine refuses them the same way
        await run(engine, *stages)


async def test_fields_no_document_has_are_refused_with_the_known_fields(engine: Engine) -> None:
    for bad in (stage("o", "sort", field="colour"), stage("f", "filter", field="metadata.colour", value=1),
                stage("s", "bm25_search", query="x", fields=["colour"])):
        with pytest.raises(Invalid) as err:
            await run(engine, stage("ok", "limit", n=5), bad)
        assert err.value.message.startswith(f"Stage 1 ({bad['stage_name']!r}")
        assert "no document in the collections has field 'metadata.colour'" in err.value.message
        assert "metadata" not in err.value.details["known_fields"] and "year" in err.value.details["known_fields"]


async def test_missing_input_names_the_stage_and_the_input(engine: Engine) -> None:
    with pytest.raises(Invalid) as err:
        await run(engine, stage("search", "bm25_search", query="{{INPUT.query}}"))
    assert "Stage 0 ('search', bm25_search)" in err.value.message and err.value.details["input"] == "query"
    with pytest.raises(Invalid, match="Input 'q' is required"):
        await run(engine, stage("s", "bm25_search", query="{{INPUT.q}}"), input_schema={"q": {"required": True}})


def test_validation_without_data_accepts_templates_and_canonicalises() -> None:
    stages = validate_stages([
        {"stage_id": "bm25_search", "parameters": {"query": "{{INPUT.query}}"}},  # flat shorthand
        stage("narrow", "attribute_filter", field="year", operator="in", value="{{INPUT.years}}"),
        stage("cut", "limit", n="{{INPUT.n}}"),
    ])
    assert stages[0] == stage("bm25_search", "bm25_search", query="{{INPUT.query}}")
    assert stages[1]["config"]["stage_id"] == "filter"  # Mixpeek's name, accepted and canonicalised
    with pytest.raises(Invalid, match="stages must be a non-empty list"):
        validate_stages([])


async def test_unknown_fields_are_not_refused_over_empty_collections(source: MemorySource, engine: Engine) -> None:
    source.add("empty")
    result = await run(engine, stage("o", "sort", field="anything"), collections=["empty"])
    assert result["documents"] == [] and result["warnings"] == ["collection col_empty has no documents"]


async def test_several_collections_are_searched_together(source: MemorySource, engine: Engine) -> None:
    source.add("notes", {"title": "Redis streams trimming", "body": "XTRIM with MAXLEN"})
    result = await run(engine, stage("s", "bm25_search", query="redis streams"), collections=["kb", "col_notes", "kb"])
    assert {d["collection_id"] for d in result["documents"]} == {"col_kb", "col_notes"}
    with pytest.raises(NotFound):
        await run(engine, stage("s", "bm25_search", query="x"), collections=["kb", "missing"])


async def test_cache_serves_a_version_once_and_rebuilds_after_a_write(source: MemorySource) -> None:
    engine = Engine(source, IndexCache())
    search = stage("s", "bm25_search", query="kafka")
    assert (await run(engine, search))["documents"] == []
    await run(engine, search)
    assert source.reads == 1  # same version: index reused
    source.add("kb", {"title": "Kafka versus Redis Streams", "body": "partitions and consumer groups"})
    assert titles(await run(engine, search)) == ["Kafka versus Redis Streams"]
    assert source.reads == 2
    source.docs["col_kb"] = [d for d in source.docs["col_kb"] if "Kafka" not in d.metadata["title"]]
    source.versions["col_kb"] += 1  # a delete bumps the version too
    assert (await run(engine, search))["documents"] == []


async def test_a_small_cache_evicts_the_least_recently_used(source: MemorySource) -> None:
    source.add("other", {"title": "x"})
    engine = Engine(source, IndexCache(maxsize=1))
    await run(engine, stage("l", "limit", n=1))
    await run(engine, stage("l", "limit", n=1), collections=["other"])
    await run(engine, stage("l", "limit", n=1))
    assert source.reads == 3


async def test_the_response_validates_against_the_sdk_model(engine: Engine) -> None:
    from mixpeek.models.execute_retriever_response import ExecuteRetrieverResponse

    result = await run(engine, stage("s", "bm25_search", query="redis"), stage("o", "sort", field="score"))
    model = ExecuteRetrieverResponse.from_dict(result)
    assert model is not None and model.execution_id == result["execution_id"]
    assert model.stage_statistics is not None and set(model.stage_statistics.stages or {}) == {"s", "o"}


async def test_huge_integer_in_metadata_sorts_exactly_instead_of_500(source: MemorySource) -> None:
    """Issue 15.4: a 309+-digit integer made every sort on its field raise OverflowError (500)
    until the document was deleted. Such integers are refused at ingest now, but one stored
    before that must still sort, exactly, next to floats."""
    huge = 10**400
    source.add("nums", {"title": "huge", "n": huge}, {"title": "float", "n": 1.5e308}, {"title": "small", "n": -3},
               {"title": "just above", "n": huge + 1}, {"title": "true", "n": True})
    engine = Engine(source, IndexCache())
    up = await run(engine, stage("s", "sort", field="n", direction="asc"), collections=["nums"])
    assert titles(up) == ["small", "true", "float", "huge", "just above"]
    down = await run(engine, stage("s", "sort", field="n", direction="desc"), collections=["nums"])
    assert titles(down) == ["just above", "huge", "float", "true", "small"]
