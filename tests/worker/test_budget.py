"""Oversized tool results are cut to a budget, flagged, instead of failing the message (issue 15.9:
a search whose results exceeded the 1 MiB event cap ended with ``event_too_large``, and HTTP 500
with ``stream: false``)."""

from __future__ import annotations

import httpx

from tests import sse
from tests.gateway.test_messages import new_session, send
from worker.tools import budget


def test_fit_leaves_small_outputs_alone_and_cuts_documents_to_the_budget() -> None:
    small = {"documents": [{"document_id": "d", "metadata": {"title": "t"}}]}
    assert budget.fit(small, 1000) is small
    docs = [{"document_id": f"d{i}", "score": 1.0, "metadata": {"title": f"t{i}", "body": "x" * 50_000,
                                                                   "tags": ["a"] * 5000, "n": 7}} for i in range(5)]
    out = budget.fit({"execution_id": "e", "documents": docs}, 20_000)
    assert budget.size(out) <= 20_000 and out["truncated"] is True and out["execution_id"] == "e"
    assert [d["document_id"] for d in out["documents"]] == [f"d{i}" for i in range(5)]
    first = out["documents"][0]
    assert first["truncated"] is True and first["metadata"]["n"] == 7 and first["metadata"]["title"] == "t0"
    assert first["metadata"]["body"].startswith("xxx") and first["metadata"]["body"].endswith(budget.MARK)
    assert budget.fit({"text": "y" * 10_000}, 500)["truncated"] is True


def test_search_results_over_the_event_cap_are_trimmed_not_a_failed_message(api: httpx.Client) -> None:
    col = api.post("/v1/collections", json={"collection_name": "zebras"}).json()["collection_id"]
    for i in range(5):  # 5 x 250 KB of matching documents: over the 1 MiB event cap together
        r = api.post(f"/v1/collections/{col}/documents", json={"metadata": {
            "title": f"zebra {i}", "body": "zebra stripes " + "lorem ipsum " * 20_000}})
        assert r.status_code == 200, r.text
    sid = new_session(api)
    r = send(api, sid, "find documents about zebra stripes")
    events = sse.parse(r.text)
    sse.check_stream(events)
    assert events[-1].type == "done", events[-1].data
    result = next(e for e in events if e.type == "tool_result" and e.data["tool_name"] == "smart_search")
    assert result.data["success"] is True and result.data["output"]["truncated"] is True
    found = result.data["output"]["documents"]
    assert len(found) == 5 and all(d["truncated"] for d in found)
    assert all(d["metadata"]["title"].startswith("zebra") for d in found)
    answer = send(api, sid, "find documents about zebra stripes", stream=False)
    assert answer.status_code == 200 and answer.json()["status"] == "completed", answer.text
