"""The Anthropic provider end to end: real gateway and worker processes, Claude played by the fake.

The fake Messages API runs in this test process (a thread); the worker subprocess reaches it over
HTTP on 127.0.0.1 through ``AGENTSTREAM_ANTHROPIC_BASE_URL``. Nothing is answered unless a test
scripted it (``responder=None``), so every request the worker makes is one a test asked for.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests import sse
from tests.fakes.anthropic_server import FakeAnthropic, Reply, Text, ToolCall
from tests.gateway.seed import seed_demo_for
from tests.stack import Proc, Stack
from worker.recorded import call_id

MODEL = "claude-haiku-4-5-20251001"
KEY = "sk-ant-e2e-not-a-real-key"
QUESTION = "find documents about redis cluster hash tags"
INPUTS: dict[str, Any] = {"query": "redis cluster hash tags", "limit": 3}
TOOL_ID = "toolu_01E2eSmartSearch7Qx"


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeAnthropic]:
    with FakeAnthropic(responder=None) as server:
        yield server


@pytest.fixture(scope="module")
def claude(fake: FakeAnthropic) -> Iterator[tuple[Stack, Proc]]:
    """One Redis, one worker and one gateway that both hold the key and point at the fake."""
    s = Stack()
    try:
        s.start_redis()
        env = {"ANTHROPIC_API_KEY": KEY, "AGENTSTREAM_ANTHROPIC_BASE_URL": fake.url}
        s.start_worker(**env)
        gw = s.start_gateway(**env)
        s.wait_ready(gw)
        yield s, gw
    finally:
        s.stop()


@pytest.fixture
def responder(fake: FakeAnthropic) -> Iterator[FakeAnthropic]:
    """The fake, guaranteed back to "nothing unscripted" and an empty queue after the test."""
    yield fake
    fake.responder = None
    fake.replies.clear()


def client_for(gw: Proc, tenant: tuple[str, str, str]) -> httpx.Client:
    key, ns, _ = tenant
    return httpx.Client(base_url=gw.url, headers={"Authorization": f"Bearer {key}", "X-Namespace": ns},
                        timeout=30)


@pytest.fixture
def api(claude: tuple[Stack, Proc]) -> Iterator[httpx.Client]:
    stack, gw = claude
    tenant = stack.new_tenant()
    seed_demo_for(stack, tenant)
    with client_for(gw, tenant) as client:
        yield client


def new_session(api: httpx.Client, model: str = MODEL, **config: Any) -> str:
    r = api.post("/v1/agents/sessions", json={"agent_config": {"model": model, **config}})
    assert r.status_code == 200, r.text
    return str(r.json()["session_id"])


def ask(api: httpx.Client, sid: str, content: str) -> tuple[str, list[sse.Ev]]:
    r = api.post(f"/v1/agents/sessions/{sid}/messages", json={"content": content})
    assert r.status_code == 200, r.text
    events = sse.parse(r.text)
    sse.check_stream(events)
    return r.headers["x-message-id"], events


def tool_results_in(body: dict[str, Any]) -> list[dict[str, Any]]:
    last = body["messages"][-1]["content"]
    return [b for b in last if b.get("type") == "tool_result"] if isinstance(last, list) else []


# --- a full tool-use round trip -----------------------------------------------------------------


def test_tool_use_round_trip_streams_claude_answer(api: httpx.Client, responder: FakeAnthropic) -> None:
    fake = responder
    first = len(fake.requests)
    fake.script(Reply([Text("Let me ", "search. "), ToolCall("smart_search", INPUTS, chunks=4, id=TOOL_ID)],
                      input_tokens=101, output_tokens=17))
    answered: list[Reply] = []

    def cite(body: dict[str, Any]) -> Reply:
        """Claude's second step: answer from the tool result the worker sent back."""
        (result,) = tool_results_in(body)
        doc_id = json.loads(result["content"])["documents"][0]["document_id"]
        reply = Reply([Text("The best match is ", doc_id, ": wrap the session id ", "in braces.")],
                      input_tokens=230, output_tokens=42)
        answered.append(reply)
        return reply

    fake.responder = cite
    sid = new_session(api)
    session = api.get(f"/v1/agents/sessions/{sid}").json()
    assert session["effective_model"] == MODEL
    assert session["agent_config"]["model"] == MODEL

    mid, events = ask(api, sid, QUESTION)

    # Two requests reached the fake: the question, then the question plus the tool round trip.
    sent = fake.requests[first:]
    assert len(sent) == 2 and len(answered) == 1
    for r in sent:
        # SDK 2.x sends the key as a bearer token; the real API accepts that or x-api-key.
        assert r.headers.get("authorization") == f"Bearer {KEY}" or r.headers.get("x-api-key") == KEY
        assert r.body["model"] == MODEL and r.body["stream"] is True
        assert "temperature" not in r.body
        assert "smart_search" in {t["name"] for t in r.body["tools"]}
    assert sent[0].body["messages"] == [{"role": "user", "content": QUESTION}]
    # The call is known by its stable id (place, name, inputs), never by the id Anthropic
    # issued; the step goes back as the assistant said it: its text, then its tool_use.
    stable = call_id(mid, 0, "smart_search", INPUTS)
    assert stable != TOOL_ID
    assert sent[1].body["messages"][:2] == [
        {"role": "user", "content": QUESTION},
        {"role": "assistant", "content": [{"type": "text", "text": "Let me search. "},
                                          {"type": "tool_use", "id": stable, "name": "smart_search",
                                           "input": INPUTS}]}]

    types = [e.type for e in events]
    assert types == ["intent", "thinking", "token", "token", "thinking", "tool_call", "tool_result",
                     "retriever_execution", "pipeline_config", "token", "token", "token", "token", "message",
                     "session_name",
                     "done"], types
    assert events[1].data["step"] == "processing"
    assert events[4].data["step"] == "tool_selection"

    call = next(e.data for e in events if e.type == "tool_call")
    assert call == {"tool_name": "smart_search", "tool_call_id": stable, "inputs": INPUTS}

    result = next(e.data for e in events if e.type == "tool_result")
    assert result["tool_name"] == "smart_search" and result["tool_call_id"] == stable
    assert result["success"] is True and result.get("error") is None
    docs = result["output"]["documents"]
    assert 0 < len(docs) <= INPUTS["limit"]
    assert "demo-docs" in result["output"]["collections_searched"]
    assert "hash tags" in json.dumps(docs[0]).lower()  # the seeded document, really found
    # What Claude was sent back is exactly what the client saw.
    (sent_result,) = tool_results_in(sent[1].body)
    assert sent_result["tool_use_id"] == stable and sent_result["is_error"] is False
    assert json.loads(sent_result["content"]) == result["output"]

    run = next(e.data for e in events if e.type == "retriever_execution")
    assert run["tool_name"] == "smart_search" and run["is_adhoc"] is True and run["retriever_id"] is None
    assert run["documents_returned"] == len(docs)

    tokens = [e.data["content"] for e in events if e.type == "token"]
    doc_id = docs[0]["document_id"]
    assert tokens == ["Let me ", "search. ", "The best match is ", doc_id, ": wrap the session id ",
                      "in braces."]
    message = next(e.data for e in events if e.type == "message")
    assert message == {"content": "".join(tokens), "message_id": mid, "is_final": True}
    assert doc_id in message["content"]

    done = events[-1].data
    assert done["message_id"] == mid
    assert done["tool_calls_made"] == 1
    assert done["data_accessed_via_retriever"] is True
    summary = done["retriever_summary"]
    assert summary["used_retrievers"] is True and summary["retriever_count"] == 1
    assert summary["adhoc_retrievers"] == 1 and summary["saved_retrievers"] == 0
    assert summary["total_documents"] == run["documents_returned"] == len(docs)
    assert [x["execution_id"] for x in summary["executions"]] == [run["execution_id"]]
    assert done["total_tokens"] == (101 + 17) + (230 + 42)

    session = api.get(f"/v1/agents/sessions/{sid}").json()
    assert session["effective_model"] == MODEL
    assert session["stats"]["total_tokens"] == done["total_tokens"]
    assert session["stats"]["total_tool_calls"] == 1

    # The next message carries the conversation so far to Claude.
    fake.responder = None
    fake.script(Reply([Text("You asked about ", "hash tags.")], input_tokens=300, output_tokens=5))
    _, again = ask(api, sid, "what did I ask?")
    assert [e.type for e in again][-2:] == ["message", "done"]
    assert [e.data["content"] for e in again if e.type == "token"] == ["You asked about ", "hash tags."]
    assert fake.requests[-1].body["messages"] == [
        {"role": "user", "content": QUESTION}, {"role": "assistant", "content": message["content"]},
        {"role": "user", "content": "what did I ask?"}]
    assert api.get(f"/v1/agents/sessions/{sid}").json()["stats"]["total_tokens"] == done["total_tokens"] + 305


# --- provider failures --------------------------------------------------------------------------


def test_error_event_mid_stream_ends_the_message_with_provider_error(api: httpx.Client,
                                                                      responder: FakeAnthropic) -> None:
    fake = responder
    # Events: message_start, ping, block start, then the deltas: the error replaces the third delta.
    fake.script(Reply([Text("Partial ", "answer ", "never sent")], error_after=5, error="overloaded_error"))
    sid = new_session(api)
    mid, events = ask(api, sid, "tell me about redis streams")

    types = [e.type for e in events]
    assert types == ["intent", "thinking", "token", "token", "error"], types
    assert [e.data["content"] for e in events if e.type == "token"] == ["Partial ", "answer "]
    err = events[-1].data
    assert err["code"] == "provider_error"
    assert err["message_id"] == mid
    assert "overloaded_error" in err["message"] and KEY not in err["message"]
    assert not fake.replies  # consumed exactly once: a failure after events flowed is not retried

    # The stored stream says the same, and resuming it ends on the one error.
    replay = sse.parse(api.get(f"/v1/agents/sessions/{sid}/messages/{mid}/events").text)
    sse.check_stream(replay)
    assert replay == events


def test_refusals_are_retried_then_reported(api: httpx.Client, responder: FakeAnthropic) -> None:
    fake = responder
    first = len(fake.requests)
    fake.script(*[Reply(status=529, error="overloaded_error")] * 3)  # the SDK tries 1 + MAX_RETRIES
    sid = new_session(api)
    _, events = ask(api, sid, "hello")
    assert [e.type for e in events] == ["intent", "thinking", "error"]
    assert events[-1].data["code"] == "provider_error"
    assert "529" in events[-1].data["message"]
    assert len(fake.requests) - first == 3 and not fake.replies


# --- which models a session may ask for ---------------------------------------------------------


def test_unknown_model_is_refused(api: httpx.Client) -> None:
    for model in ("gpt-4o", "claude-opus-4-1-20250805"):
        r = api.post("/v1/agents/sessions", json={"agent_config": {"model": model}})
        assert r.status_code == 422, r.text
        assert r.json()["error"]["code"] == "unsupported_model"


def test_claude_without_a_key_is_refused_or_falls_back(claude: tuple[Stack, Proc]) -> None:
    stack, _ = claude
    tenant = stack.new_tenant()
    # ANTHROPIC_API_KEY="" hides a key the test runner's own environment might hold.
    strict = stack.start_gateway(ANTHROPIC_API_KEY="", AGENTSTREAM_FALLBACK_TO_BUILTIN="false")
    lenient = stack.start_gateway(ANTHROPIC_API_KEY="", AGENTSTREAM_FALLBACK_TO_BUILTIN="true")
    try:
        with client_for(strict, tenant) as api:
            r = api.post("/v1/agents/sessions", json={"agent_config": {"model": MODEL}})
            assert r.status_code == 422, r.text
            assert r.json()["error"]["code"] == "model_not_configured"
            r = api.post("/v1/agents/sessions", json={"agent_config": {"model": "gpt-4o"}})
            assert r.status_code == 422 and r.json()["error"]["code"] == "unsupported_model"
            r = api.post("/v1/agents/sessions", json={"agent_config": {"model": "agentstream-builtin"}})
            assert r.status_code == 200, r.text
        with client_for(lenient, tenant) as api:
            sid = new_session(api)
            assert api.get(f"/v1/agents/sessions/{sid}").json()["effective_model"] == "agentstream-builtin"
    finally:
        stack.stop_proc(strict)
        stack.stop_proc(lenient)


def test_error_in_the_step_after_a_tool_call_ends_with_one_error(api: httpx.Client,
                                                                 responder: FakeAnthropic) -> None:
    fake = responder
    fake.script(Reply([ToolCall("smart_search", INPUTS, id=TOOL_ID)]),
                Reply([Text("Found ", "it ", "lost")], error_after=5, error="api_error"))
    sid = new_session(api)
    _, events = ask(api, sid, QUESTION)
    types = [e.type for e in events]
    assert types == ["intent", "thinking", "thinking", "tool_call", "tool_result", "retriever_execution",
                     "pipeline_config", "token", "token", "error"], types
    assert events[-1].data["code"] == "provider_error" and "api_error" in events[-1].data["message"]
    assert not fake.replies
    # The failed answer is not an answer: no message, no done, and the session counted no tokens.
    assert api.get(f"/v1/agents/sessions/{sid}").json()["stats"]["total_tokens"] == 0


# --- issue 18.1: the recorded events are the agent's state --------------------------------------


def test_regression_18_1_an_approved_write_runs_once_though_claude_issues_fresh_tool_ids(
        api: httpx.Client, responder: FakeAnthropic) -> None:
    """Anthropic issues new ``toolu_`` ids on every response. A continuation that asked Claude
    again got a new id, found no recorded result, opened a new confirmation and paused again:
    every approval asked again and the collection was never created."""
    fake = responder
    name = f"claude-made-{os.urandom(3).hex()}"
    inputs = {"collection_name": name, "description": "made by Claude"}

    def claude(body: dict[str, Any]) -> Reply:
        if tool_results_in(body):
            return Reply([Text("Created ", name, ".")])
        return Reply([Text("I will create it. "), ToolCall("create_collection", inputs)])

    fake.responder = claude
    first = len(fake.requests)
    sid = new_session(api)
    r = api.post(f"/v1/agents/sessions/{sid}/messages", json={"content": f"create a collection named {name}"})
    mid = r.headers["x-message-id"]
    before = sse.parse(r.text)
    assert [e.type for e in before][-3:] == ["thinking", "tool_call", "confirmation_required"]
    stable = call_id(mid, 0, "create_collection", inputs)
    assert before[-2].data["tool_call_id"] == stable

    r = api.post(f"/v1/agents/sessions/{sid}/confirmations/{before[-1].data['confirmation_id']}",
                 json={"approved": True})
    assert r.status_code == 200, r.text
    after = sse.parse(r.text)
    sse.check_stream(before + after)
    types = [e.type for e in after]
    assert types == ["tool_result", "token", "token", "token", "message", "session_name", "done"], types
    assert after[0].data["success"] is True and after[0].data["tool_call_id"] == stable
    assert next(e for e in after if e.type == "message").data["content"] == f"I will create it. Created {name}."
    cols = api.post("/v1/collections/list", json={}).json()["results"]
    assert [c["collection_name"] for c in cols].count(name) == 1
    # Claude was asked for the tool step once; the continuation asked only for what follows it,
    # sending the recorded step back with the stable id.
    sent = [x.body for x in fake.requests[first:]]
    assert len(sent) == 2 and not tool_results_in(sent[0])
    (result,) = tool_results_in(sent[1])
    assert result["tool_use_id"] == stable and result["is_error"] is False
    assert sent[1]["messages"][-2]["content"][-1] == {"type": "tool_use", "id": stable,
                                                      "name": "create_collection", "input": inputs}
    full = sse.parse(api.get(f"/v1/agents/sessions/{sid}/messages/{mid}/events").text)
    assert [e.type for e in full].count("confirmation_required") == 1 and "reset" not in [e.type for e in full]
