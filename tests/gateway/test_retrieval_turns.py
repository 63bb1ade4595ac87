"""Agent turns over the data plane: ad-hoc pipelines emit pipeline_config that reproduces the
documents when saved; saved retrievers count as saved in the summary."""

from __future__ import annotations

from tests import sse
from tests.gateway.seed import seed_demo_for
from tests.gateway.test_messages import new_session, send


def test_adhoc_pipeline_config_saved_as_a_retriever_reproduces_the_documents(api, stack, tenant):
    seed_demo_for(stack, tenant)
    sid = new_session(api)
    events = sse.parse(send(api, sid, "find notes about redis streams in the demo-docs collection").text)
    sse.check_stream(events)
    call = next(e for e in events if e.type == "tool_call" and e.data["tool_name"] != "list_collections")
    assert call.data["tool_name"] == "execute_adhoc_retriever"
    result = next(e for e in events if e.type == "tool_result" and e.data["tool_call_id"] == call.data["tool_call_id"])
    config = next(e for e in events if e.type == "pipeline_config").data
    run = next(e for e in events if e.type == "retriever_execution").data
    assert run["is_adhoc"] is True and run["retriever_id"] is None
    ids = [d["document_id"] for d in result.data["output"]["documents"]]
    assert ids and run["documents_returned"] == len(ids)
    saved = api.post("/v1/retrievers", json={"retriever_name": "from-chat", **config["config"]})
    assert saved.status_code == 200, saved.text
    again = api.post(f"/v1/retrievers/{saved.json()['retriever_id']}/execute", json={"inputs": {}})
    assert [d["document_id"] for d in again.json()["documents"]] == ids
    done = events[-1].data
    assert done["retriever_summary"]["adhoc_retrievers"] == 1 and done["retriever_summary"]["saved_retrievers"] == 0

    named = sse.parse(send(api, sid, "find redis streams notes using the from-chat retriever").text)
    call = next(e for e in named if e.type == "tool_call" and e.data["tool_name"] != "list_collections")
    assert call.data["tool_name"] == "execute_retriever"
    run = next(e for e in named if e.type == "retriever_execution").data
    assert run["is_adhoc"] is False and run["retriever_id"] == saved.json()["retriever_id"]
    summary = named[-1].data["retriever_summary"]
    assert summary["saved_retrievers"] == 1 and summary["total_documents"] == run["documents_returned"]


def test_smart_search_is_ad_hoc_and_says_how_to_save_it(api, stack, tenant):
    seed_demo_for(stack, tenant)
    sid = new_session(api)
    events = sse.parse(send(api, sid, "find documents about redis cluster hash tags").text)
    config = next(e for e in events if e.type == "pipeline_config").data
    assert config["tool_name"] == "smart_search" and config["config"]["stages"][0]["config"]["stage_id"] == "bm25_search"
