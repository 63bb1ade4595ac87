"""OpenAI-compatible models end to end: real gateway and worker processes, the model played by the
fake Chat Completions server, chosen by ``AGENTSTREAM_MODELS``.

The fake runs in this test process (a thread); the worker reaches it over HTTP on 127.0.0.1.
Nothing is answered unless a test scripted it (``responder=None``), so every request the worker
makes is one a test asked for. Cancel, hand-over and a worker killed mid-answer are in
``tests/faults/test_openai_handover.py``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import mixpeek
import pytest
from mixpeek import AgentConfig, CreateSessionRequest

from tests.fakes.openai_server import FakeOpenAI, Reply, Text, ToolCall
from tests.sdk.helpers import check_stream, parse_sse, sdk_client
from tests.stack import Stack
from tests.worker.openai_support import (
    INPUTS,
    KEY,
    MODEL,
    QUESTION,
    ask,
    client_for,
    gateway_of,
    new_session,
    seeded_tenant,
    start_stack,
    tool_messages,
)


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(responder=None) as server:
        yield server


@pytest.fixture(scope="module")
def stack(fake: FakeOpenAI) -> Iterator[Stack]:
    s = start_stack(fake, workers=1)
    yield s
    s.stop()


@pytest.fixture
def responder(fake: FakeOpenAI) -> Iterator[FakeOpenAI]:
    """The fake, back to "nothing unscripted" and an empty queue after the test."""
    yield fake
    fake.responder = None
    fake.replies.clear()


@pytest.fixture
def tenant(stack: Stack) -> tuple[str, str, str]:
    return seeded_tenant(stack)


@pytest.fixture
def api(stack: Stack, tenant: tuple[str, str, str]) -> Iterator[httpx.Client]:
    with client_for(stack, tenant) as client:
        yield client


# --- the "done when": a configured model streams with tools, usage and done -----------------------


def test_plain_http_session_streams_parallel_tool_calls_usage_and_done(api: httpx.Client,
                                                                       responder: FakeOpenAI) -> None:
    fake = responder
    first = len(fake.served)
    fake.script(Reply([Text("Let me ", "look. "), ToolCall("list_collections", {}, chunks=1),
                       ToolCall("smart_search", INPUTS, chunks=4)], prompt_tokens=101, completion_tokens=17))

    def cite(body: dict[str, Any]) -> Reply:
        """The second step: answer from the search result the worker sent back."""
        search = json.loads(tool_messages(body)[1]["content"])
        return Reply([Text("The best match is ", search["documents"][0]["document_id"], ".")],
                     prompt_tokens=230, completion_tokens=42)

    fake.responder = cite
    sid = new_session(api, model=MODEL)
    session = api.get(f"/v1/agents/sessions/{sid}").json()
    assert (session["effective_model"], session["model_provider"]) == (MODEL, "openai")
    assert session["agent_config"]["model"] == MODEL

    mid, events = ask(api, sid, QUESTION)

    types = [e.type for e in events]
    # A step's calls are recorded together, then each result (issue 18: a retry finds the whole
    # step or none of it).
    assert types == ["intent", "thinking", "token", "token", "thinking", "tool_call", "tool_call", "tool_result",
                     "tool_result", "retriever_execution", "pipeline_config", "token", "token", "token", "message",
                     "session_name", "done"], types
    assert events[4].data == {"step": "tool_selection", "message": "Using list_collections, smart_search"}
    calls = [e.data for e in events if e.type == "tool_call"]
    results = [e.data for e in events if e.type == "tool_result"]
    assert [(c["tool_name"], c["inputs"]) for c in calls] == [("list_collections", {}), ("smart_search", INPUTS)]
    assert [r["tool_call_id"] for r in results] == [c["tool_call_id"] for c in calls]
    assert all(r["success"] for r in results)
    docs = results[1]["output"]["documents"]
    assert 0 < len(docs) <= INPUTS["limit"] and "hash tags" in json.dumps(docs[0]).lower()

    sent = fake.served[first:]
    assert len(sent) == 2
    for s in sent:
        assert s.headers["authorization"] == f"Bearer {KEY}"
        assert s.body["model"] == MODEL and s.body["stream"] is True
        assert s.body["stream_options"] == {"include_usage": True}
        assert s.body["max_tokens"] == 4096 and s.body["temperature"] == 0.7  # AgentConfig's defaults
    assert sent[0].body["messages"][1:] == [{"role": "user", "content": QUESTION}]
    (assistant,) = [m for m in sent[1].body["messages"] if m["role"] == "assistant"]
    assert [c["id"] for c in assistant["tool_calls"]] == [c["tool_call_id"] for c in calls]
    # What the model was sent back is exactly what the client saw.
    assert [json.loads(m["content"]) for m in tool_messages(sent[1].body)] == [r["output"] for r in results]

    tokens = [e.data["content"] for e in events if e.type == "token"]
    assert tokens == ["Let me ", "look. ", "The best match is ", docs[0]["document_id"], "."]
    message = next(e.data for e in events if e.type == "message")
    assert message == {"content": "".join(tokens), "message_id": mid, "is_final": True}
    done = events[-1].data
    assert done["message_id"] == mid and done["tool_calls_made"] == 2
    assert done["data_accessed_via_retriever"] is True
    assert done["total_tokens"] == (101 + 17) + (230 + 42)
    stats = api.get(f"/v1/agents/sessions/{sid}").json()["stats"]
    assert stats["total_tokens"] == done["total_tokens"] and stats["total_tool_calls"] == 2


def test_mixpeek_sdk_session_streams_from_the_configured_model(stack: Stack, tenant: tuple[str, str, str],
                                                               responder: FakeOpenAI) -> None:
    fake = responder
    first = len(fake.served)
    fake.script(Reply([Text("Searching. "), ToolCall("smart_search", INPUTS)], prompt_tokens=40, completion_tokens=6),
                Reply([Text("Wrap the ", "session id in braces.")], prompt_tokens=90, completion_tokens=7))
    key, ns, _ = tenant
    with sdk_client(gateway_of(stack).url, key, ns) as sdk:
        created = sdk.create_session_agents(CreateSessionRequest(agent_config=AgentConfig(model=MODEL)))
        assert sdk.get_session_agents(created.session_id).agent_config.model == MODEL
        resp = sdk.send_message_agents_sessions_with_http_info(
            created.session_id, mixpeek.SendMessageRequest(content=QUESTION), _request_timeout=30)
        assert isinstance(resp.data, str)  # the SDK hands an event stream over as one string
        events = parse_sse(resp.data)
        by_type = check_stream(events)
        assert [e.event for e in events if e.event.startswith("tool_")] == ["tool_call", "tool_result"]
        assert by_type["tool_call"].data["inputs"] == INPUTS and by_type["tool_result"].data["success"] is True
        assert by_type["message"].data["content"] == "Searching. Wrap the session id in braces."
        assert by_type["done"].data["total_tokens"] == 46 + 97 and by_type["done"].data["tool_calls_made"] == 1
        assert sdk.get_session_agents(created.session_id).stats.total_tokens == 46 + 97
    assert len(fake.served) - first == 2


def test_catalogue_defaults_aliases_and_keyless_local_servers(api: httpx.Client, responder: FakeOpenAI) -> None:
    fake = responder
    first = len(fake.served)
    fake.script(Reply([Text("local answer")]))
    sid = new_session(api, model="local/qwen2.5")  # a prefix entry, no max_tokens / temperature given
    config = api.get(f"/v1/agents/sessions/{sid}").json()["agent_config"]
    assert (config["max_tokens"], config["temperature"]) == (333, 0.1)
    _, events = ask(api, sid, "hello there")
    assert events[-1].type == "done"
    (s,) = fake.served[first:]
    assert s.body["model"] == "local/qwen2.5" and s.body["max_tokens"] == 333 and s.body["temperature"] == 0.1
    assert s.headers["authorization"] == "Bearer not-needed"  # no key configured: none of ours leaks

    # What the session sets wins over the catalogue's defaults.
    sid = new_session(api, model="local/qwen2.5", max_tokens=50, temperature=1.5)
    assert api.get(f"/v1/agents/sessions/{sid}").json()["agent_config"]["max_tokens"] == 50


def test_unknown_model_is_refused_listing_the_configured_ones(api: httpx.Client) -> None:
    r = api.post("/v1/agents/sessions", json={"agent_config": {"model": "gpt-unconfigured"}})
    assert r.status_code == 422, r.text
    error = r.json()["error"]
    assert error["code"] == "unsupported_model"
    assert error["details"]["available_models"] == ["agentstream-builtin", MODEL, "fake-stall", "local/*"]
    assert MODEL in error["message"] and "local/*" in error["message"]
    # No Anthropic key in this stack (and no fallback): Claude is the clear 422 it always was.
    r = api.post("/v1/agents/sessions", json={"agent_config": {"model": "claude-haiku-4-5-20251001"}})
    assert r.status_code == 422 and r.json()["error"]["code"] == "model_not_configured"


def test_a_session_that_names_no_model_runs_the_builtin_one(api: httpx.Client) -> None:
    sid = new_session(api)
    session = api.get(f"/v1/agents/sessions/{sid}").json()
    assert (session["effective_model"], session["model_provider"]) == ("agentstream-builtin", "builtin")
    assert session["agent_config"]["model"] == "agentstream-builtin"
    _, events = ask(api, sid, "hello")
    assert events[-1].type == "done"


# --- provider failures ----------------------------------------------------------------------------


def test_error_mid_stream_ends_the_message_with_provider_error(api: httpx.Client, responder: FakeOpenAI) -> None:
    fake = responder
    first = len(fake.served)
    fake.script(Reply([Text("Partial ", "answer ", "never sent")], error_after=3, error_type="server_error"))
    sid = new_session(api, model=MODEL)
    mid, events = ask(api, sid, "tell me about redis streams")
    assert [e.type for e in events] == ["intent", "thinking", "token", "token", "error"]
    err = events[-1].data
    assert err["code"] == "provider_error" and err["message_id"] == mid and err["recoverable"] is True
    assert err["details"] == {"provider": "openai", "kind": "server_error", "status": None, "retryable": True}
    assert KEY not in err["message"]
    assert len(fake.served) - first == 1  # not retried once chunks flowed
    assert api.get(f"/v1/agents/sessions/{sid}").json()["stats"]["total_tokens"] == 0


def test_429_with_retry_after_is_retried_then_answers(api: httpx.Client, responder: FakeOpenAI) -> None:
    fake = responder
    first = len(fake.served)
    fake.script(Reply(status=429, error_type="requests", error_code="rate_limit_exceeded", retry_after="1"),
                Reply([Text("after ", "the wait")], prompt_tokens=5, completion_tokens=2))
    sid = new_session(api, model=MODEL)
    _, events = ask(api, sid, "hello")
    assert [e.data["content"] for e in events if e.type == "token"] == ["after ", "the wait"]
    assert events[-1].type == "done" and events[-1].data["total_tokens"] == 7
    assert [s.status for s in fake.served[first:]] == [429, 200]


def test_429_beyond_the_retry_budget_is_a_provider_error_with_the_status(api: httpx.Client,
                                                                         responder: FakeOpenAI) -> None:
    fake = responder
    first = len(fake.served)
    fake.script(*[Reply(status=429, error_type="requests", error_code="rate_limit_exceeded",
                        retry_after_ms="20")] * 3)
    sid = new_session(api, model=MODEL)
    _, events = ask(api, sid, "hello")
    assert [e.type for e in events] == ["intent", "thinking", "error"]
    err = events[-1].data
    assert err["code"] == "provider_error" and "HTTP 429" in err["message"]
    assert err["details"]["status"] == 429 and err["details"]["retryable"] is True
    assert len(fake.served) - first == 3  # 1 + max_retries (2), then it gives up


def test_a_stalled_stream_times_out_and_closes_the_connection(api: httpx.Client, responder: FakeOpenAI) -> None:
    fake = responder
    first = len(fake.served)
    fake.script(Reply([Text("one ", "two ", "three")], stall_after=2))
    sid = new_session(api, model="fake-stall")  # timeout_s = 1 in the catalogue
    _, events = ask(api, sid, "hello")
    assert [e.type for e in events] == ["intent", "thinking", "token", "error"]
    assert events[-1].data["details"]["kind"] == "timeout_error"
    (s,) = fake.served[first:]
    assert s.body["model"] == "fake-upstream"  # the catalogue's alias
    assert s.disconnected.wait(15)
