"""Issue 18: the recorded events are the agent's state. Real gateway and worker processes, real
signals, Claude played by the local fake, which issues fresh ``toolu_`` ids on every response
as the real API does: a retry or a continuation must never ask again for a recorded step, must
be taken over within the lease, must not spend a crash retry, and a fenced worker must leave
the job of the attempt that replaced it alone."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from shared import keys
from tests.fakes.anthropic_server import FakeAnthropic, Reply, Text, ToolCall
from tests.faults.harness import Listener, check_log, effective_tokens, record, stored, worker_running
from tests.gateway.seed import seed_demo_for
from tests.stack import Stack

pytestmark = pytest.mark.faults
MODEL = "claude-haiku-4-5-20251001"
SEARCH = {"query": "redis streams", "limit": 3}
SLOW_ANSWER = [f"word{i} " for i in range(40)]  # 40 text deltas, 0.1 s apart: time to kill mid-answer


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeAnthropic]:
    with FakeAnthropic(responder=None) as server:
        yield server


@pytest.fixture(scope="module")
def stack(fake: FakeAnthropic) -> Iterator[Stack]:
    # A 3 s lease: these tests crash a message up to its retry limit, so a renewal starved by a
    # loaded machine must not count as one more crash.
    s = Stack(env={"AGENTSTREAM_BUILTIN_TOKEN_DELAY_MS": "40", "AGENTSTREAM_LEASE_S": "3",
                   "AGENTSTREAM_REAPER_INTERVAL_S": "0.5", "AGENTSTREAM_WORKER_DRAIN_S": "1",
                   "AGENTSTREAM_MAX_TRIES": "3", "ANTHROPIC_API_KEY": "sk-ant-faults",
                   "AGENTSTREAM_ANTHROPIC_BASE_URL": fake.url})
    s.start_redis()
    s.start_worker()
    s.start_worker()
    gw = s.start_gateway()
    s.wait_ready(gw)
    yield s
    s.stop()


@pytest.fixture
def claude(fake: FakeAnthropic) -> Iterator[FakeAnthropic]:
    yield fake
    fake.responder = None
    fake.replies.clear()


@pytest.fixture
def ctx(stack: Stack) -> tuple[Stack, str, dict[str, str]]:
    tenant = stack.new_tenant()
    seed_demo_for(stack, tenant)
    key, ns, _ = tenant
    gw = next(p for p in stack.procs if p.kind == "gateway")
    return stack, gw.url, {"Authorization": f"Bearer {key}", "X-Namespace": ns}


def keep_two_workers(stack: Stack) -> None:
    for p in [p for p in stack.procs if p.kind == "worker"]:
        if p.popen.poll() is not None:
            stack.procs.remove(p)
    while sum(1 for p in stack.procs if p.kind == "worker") < 2:
        stack.start_worker()


def session(url: str, headers: dict[str, str], model: str = MODEL) -> str:
    r = httpx.post(url + "/v1/agents/sessions", json={"agent_config": {"model": model}}, headers=headers)
    assert r.status_code == 200, r.text
    return str(r.json()["session_id"])


def tool_results_in(body: dict[str, Any]) -> list[dict[str, Any]]:
    last = body["messages"][-1]["content"]
    return [b for b in last if b.get("type") == "tool_result"] if isinstance(last, list) else []


def attempt_of(stack: Stack, sid: str, mid: str) -> int:
    return int(record(stack, sid, mid).get("attempt", 0))


def wait_attempt(stack: Stack, sid: str, mid: str, attempt: int) -> None:
    deadline = time.monotonic() + 60  # new worker processes start slowly on a loaded machine
    while attempt_of(stack, sid, mid) < attempt:
        assert time.monotonic() < deadline, f"attempt {attempt} never started"
        time.sleep(0.02)


def kill_attempt(stack: Stack, sid: str, mid: str, attempt: int, sig: int = signal.SIGKILL) -> None:
    """Wait until ``attempt`` holds the message, then signal the worker running it."""
    wait_attempt(stack, sid, mid, attempt)
    worker_running(stack, sid, mid).popen.send_signal(sig)


def wait_tokens(listener: Listener, n: int) -> None:
    try:
        listener.wait_for(lambda evs: sum(1 for e in evs if e.type == "token") >= n, 30)
    except TimeoutError:
        raise AssertionError([(e.type, e.data) for e in listener.events[-3:]]) from None


def tool_step_requests(fake: FakeAnthropic, question: str) -> list[dict[str, Any]]:
    """The requests that asked Claude for this message's first step (no tool results yet)."""
    return [b for b in fake.bodies if b["messages"][-1].get("content") == question]


def test_regression_18_1_a_worker_killed_after_a_recorded_tool_result_does_not_rerun_the_tool(ctx, claude):
    stack, url, headers = ctx
    keep_two_workers(stack)
    question = f"find notes about redis streams ({os.urandom(3).hex()})"

    def respond(body: dict[str, Any]) -> Reply:
        if tool_results_in(body):
            return Reply([Text(*SLOW_ANSWER)], delay_s=0.1)
        return Reply([ToolCall("smart_search", SEARCH)])  # a fresh toolu_ id every time

    claude.responder = respond
    sid = session(url, headers)
    listener = Listener("POST", url + f"/v1/agents/sessions/{sid}/messages", headers, {"content": question})
    listener.start()
    wait_tokens(listener, 3)
    mid = listener.response_headers["x-message-id"]
    kill_attempt(stack, sid, mid, 1)
    listener.join(60)
    assert not listener.is_alive() and listener.error is None
    events = stored(stack, sid, mid)
    assert events[-1].type == "done", [(e.type, e.data) for e in events[-3:]]
    assert check_log(events)["terminal"] == 1
    assert [e.type for e in events].count("tool_call") == 1
    assert [e.type for e in events].count("tool_result") == 1  # read back, never run again
    assert effective_tokens(events) == next(e for e in events if e.type == "message").data["content"]
    assert listener.events == events
    assert attempt_of(stack, sid, mid) >= 2
    # The retry asked Claude only for the step after the recorded one.
    assert len(tool_step_requests(claude, question)) == 1
    keep_two_workers(stack)


def _paused_write(ctx, claude: FakeAnthropic) -> tuple[str, str, str, dict[str, Any]]:
    """A Claude message paused on create_collection; its continuation answers slowly."""
    stack, url, headers = ctx
    name = f"made-{os.urandom(3).hex()}"
    inputs = {"collection_name": name, "description": "made by Claude"}

    def respond(body: dict[str, Any]) -> Reply:
        if tool_results_in(body):
            return Reply([Text(*SLOW_ANSWER)], delay_s=0.1)
        return Reply([ToolCall("create_collection", inputs)])

    claude.responder = respond
    sid = session(url, headers)
    r = httpx.post(url + f"/v1/agents/sessions/{sid}/messages", json={"content": f"create a collection named {name}"},
                   headers=headers, timeout=30)
    assert r.status_code == 200 and "event: confirmation_required" in r.text, r.text
    conf_id = r.text.split('"confirmation_id":"')[1].split('"')[0]
    return sid, r.headers["x-message-id"], conf_id, inputs


def test_regression_18_2_a_killed_continuation_is_taken_over_within_the_lease(ctx, claude):
    """Answering a confirmation left the reaper looking at the message only at the
    confirmation's expiry (5 minutes): a killed continuation sat there with an expired lease.
    Killed twice, it also shows that a continuation spent no crash retry (18.9): with
    AGENTSTREAM_MAX_TRIES=3, attempts 2 and 3 crash and attempt 4 still runs."""
    stack, url, headers = ctx
    keep_two_workers(stack)
    sid, mid, conf_id, inputs = _paused_write(ctx, claude)
    listener = Listener("POST", url + f"/v1/agents/sessions/{sid}/confirmations/{conf_id}", headers,
                        {"approved": True})
    listener.start()
    wait_tokens(listener, 2)
    kill_attempt(stack, sid, mid, 2)  # the continuation
    keep_two_workers(stack)
    kill_attempt(stack, sid, mid, 3)  # and its retry
    keep_two_workers(stack)
    listener.join(60)  # far below the confirmation's 5 minutes
    assert not listener.is_alive() and listener.error is None
    events = stored(stack, sid, mid)
    assert events[-1].type == "done", [(e.type, e.data) for e in events[-3:]]
    assert check_log(events)["terminal"] == 1
    assert [e.type for e in events].count("tool_result") == 1  # the write ran once
    assert attempt_of(stack, sid, mid) >= 4
    cols = httpx.post(url + "/v1/collections/list", json={}, headers=headers).json()["results"]
    assert [c["collection_name"] for c in cols].count(inputs["collection_name"]) == 1


def test_regression_18_9_a_graceful_hand_over_spends_no_crash_retry(ctx):
    """SIGTERM hands the message over (not a crash); then two crashes: with
    AGENTSTREAM_MAX_TRIES=3 the fourth attempt still runs instead of max_tries_exceeded."""
    stack, url, headers = ctx
    keep_two_workers(stack)
    sid = session(url, headers, model="agentstream-builtin")
    listener = Listener("POST", url + f"/v1/agents/sessions/{sid}/messages", headers,
                        {"content": "find documents about redis streams and consumer groups"})
    listener.start()
    wait_tokens(listener, 2)
    mid = listener.response_headers["x-message-id"]
    leaving = worker_running(stack, sid, mid)
    kill_attempt(stack, sid, mid, 1, signal.SIGTERM)
    leaving.popen.wait(30)  # it drains, hands the message over and exits
    keep_two_workers(stack)
    kill_attempt(stack, sid, mid, 2)
    keep_two_workers(stack)
    kill_attempt(stack, sid, mid, 3)
    keep_two_workers(stack)
    listener.join(60)
    events = stored(stack, sid, mid)
    assert events[-1].type == "done", [(e.type, e.data) for e in events[-3:]]
    assert check_log(events) == {"terminal": 1, "tool_reruns": 0, "resets": 0}
    assert attempt_of(stack, sid, mid) >= 4
    keep_two_workers(stack)


def test_regression_18_6_a_fenced_worker_leaves_the_job_of_the_attempt_that_replaced_it(ctx):
    """A stalled worker wakes, is fenced and returns; arq's clean-up used to delete the job the
    new attempt runs under, so when that attempt died the reaper ended the message job_lost."""
    stack, url, headers = ctx
    keep_two_workers(stack)
    sid = session(url, headers, model="agentstream-builtin")
    listener = Listener("POST", url + f"/v1/agents/sessions/{sid}/messages", headers,
                        {"content": "find documents about redis streams and consumer groups"})
    listener.start()
    wait_tokens(listener, 2)
    mid = listener.response_headers["x-message-id"]
    stale = worker_running(stack, sid, mid)
    stale.popen.send_signal(signal.SIGSTOP)  # presumed dead: the lease lapses, attempt 2 starts
    try:
        wait_attempt(stack, sid, mid, 2)
    finally:
        stale.popen.send_signal(signal.SIGCONT)  # wakes up, is fenced, returns to arq
    time.sleep(1)  # let it finish that job as arq sees it
    assert stack.redis_call(lambda r: r.exists(keys.ARQ_JOB + mid)) == 1  # attempt 2's job is intact
    kill_attempt(stack, sid, mid, 2)  # now attempt 2 dies
    keep_two_workers(stack)
    listener.join(60)
    events = stored(stack, sid, mid)
    assert events[-1].type == "done", [(e.type, e.data) for e in events[-3:]]
    assert check_log(events)["terminal"] == 1
    assert attempt_of(stack, sid, mid) >= 3
    keep_two_workers(stack)
