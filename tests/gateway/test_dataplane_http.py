"""The data plane over real HTTP (``gateway/routes/dataplane.py``), and the agent searching it.

Collections, documents and retrievers through the gateway; error shapes (404 that leaks nothing
across namespaces, 422 naming the stage, 409 for duplicates); then one end-to-end turn: ~200
generated maintenance reports ingested through the API, a question whose answer is in three of
them, and the agent's SSE (and the SDK's ``stream=False`` answer) grounded in exactly those.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Iterator
from typing import Any

import httpx
import mixpeek
import pytest
from httpx_sse import connect_sse

from tests.stack import Proc, Stack

pytestmark = pytest.mark.integration

ERROR_KEYS = {"success", "status", "error"}


def error(resp: httpx.Response, status: int, code: str | None = None) -> dict[str, Any]:
    """The reference's ErrorResponse shape, parsed by the SDK's own model as a check."""
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"] == "application/json"
    body = resp.json()
    assert set(body) == ERROR_KEYS and body["success"] is False and body["status"] == status
    assert mixpeek.ErrorResponse.from_dict(body) is not None
    if code is not None:
        assert body["error"]["code"] == code, body
    return body["error"]


def ok(resp: httpx.Response) -> Any:
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"] == "application/json"
    return resp.json()


def stage(name: str, stage_id: str, **parameters: Any) -> dict[str, Any]:
    return {"stage_name": name, "config": {"stage_id": stage_id, "parameters": parameters}}


@pytest.fixture
def other(gateway: Proc, stack: Stack) -> Iterator[httpx.Client]:
    """A client for another tenant (its own key and namespace)."""
    key, ns, _ = stack.new_tenant()
    with httpx.Client(base_url=gateway.url, headers={"Authorization": f"Bearer {key}", "X-Namespace": ns},
                      timeout=30) as client:
        yield client


# Collections


def test_collections_crud_by_name_and_by_id(api: httpx.Client) -> None:
    created = ok(api.post("/v1/collections", json={"collection_name": "field-reports",
                                                   "description": "Maintenance reports", "metadata": {"team": "ops"}}))
    col_id = created["collection_id"]
    assert col_id.startswith("col_") and created["collection_name"] == "field-reports"
    assert created["document_count"] == 0 and created["metadata"] == {"team": "ops"}
    assert ok(api.get("/v1/collections/field-reports")) == created
    assert ok(api.get(f"/v1/collections/{col_id}")) == created

    ok(api.post("/v1/collections", json={"collection_name": "site-contacts"}))
    listed = ok(api.post("/v1/collections/list"))
    assert [c["collection_name"] for c in listed["results"]] == ["field-reports", "site-contacts"]
    assert listed["total"] == 2 and listed["pagination"]["has_next"] is False
    found = ok(api.post("/v1/collections/list", json={"search": "MAINTENANCE"}))
    assert [c["collection_id"] for c in found["results"]] == [col_id]
    page = ok(api.post("/v1/collections/list", json={"limit": 1, "offset": 1}))
    assert [c["collection_name"] for c in page["results"]] == ["site-contacts"] and page["total"] == 2

    deleted = ok(api.delete("/v1/collections/site-contacts"))
    assert deleted["deleted"] is True and deleted["documents_deleted"] == 0
    error(api.get("/v1/collections/site-contacts"), 404, "collection_not_found")
    ok(api.post(f"/v1/collections/{col_id}/documents", json={"metadata": {"title": "x"}}))
    gone = ok(api.delete(f"/v1/collections/{col_id}"))
    assert (gone["collection_id"], gone["documents_deleted"]) == (col_id, 1)
    error(api.get(f"/v1/collections/{col_id}"), 404, "collection_not_found")
    assert ok(api.post("/v1/collections/list"))["total"] == 0


def test_a_duplicate_collection_name_is_409_and_a_bad_name_422(api: httpx.Client) -> None:
    ok(api.post("/v1/collections", json={"collection_name": "kb"}))
    err = error(api.post("/v1/collections", json={"collection_name": "kb"}), 409, "collection_exists")
    assert err["type"] == "ConflictError" and "kb" in err["message"]
    error(api.post("/v1/collections", json={"collection_name": "col_kb"}), 422)
    error(api.post("/v1/collections", json={"collection_name": "a b"}), 422)
    error(api.post("/v1/collections", json={"collection_name": "kb2", "colour": "red"}), 422, "extra_forbidden")
    error(api.post("/v1/collections", content=b""), 422, "body_required")


def test_another_namespaces_collection_answers_exactly_like_a_missing_one(api: httpx.Client,
                                                                         other: httpx.Client) -> None:
    theirs = ok(other.post("/v1/collections", json={"collection_name": "secret-kb"}))
    ok(other.post("/v1/collections/secret-kb/documents", json={"metadata": {"t": 1}, "document_id": "d1"}))
    ok(api.post("/v1/collections", json={"collection_name": "mine"}))
    for ident, missing in ((theirs["collection_id"], "col_" + "0" * (len(theirs["collection_id"]) - 4)),
                           ("secret-kb", "never-made")):
        for method, suffix, body in (("GET", "", None), ("DELETE", "", None), ("GET", "/documents/count", None),
                                     ("GET", "/documents/d1", None), ("DELETE", "/documents/d1", None),
                                     ("POST", "/documents", {"metadata": {"x": 1}})):
            seen = []
            for name in (ident, missing):
                resp = api.request(method, f"/v1/collections/{name}{suffix}", json=body)
                error(resp, 404, "collection_not_found")
                seen.append(resp.text.replace(name, "<id>"))
            assert seen[0] == seen[1], (method, suffix)
    assert ok(other.get("/v1/collections/secret-kb"))["document_count"] == 1  # untouched
    # and a retriever cannot reach it either
    error(api.post("/v1/retrievers", json={"retriever_name": "peek", "collection_identifiers": ["secret-kb"],
                                           "stages": [stage("l", "limit", n=1)]}), 404, "collection_not_found")
    error(api.post("/v1/retrievers/execute", json={"collection_identifiers": [theirs["collection_id"]],
                                                   "stages": [stage("l", "limit", n=1)]}), 404)


# Documents


def test_documents_single_batch_count_get_delete(api: httpx.Client) -> None:
    col = ok(api.post("/v1/collections", json={"collection_name": "notes"}))
    one = ok(api.post("/v1/collections/notes/documents", json={"metadata": {"title": "first", "year": 2024}}))
    assert one["document_id"].startswith("doc_") and one["collection_id"] == col["collection_id"]
    named = ok(api.post(f"/v1/collections/{col['collection_id']}/documents",
                        json={"metadata": {"title": "second"}, "document_id": "note-2"}))
    assert named["document_id"] == "note-2"

    batch = ok(api.post("/v1/collections/notes/documents/batch", json={"documents": [
        {"metadata": {"title": f"batch {i}", "n": i}, "document_id": f"b-{i}"} for i in range(25)]}))
    assert batch["total"] == 25 and [d["document_id"] for d in batch["documents"]] == [f"b-{i}" for i in range(25)]
    assert batch["collection_id"] == col["collection_id"]
    assert ok(api.get("/v1/collections/notes/documents/count")) == {"collection_id": col["collection_id"],
                                                                    "count": 27}
    assert ok(api.get("/v1/collections/notes"))["document_count"] == 27

    got = ok(api.get("/v1/collections/notes/documents/b-7"))
    assert got["metadata"] == {"title": "batch 7", "n": 7} and got["created_at"]
    assert ok(api.delete("/v1/collections/notes/documents/b-7")) == {
        "document_id": "b-7", "collection_id": col["collection_id"], "deleted": True}
    error(api.get("/v1/collections/notes/documents/b-7"), 404, "document_not_found")
    error(api.delete("/v1/collections/notes/documents/b-7"), 404, "document_not_found")
    assert ok(api.get(f"/v1/collections/{col['collection_id']}/documents/count"))["count"] == 26


def test_document_conflicts_and_invalid_batches_write_nothing(api: httpx.Client) -> None:
    ok(api.post("/v1/collections", json={"collection_name": "notes"}))
    ok(api.post("/v1/collections/notes/documents", json={"metadata": {"t": 1}, "document_id": "n1"}))
    err = error(api.post("/v1/collections/notes/documents", json={"metadata": {"t": 2}, "document_id": "n1"}),
                409, "document_exists")
    assert err["details"]["document_ids"] == ["n1"]
    # all or nothing: a batch with one taken id writes none of the others
    error(api.post("/v1/collections/notes/documents/batch", json={"documents": [
        {"metadata": {"t": 3}, "document_id": "n2"}, {"metadata": {"t": 4}, "document_id": "n1"}]}), 409)
    error(api.post("/v1/collections/notes/documents/batch", json={"documents": [
        {"metadata": {"t": 3}, "document_id": "n3"}, {"metadata": {"t": 4}, "document_id": "n3"}]}), 422,
        "duplicate_document")
    error(api.post("/v1/collections/notes/documents/batch", json={"documents": []}), 422)
    error(api.post("/v1/collections/notes/documents", json={"metadata": {"a.b": 1}}), 422, "invalid_document")
    assert ok(api.get("/v1/collections/notes/documents/count"))["count"] == 1
    error(api.get("/v1/collections/notes/documents/n2"), 404, "document_not_found")


# Retrievers


REPORTS = [
    {"title": "Gantry crane hoist brake wear", "site": "Rotterdam", "year": 2024, "severity": "high"},
    {"title": "Reefer unit compressor overheating", "site": "Hamburg", "year": 2023, "severity": "medium"},
    {"title": "Gantry crane spreader sensor drift", "site": "Antwerp", "year": 2022, "severity": "low"},
    {"title": "Forklift hydraulic hose leak", "site": "Rotterdam", "year": 2021, "severity": "medium"},
]


def test_retrievers_create_list_get_execute_delete(api: httpx.Client, gateway: Proc,
                                                   tenant: tuple[str, str, str]) -> None:
    ok(api.post("/v1/collections", json={"collection_name": "reports"}))
    ok(api.post("/v1/collections/reports/documents/batch", json={"documents": [
        {"metadata": r, "document_id": f"r{i}"} for i, r in enumerate(REPORTS)]}))
    body = {"retriever_name": "crane-search", "description": "Crane reports by keyword, newest first",
            "collection_identifiers": ["reports"],
            "input_schema": {"query": {"type": "string", "required": True},
                             "min_year": {"type": "integer", "default": 2020}},
            "stages": [stage("search", "bm25_search", query="{{INPUT.query}}"),
                       stage("recent", "filter", field="metadata.year", operator="gte", value="{{INPUT.min_year}}"),
                       stage("newest", "sort", field="metadata.year", direction="desc")],
            "tags": ["ops"]}
    ret = ok(api.post("/v1/retrievers", json=body))
    ret_id = ret["retriever_id"]
    assert ret_id.startswith("ret_") and ret["retriever_name"] == "crane-search"
    assert [s["stage_name"] for s in ret["stages"]] == ["search", "recent", "newest"]
    assert ok(api.get(f"/v1/retrievers/{ret_id}")) == ret
    assert ok(api.get("/v1/retrievers/crane-search")) == ret
    listed = ok(api.post("/v1/retrievers/list"))
    assert listed["total"] == 1 and listed["results"] == [ret]
    assert ok(api.post("/v1/retrievers/list", json={"search": "nothing-like-it"}))["total"] == 0

    result = ok(api.post(f"/v1/retrievers/{ret_id}/execute", json={"inputs": {"query": "gantry crane"}}))
    assert result["status"] == "completed" and result["execution_id"].startswith("exec_")
    assert result["retriever_id"] == ret_id
    assert [d["document_id"] for d in result["documents"]] == ["r0", "r2"]  # newest first
    assert all(d["score"] > 0 for d in result["documents"]) and result["pagination"]["total"] == 2
    assert mixpeek.ExecuteRetrieverResponse.from_dict(result) is not None
    older = ok(api.post("/v1/retrievers/crane-search/execute",
                        json={"inputs": {"query": "gantry crane", "min_year": 2023}, "limit": 5}))
    assert [d["document_id"] for d in older["documents"]] == ["r0"]
    paged = ok(api.post(f"/v1/retrievers/{ret_id}/execute",
                        json={"inputs": {"query": "gantry crane"}, "pagination": {"page_size": 1, "page_number": 2}}))
    assert [d["document_id"] for d in paged["documents"]] == ["r2"] and paged["pagination"]["has_next"] is False
    error(api.post(f"/v1/retrievers/{ret_id}/execute", json={"inputs": {}}), 422, "missing_input")

    # the SDK's typed execute_retriever validates the same response strictly
    key, ns, _ = tenant
    client = mixpeek.ApiClient(mixpeek.Configuration(host=gateway.url, access_token=key,
                                                     api_key={"NamespaceHeader": ns}))
    try:
        typed = mixpeek.RetrieversApi(client).execute_retriever(
            ret_id, mixpeek.ExecuteRetrieverRequest(inputs={"query": "gantry crane"}))
    finally:
        client.rest_client.pool_manager.clear()
    assert [d["document_id"] for d in typed.documents or []] == ["r0", "r2"]

    dup = error(api.post("/v1/retrievers", json=body), 409, "retriever_exists")
    assert "crane-search" in dup["message"]
    assert ok(api.delete("/v1/retrievers/crane-search")) == {"retriever_id": ret_id,
                                                             "retriever_name": "crane-search", "deleted": True}
    error(api.get(f"/v1/retrievers/{ret_id}"), 404, "retriever_not_found")
    error(api.post(f"/v1/retrievers/{ret_id}/execute", json={}), 404, "retriever_not_found")
    error(api.delete(f"/v1/retrievers/{ret_id}"), 404, "retriever_not_found")


def test_adhoc_execute(api: httpx.Client) -> None:
    ok(api.post("/v1/collections", json={"collection_name": "reports"}))
    ok(api.post("/v1/collections/reports/documents/batch", json={"documents": [
        {"metadata": r, "document_id": f"r{i}"} for i, r in enumerate(REPORTS)]}))
    result = ok(api.post("/v1/retrievers/execute", json={
        "collection_identifiers": ["reports"],
        "stages": [stage("at-site", "filter", field="site", operator="eq", value="Rotterdam"),
                   stage("oldest", "sort", field="year", direction="asc")]}))
    assert [d["document_id"] for d in result["documents"]] == ["r3", "r0"]
    assert result["retriever_id"] is None and result["status"] == "completed"
    assert set(result["stage_statistics"]["stages"]) == {"at-site", "oldest"}
    searched = ok(api.post("/v1/retrievers/execute", json={
        "collection_identifiers": ["reports"], "inputs": {"q": "compressor"},
        "stages": [stage("s", "bm25_search", query="{{INPUT.q}}")]}))
    assert [d["document_id"] for d in searched["documents"]] == ["r1"]
    filtered = ok(api.post("/v1/retrievers/execute", json={
        "collection_identifiers": ["reports"], "stages": [stage("l", "limit", n=10)],
        "filters": {"AND": [{"field": "metadata.severity", "operator": "in", "value": ["low", "medium"]}]},
        "limit": 2}))
    assert [d["document_id"] for d in filtered["documents"]] == ["r1", "r2"]
    assert filtered["pagination"]["total"] == 3 and filtered["pagination"]["has_next"] is True
    error(api.post("/v1/retrievers/execute", json={"collection_identifiers": ["reports"], "stages": [],
                                                   "stream": True}), 422)


@pytest.mark.parametrize(("stages", "index", "name"), [
    ([stage("search", "bm25_search", query="x"), stage("teleport", "warp_drive")], 1, "teleport"),
    ([stage("search", "bm25_search", query="x"), stage("recent", "filter", field="year", operator="newer",
                                                       value=1)], 1, "recent"),
    ([stage("cut", "limit", n=0)], 0, "cut"),
    ([stage("order", "sort", field="year", direction="sideways")], 0, "order"),
    ([stage("search", "bm25_search")], 0, "search"),
    ([stage("search", "bm25_search", query="x", boost=2)], 0, "search"),
], ids=["unknown-stage-id", "unknown-operator", "limit-zero", "bad-direction", "missing-query", "unknown-param"])
def test_a_bad_stage_is_422_naming_the_stage(api: httpx.Client, stages: list[dict[str, Any]], index: int,
                                            name: str) -> None:
    ok(api.post("/v1/collections", json={"collection_name": "reports"}))
    ok(api.post("/v1/collections/reports/documents", json={"metadata": REPORTS[0]}))
    for resp in (api.post("/v1/retrievers", json={"retriever_name": "bad", "collection_identifiers": ["reports"],
                                                  "stages": stages}),
                 api.post("/v1/retrievers/execute", json={"collection_identifiers": ["reports"], "stages": stages})):
        err = error(resp, 422, "invalid_stage")
        assert err["details"]["stage_index"] == index and err["details"]["stage_name"] == name
        assert repr(name) in err["message"]
    error(api.get("/v1/retrievers/bad"), 404, "retriever_not_found")  # nothing was saved


# End to end: ingest ~200 reports, ask the agent, check it is grounded in the right ones

SITES = ["Rotterdam", "Hamburg", "Antwerp", "Gdansk", "Valencia", "Marseille", "Genoa", "Piraeus", "Lisbon",
         "Dublin"]
EQUIPMENT = ["gantry crane", "reefer unit", "straddle carrier", "forklift", "air compressor", "diesel generator",
             "ballast valve", "hydraulic winch", "transformer", "cooling tower", "conveyor belt", "mooring bollard"]
FAULTS = [
    ("bearing wear", "vibration readings rose above the alarm threshold"),
    ("oil leak", "a film of oil collected under the housing"),
    ("overheating", "the casing temperature passed ninety degrees"),
    ("sensor drift", "readings wandered from the reference gauge"),
    ("misalignment", "the drive shaft ran visibly off axis"),
    ("corroded terminals", "green deposits covered the supply terminals"),
    ("firmware fault", "the controller rebooted every few minutes"),
    ("seal failure", "water seeped past the main seal"),
]
ACTIONS = ["replaced the worn parts", "recalibrated the controller", "tightened the mountings",
           "flushed and refilled the fluid", "rewired the supply", "fitted a temporary bypass"]
SHIFTS = ["morning", "afternoon", "night"]
# The answer: three reports, and only these, mention impeller cavitation at Tromso.
NEEDLES = {
    "mr-tromso-1": {"title": "Impeller cavitation on the seawater intake pump at Tromso",
                    "body": "Divers confirmed pitting on the impeller blades; cavitation started when the intake "
                            "strainer clogged with kelp. The crew cleaned the strainer and lowered the pump speed.",
                    "site": "Tromso", "equipment": "seawater intake pump", "severity": "high", "year": 2025},
    "mr-tromso-2": {"title": "Tromso intake pump: cavitation returns after impeller swap",
                    "body": "Noise like gravel in the casing; suction pressure fell below the vapour limit. The "
                            "impeller was replaced with a bronze one and a pressure alarm was added.",
                    "site": "Tromso", "equipment": "seawater intake pump", "severity": "high", "year": 2025},
    "mr-tromso-3": {"title": "Cavitation survey, Tromso seawater intake",
                    "body": "Acoustic survey of the impeller showed cavitation bubbles collapsing at the blade "
                            "tips during low tide. Recommended raising the pump inlet by half a metre.",
                    "site": "Tromso", "equipment": "seawater intake pump", "severity": "medium", "year": 2024},
}
# Near misses: the same pump type elsewhere, with other faults (they match some query words).
DECOYS = {
    f"mr-decoy-{i}": {"title": f"Seawater intake pump {fault} at {site}",
                      "body": f"The seawater intake pump at {site} showed {fault}: {symptom}.",
                      "site": site, "equipment": "seawater intake pump", "severity": "low", "year": 2023}
    for i, (site, (fault, symptom)) in enumerate(zip(["Hamburg", "Gdansk", "Dublin"], FAULTS, strict=False))
}
QUESTION = "find documents about impeller cavitation in the seawater intake pump at Tromso"


def maintenance_reports(n: int = 200, seed: int = 20261126) -> list[dict[str, Any]]:
    """``n`` deterministic reports: mostly generated filler, the decoys and the needles spread in."""
    rng = random.Random(seed)
    filler = n - len(NEEDLES) - len(DECOYS)
    out: list[dict[str, Any]] = []
    for i in range(filler):
        site, equipment = rng.choice(SITES), rng.choice(EQUIPMENT)
        fault, symptom = rng.choice(FAULTS)
        out.append({"document_id": f"mr-{i:04d}", "metadata": {
            "title": f"{equipment.capitalize()} {fault} at {site}",
            "body": f"During the {rng.choice(SHIFTS)} shift at {site}, the {equipment} showed {fault}: {symptom}. "
                    f"The crew {rng.choice(ACTIONS)} and logged {rng.randint(1, 48)} hours of downtime.",
            "site": site, "equipment": equipment, "severity": rng.choice(["low", "medium", "high"]),
            "year": rng.randint(2019, 2025), "tags": [equipment.split()[-1], fault.split()[0]]}})
    special = [{"document_id": k, "metadata": v} for k, v in {**DECOYS, **NEEDLES}.items()]
    for doc in special:
        out.insert(rng.randrange(len(out) + 1), doc)
    return out


def test_generated_reports_are_deterministic_and_keep_the_answer_in_the_needles() -> None:
    docs = maintenance_reports()
    assert docs == maintenance_reports() and len(docs) == 200
    assert len({d["document_id"] for d in docs}) == 200
    rare = ("impeller", "cavitation", "tromso")
    holders = {d["document_id"] for d in docs if any(w in json.dumps(d["metadata"]).lower() for w in rare)}
    assert holders == set(NEEDLES)
    # the instruction words of the question appear in no report, so they cannot skew the ranking
    assert not [d for d in docs if re.search(r"\b(find|documents?|about)\b", json.dumps(d["metadata"]).lower())]


def ingest(api: httpx.Client, docs: list[dict[str, Any]]) -> str:
    col = ok(api.post("/v1/collections", json={"collection_name": "maintenance-reports",
                                               "description": "Port equipment maintenance reports"}))
    ok(api.post("/v1/collections", json={"collection_name": "site-contacts",
                                         "description": "Who to call at each terminal"}))
    ok(api.post("/v1/collections/site-contacts/documents/batch", json={"documents": [
        {"metadata": {"site": s, "contact": f"duty manager {s}", "phone": f"+00 {i:04d}"}} for i, s in
        enumerate(SITES)]}))
    first, rest = docs[:5], docs[5:]
    for d in first:  # a few one by one, the rest in batches
        ok(api.post("/v1/collections/maintenance-reports/documents", json=d))
    for i in range(0, len(rest), 50):
        assert ok(api.post(f"/v1/collections/{col['collection_id']}/documents/batch",
                           json={"documents": rest[i:i + 50]}))["total"] == len(rest[i:i + 50])
    assert ok(api.get("/v1/collections/maintenance-reports/documents/count"))["count"] == len(docs)
    return str(col["collection_id"])


def test_the_agent_answers_from_the_right_reports(api: httpx.Client, gateway: Proc,
                                                  tenant: tuple[str, str, str]) -> None:
    ingest(api, maintenance_reports())
    ses = ok(api.post("/v1/agents/sessions", json={"agent_config": {}}))["session_id"]

    events: list[tuple[str, str, dict[str, Any]]] = []
    with connect_sse(api, "POST", f"/v1/agents/sessions/{ses}/messages", json={"content": QUESTION}) as source:
        assert source.response.status_code == 200
        assert source.response.headers["content-type"].startswith("text/event-stream")
        for sse in source.iter_sse():
            if sse.data == "" and sse.event == "message":
                continue  # the leading "retry:" block: httpx-sse yields it, a browser would not dispatch it
            events.append((sse.id, sse.event, json.loads(sse.data)))
    kinds = [k for _, k, _ in events]
    assert kinds[-1] == "done" and kinds.count("done") == 1 and "error" not in kinds
    data = {k: d for _, k, d in events}
    assert data["intent"]["intent"] == "retriever_search"

    calls = {d["tool_call_id"]: d["tool_name"] for _, k, d in events if k == "tool_call"}
    assert sorted(calls.values()) == ["list_collections", "smart_search"]
    [search] = [d for _, k, d in events if k == "tool_result" and d["tool_name"] == "smart_search"]
    assert search["success"] is True and calls[search["tool_call_id"]] == "smart_search"
    found = [doc["document_id"] for doc in search["output"]["documents"]]
    assert set(found[:3]) == set(NEEDLES), found  # the answer ranks first ...
    assert set(found[3:]) <= set(DECOYS), found  # ... then only the near misses
    assert search["output"]["pagination"]["total"] == len(NEEDLES) + len(DECOYS)
    assert sorted(search["output"]["collections_searched"]) == ["maintenance-reports", "site-contacts"]

    runs = [d for _, k, d in events if k == "retriever_execution"]
    assert len(runs) == 1 and runs[0]["tool_name"] == "smart_search"
    assert runs[0]["documents_returned"] == len(found) and runs[0]["is_adhoc"] is True
    assert runs[0]["execution_id"] == search["output"]["execution_id"]
    assert kinds.index("retriever_execution") > kinds.index("tool_result")

    answer = data["message"]["content"]
    for doc_id in NEEDLES:
        assert f"[{doc_id}]" in answer, answer
    assert answer == "".join(d["content"] for _, k, d in events if k == "token")
    summary = data["done"]["retriever_summary"]
    assert summary["total_documents"] == sum(r["documents_returned"] for r in runs) == len(found)
    assert summary["retriever_count"] == len(runs) and data["done"]["data_accessed_via_retriever"] is True
    assert data["done"]["tool_calls_made"] == 2

    # the same question through the SDK, without streaming: a dict whose content cites the reports
    key, ns, _ = tenant
    client = mixpeek.ApiClient(mixpeek.Configuration(host=gateway.url, access_token=key,
                                                     api_key={"NamespaceHeader": ns}))
    try:
        sdk = mixpeek.AgentSessionsApi(client)
        sid = sdk.create_session_agents(mixpeek.CreateSessionRequest(agent_config=mixpeek.AgentConfig())).session_id
        reply = sdk.send_message_agents_sessions(sid, mixpeek.SendMessageRequest(content=QUESTION, stream=False),
                                                 _request_timeout=30.0)
    finally:
        client.rest_client.pool_manager.clear()
    assert isinstance(reply, dict)
    for doc_id in NEEDLES:
        assert f"[{doc_id}]" in reply["content"], reply["content"]
    assert reply["retriever_summary"]["total_documents"] == len(found)
    assert reply["data_accessed_via_retriever"] is True and reply["tool_calls_made"] == 2
