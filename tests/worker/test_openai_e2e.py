"""OpenAI-compatible models end to end: real gateway and worker processes, the model played by the
fake Chat Completions server, chosen by ``AGENTSTREAM_MODELS``.

The fake runs in this test process (a thread); the workers reach it over HTTP on 127.0.0.1.
Nothing is answered unless a test scripted it (``responder=None``), so every request a worker
makes is one a test asked for. Two workers with a short lease, so a killed or stopped worker's
message continues on the other.
"""

from __future__ import annotations

import json
import random
import signal
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import mixpeek
import pytest
from mixpeek import AgentConfig, CreateSessionRequest

from tests import sse
from tests.fakes.openai_server import FakeOpenAI, Reply, Text, ToolCall
from tests.faults.harness import Listener, check_log, effective_tokens, record, stored, worker_running
from tests.gateway.seed import seed_demo_for
from tests.sdk.helpers import check_stream, parse_sse, sdk_client
from tests.stack import Proc, Stack

KEY = "sk-openai-e2e-not-a-real-key"
MODEL = "fake-gpt"
QUESTION = "find documents about redis cluster hash tags"
INPUTS: dict[str, Any] = {"query": "redis cluster hash tags", "limit": 3}


def catalogue(fake: FakeOpenAI) -> str:
    return json.dumps({"models": {
        MODEL: {"provider": "openai", "base_url": fake.base_url, "api_key_env": "AS_TEST_FAKE_OPENAI_KEY"},
        "fake-stall": {"provider": "openai", "base_url": fake.base_url, "api_key_env": "AS_TEST_FAKE_OPENAI_KEY",
                       "timeout_s": 1, "model": "fake-upstream"},
        "local/*": {"provider": "openai", "base_url": fake.base_url, "max_tokens": 333, "temperature": 0.1},
    }})


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(responder=None) as server:
        yield server


@pytest.fixture(scope="module")
def stack(fake: FakeOpenAI) -> Iterator[Stack]:
    s = Stack(env={"AGENTSTREAM_MODELS": catalogue(fake), "AS_TEST_FAKE_OPENAI_KEY": KEY,
                   "AGENTSTREAM_FALLBACK_TO_BUILTIN": "false", "AGENTSTREAM_LEASE_S": "2",
                   "AGENTSTREAM_REAPER_INTERVAL_S": "0.5", "AGENTSTREAM_WORKER_DRAIN_S": "1"})
    try:
        s.start_redis()
        s.start_worker()
        s.start_worker()
        s.wait_ready(s.start_gateway())
        yield s
    finally:
        s.stop()


@pytest.fixture
def gw(stack: Stack) -> Proc:
    return next(p for p in stack.procs if p.kind == "gateway")


@pytest.fixture
def responder(fake: FakeOpenAI) -> Iterator[FakeOpenAI]:
    """The fake, back to "nothing unscripted" and an empty queue after the test."""
    yield fake
    fake.responder = None
    fake.replies.clear()


@pytest.fixture
def tenant(stack: Stack) -> tuple[str, str, str]:
    t = stack.new_tenant()
    seed_demo_for(stack, t)
    return t


@pytest.fixture
def api(gw: Proc, tenant: tuple[str, str, str]) -> Iterator[httpx.Client]:
    key, ns, _ = tenant
    with httpx.Client(base_url=gw.url, headers={"Authorization": f"Bearer {key}", "X-Namespace": ns},
                      timeout=30) as client:
        yield client


def new_session(api: httpx.Client, **config: Any) -> str:
    r = api.post("/v1/agents/sessions", json={"agent_config": config})
    assert r.status_code == 200, r.text
    return str(r.json()["session_id"])


def ask(api: httpx.Client, sid: str, content: str) -> tuple[str, list[sse.Ev]]:
    """As ``curl -N`` does: one POST, the SSE body read as it comes."""
    with api.stream("POST", f"/v1/agents/sessions/{sid}/messages", json={"content": content},
                    headers={"Accept": "text/event-stream"}) as r:
        assert r.status_code == 200, r.read()
        assert r.headers["content-type"].startswith("text/event-stream")
        text = "".join(r.iter_text())
        mid = r.headers["x-message-id"]
    events = sse.parse(text)
    sse.check_stream(events)
    return mid, events


def tool_messages(body: dict[str, Any]) -> list[dict[str, Any]]:
    return [m for m in body["messages"] if m["role"] == "tool"]


def workers(stack: Stack) -> list[Proc]:
    return [p for p in stack.procs if p.kind == "worker"]


def keep_two_workers(stack: Stack) -> None:
    for p in workers(stack):
        if p.popen.poll() is not None:
            stack.procs.remove(p)
    while len(workers(stack)) < 2:
        stack.start_worker()


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
    assert types == ["intent", "thinking", "token", "token", "thinking", "tool_call", "tool_result", "tool_call",
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


def test_mixpeek_sdk_session_streams_from_the_configured_model(gw: Proc, tenant: tuple[str, str, str],
                                                               responder: FakeOpenAI) -> None:
    fake = responder
    first = len(fake.served)
    fake.script(Reply([Text("Searching. "), ToolCall("smart_search", INPUTS)], prompt_tokens=40, completion_tokens=6),
                Reply([Text("Wrap the ", "session id in braces.")], prompt_tokens=90, completion_tokens=7))
    key, ns, _ = tenant
    with sdk_client(gw.url, key, ns) as sdk:
        created = sdk.create_session_agents(CreateSessionRequest(agent_config=AgentConfig(model=MODEL)))
        assert sdk.get_session_agents(created.session_id).agent_config.model == MODEL
        resp = sdk.send_message_agents_sessions_with_http_info(
            created.session_id, mixpeek.SendMessageRequest(content=QUESTION), _request_timeout=30)
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
    fake.script(*[Reply(status=429, error_type="requests", error_code="rate_limit_exceeded", retry_after="0")] * 3)
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


# --- cancel and hand-over reach the provider ------------------------------------------------------


def start(gw: Proc, api: httpx.Client, sid: str, content: str) -> tuple[Listener, str]:
    listener = Listener("POST", gw.url + f"/v1/agents/sessions/{sid}/messages", dict(api.headers),
                        {"content": content})
    listener.start()
    listener.wait_for(lambda evs: bool(listener.status), 10)
    return listener, listener.response_headers["x-message-id"]


def tokens_seen(n: int, after: str | None = None):  # type: ignore[no-untyped-def]
    def pred(evs: list[sse.Ev]) -> bool:
        start = next((i for i, e in enumerate(evs) if e.type == after), None) if after else 0
        return start is not None and sum(1 for e in evs[start:] if e.type == "token") >= n
    return pred


def test_cancel_closes_the_providers_stream(gw: Proc, api: httpx.Client, responder: FakeOpenAI) -> None:
    fake = responder
    first = len(fake.served)
    fake.script(Reply([Text("one ", "two ", "three ", "four")], stall_after=3))
    sid = new_session(api, model=MODEL)
    listener, mid = start(gw, api, sid, "hello")
    listener.wait_for(tokens_seen(2))
    served = fake.served[first]
    assert not served.disconnected.is_set()
    r = api.post(f"/v1/agents/sessions/{sid}/messages/{mid}/cancel")
    assert r.status_code == 200 and r.json()["cancelled"] is True
    listener.join(20)
    assert listener.events[-1].type == "error" and listener.events[-1].data["code"] == "cancelled"
    assert served.disconnected.wait(15)  # the worker closed the connection: no tokens paid for after it
    assert len(fake.served) - first == 1


@pytest.mark.faults
def test_sigterm_hand_over_closes_the_stream_and_another_worker_continues(
        stack: Stack, gw: Proc, api: httpx.Client, responder: FakeOpenAI) -> None:
    fake = responder
    keep_two_workers(stack)
    first = len(fake.served)
    fake.script(Reply([Text("one ", "two ", "three ", "four")], stall_after=3),
                Reply([Text("one ", "two ", "three ", "four")]))
    sid = new_session(api, model=MODEL)
    listener, mid = start(gw, api, sid, "hello")
    listener.wait_for(tokens_seen(2))
    leaving = worker_running(stack, sid, mid)
    leaving.popen.send_signal(signal.SIGTERM)
    assert fake.served[first].disconnected.wait(20)
    listener.join(30)
    assert leaving.popen.wait(10) == 0
    events = stored(stack, sid, mid)
    assert check_log(events) == {"terminal": 1, "tool_reruns": 0, "resets": 0}  # the same text: continued
    assert events[-1].type == "done" and effective_tokens(events) == "one two three four"
    assert listener.events == events
    stack.procs.remove(leaving)
    keep_two_workers(stack)


# --- a retry with a model that does not repeat itself ---------------------------------------------


class Sampling:
    """A model that samples: no two answers are worded alike, and its call ids are random, as
    OpenAI's are. Only the tool it picks (the same search for the same question) is stable.
    The first final answer is slow, so that a test can kill the worker in the middle of it."""

    OPENERS = ["Let me search. ", "Searching the docs. ", "One moment, looking. ", "I'll check the docs. "]
    WORDS = ["Braces", "keep", "related", "keys", "on", "one", "slot", "so", "multi-key", "commands", "work"]

    def __init__(self) -> None:
        self.rng = random.Random()
        self.last_opener = ""
        self.answers = 0
        self.lock = threading.Lock()

    def __call__(self, body: dict[str, Any]) -> Reply:
        with self.lock:
            if not tool_messages(body):
                opener = self.rng.choice([o for o in self.OPENERS if o != self.last_opener])
                self.last_opener = opener
                return Reply([Text(opener), ToolCall("smart_search", INPUTS)], prompt_tokens=30, completion_tokens=5)
            self.answers += 1
            doc = json.loads(tool_messages(body)[0]["content"])["documents"][0]["document_id"]
            words = [f"{w} " for w in self.rng.sample(self.WORDS, k=8)]
            return Reply([Text(f"({doc}) ", *words)], prompt_tokens=60, completion_tokens=len(words) + 1,
                         delay_s=0.3 if self.answers == 1 else 0.0)


@pytest.mark.faults
def test_sigkill_mid_answer_continues_on_another_worker_with_reset_and_reused_tool_results(
        stack: Stack, gw: Proc, api: httpx.Client, responder: FakeOpenAI) -> None:
    fake = responder
    keep_two_workers(stack)
    first = len(fake.served)
    fake.responder = Sampling()
    sid = new_session(api, model=MODEL)
    listener, mid = start(gw, api, sid, QUESTION)
    listener.wait_for(tokens_seen(3, after="tool_result"), 30)
    victim = worker_running(stack, sid, mid)
    victim.popen.send_signal(signal.SIGKILL)
    listener.join(40)
    assert not listener.is_alive() and listener.error is None

    events = stored(stack, sid, mid)
    assert listener.events == events  # the open client saw exactly the stored log
    assert events[-1].type == "done" and check_log(events)["terminal"] == 1
    assert int(record(stack, sid, mid)["attempt"]) == 2
    (reset,) = [e for e in events if e.type == "reset"]
    assert reset.data["reason"] == "retry" and reset.data["attempt"] == 2
    before, after = events[:events.index(reset)], events[events.index(reset) + 1:]
    # The new attempt's words differ from the dead one's, and the reset says so.
    first_tokens = [e.data["content"] for e in before if e.type == "token"]
    second_tokens = [e.data["content"] for e in after if e.type == "token"]
    assert first_tokens[0] != second_tokens[0]
    message = next(e for e in after if e.type == "message").data["content"]
    assert effective_tokens(events) == message == "".join(second_tokens)

    # The search ran once: the new attempt read its recorded result back, same call, same run.
    calls = [e.data for e in events if e.type == "tool_call"]
    assert len(calls) == 2 and calls[0] == calls[1]
    results = [e.data for e in events if e.type == "tool_result"]
    assert len(results) == 2 and results[0] == results[1]
    runs = [e.data["execution_id"] for e in events if e.type == "retriever_execution"]
    assert len(runs) == 2 and runs[0] == runs[1]
    # And the model was sent that same result on both attempts.
    answers = [s for s in fake.served[first:] if tool_messages(s.body)]
    assert len(answers) == 2
    assert tool_messages(answers[0].body) == tool_messages(answers[1].body)
    assert json.loads(tool_messages(answers[1].body)[0]["content"]) == results[0]["output"]
    done = events[-1].data
    assert done["tool_calls_made"] == 1 and done["total_tokens"] == (30 + 5) + (60 + 9)  # the new attempt's two steps
    keep_two_workers(stack)
