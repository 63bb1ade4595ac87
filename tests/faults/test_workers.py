"""Worker faults with real processes and real signals: SIGKILL, SIGSTOP/SIGCONT (fencing),
SIGTERM (hand-over), poison messages (reaper), and cancellation at every stage."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator

import httpx
import pytest

from shared import keys
from tests.faults.harness import Listener, check_log, effective_tokens, record, stored, worker_running
from tests.gateway.seed import seed_demo_for
from tests.stack import Stack

pytestmark = pytest.mark.faults
QUESTION = "find documents about redis streams and consumer groups"
POISON = "__poison__"


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    s = Stack(env={"AGENTSTREAM_BUILTIN_TOKEN_DELAY_MS": "40", "AGENTSTREAM_LEASE_S": "2",
                   "AGENTSTREAM_REAPER_INTERVAL_S": "0.5", "AGENTSTREAM_WORKER_DRAIN_S": "1",
                   "AGENTSTREAM_FAULT_CRASH_MARKER": POISON, "AGENTSTREAM_MAX_TRIES": "3"})
    s.start_redis()
    s.start_worker()
    s.start_worker()
    gw = s.start_gateway()
    s.wait_ready(gw)
    yield s
    s.stop()


@pytest.fixture
def ctx(stack):
    tenant = stack.new_tenant()
    seed_demo_for(stack, tenant)
    key, ns, _ = tenant
    headers = {"Authorization": f"Bearer {key}", "X-Namespace": ns}
    gw = next(p for p in stack.procs if p.kind == "gateway")
    sid = httpx.post(gw.url + "/v1/agents/sessions", json={"agent_config": {}}, headers=headers).json()["session_id"]
    return stack, gw, headers, sid


def workers(stack: Stack) -> list:
    return [p for p in stack.procs if p.kind == "worker"]


def keep_two_workers(stack: Stack) -> None:
    for p in workers(stack):
        if p.popen.poll() is not None:
            stack.procs.remove(p)
    while len(workers(stack)) < 2:
        stack.start_worker()


def start(ctx, content: str = QUESTION) -> tuple[Listener, str]:
    stack, gw, headers, sid = ctx
    listener = Listener("POST", gw.url + f"/v1/agents/sessions/{sid}/messages", headers, {"content": content})
    listener.start()
    listener.wait_for(lambda evs: True if listener.status else False, 10)
    return listener, listener.response_headers["x-message-id"]


def tokens_seen(n: int):
    return lambda evs: sum(1 for e in evs if e.type == "token") >= n


def test_sigkill_mid_answer_completes_on_another_worker_within_15s(ctx):
    stack, gw, headers, sid = ctx
    keep_two_workers(stack)
    listener, mid = start(ctx)
    listener.wait_for(tokens_seen(5))
    victim = worker_running(stack, sid, mid)
    killed_at = time.monotonic()
    victim.popen.send_signal(signal.SIGKILL)
    listener.join(20)
    took = time.monotonic() - killed_at
    assert not listener.is_alive() and listener.error is None
    events = stored(stack, sid, mid)
    counts = check_log(events)
    print(f"\nSIGKILL: completed {took:.1f}s after the kill; attempt={record(stack, sid, mid)['attempt']}; {counts}")
    assert took < 15
    assert counts["terminal"] == 1 and events[-1].type == "done"
    assert counts["tool_reruns"] == 0  # recorded tool results were read back, not re-executed
    assert listener.events == events  # the open client saw exactly the stored log
    message = next(e for e in events if e.type == "message").data["content"]
    assert effective_tokens(events) == message  # continued exactly, or explicitly reset
    assert int(record(stack, sid, mid)["attempt"]) == 2
    keep_two_workers(stack)


def test_a_stale_worker_cannot_append_after_it_was_taken_over(ctx):
    stack, gw, headers, sid = ctx
    keep_two_workers(stack)
    listener, mid = start(ctx)
    listener.wait_for(tokens_seen(3))
    stale = worker_running(stack, sid, mid)
    stale.popen.send_signal(signal.SIGSTOP)  # presumed dead: it stops renewing its lease
    try:
        listener.join(20)
        assert record(stack, sid, mid)["status"] == "completed"
        before = stored(stack, sid, mid)
    finally:
        stale.popen.send_signal(signal.SIGCONT)  # wakes up mid-answer, still holding attempt 1
    time.sleep(1.5)  # let it try to append
    after = stored(stack, sid, mid)
    assert after == before  # fenced: not one event from the stale attempt landed
    assert check_log(after)["terminal"] == 1
    assert stale.popen.poll() is None  # it noticed, stopped that run, and lives on
    keep_two_workers(stack)


def test_sigterm_hands_the_message_over_at_once(ctx):
    stack, gw, headers, sid = ctx
    keep_two_workers(stack)
    listener, mid = start(ctx)
    listener.wait_for(tokens_seen(3))
    leaving = worker_running(stack, sid, mid)
    leaving.popen.send_signal(signal.SIGTERM)
    listener.join(20)
    assert leaving.popen.wait(10) == 0
    events = stored(stack, sid, mid)
    assert check_log(events) == {"terminal": 1, "tool_reruns": 0, "resets": 0}
    assert events[-1].type == "done"
    assert effective_tokens(events) == next(e for e in events if e.type == "message").data["content"]
    stack.procs.remove(leaving)
    keep_two_workers(stack)


def test_poison_message_ends_with_error_after_max_tries_and_does_not_block(ctx):
    stack, gw, headers, sid = ctx
    keep_two_workers(stack)
    listener, mid = start(ctx, f"hello {POISON}")
    healthy, healthy_mid = start(ctx, "hello, are you there?")
    deadline = time.monotonic() + 45
    while listener.is_alive() and time.monotonic() < deadline:
        keep_two_workers(stack)  # a supervisor restarting crashed workers
        time.sleep(0.2)
    listener.join(1)
    events = stored(stack, sid, mid)
    assert check_log(events)["terminal"] == 1
    assert events[-1].type == "error" and events[-1].data["code"] == "max_tries_exceeded"
    assert "3 attempts" in events[-1].data["message"]
    assert int(record(stack, sid, mid)["attempt"]) == 4  # three tries, then the reaper's fence
    healthy.join(20)
    assert stored(stack, sid, healthy_mid)[-1].type == "done"  # the queue kept moving
    keep_two_workers(stack)


def test_cancel_while_running_stops_promptly_with_one_terminal(ctx):
    stack, gw, headers, sid = ctx
    keep_two_workers(stack)
    listener, mid = start(ctx)
    listener.wait_for(tokens_seen(3))
    t0 = time.monotonic()
    r = httpx.post(gw.url + f"/v1/agents/sessions/{sid}/messages/{mid}/cancel", headers=headers)
    assert r.status_code == 200 and r.json()["cancelled"] is True and r.json()["status"] == "cancelled"
    listener.join(10)
    assert time.monotonic() - t0 < 3
    events = stored(stack, sid, mid)
    assert check_log(events)["terminal"] == 1
    assert events[-1].type == "error" and events[-1].data["code"] == "cancelled"
    again = httpx.post(gw.url + f"/v1/agents/sessions/{sid}/messages/{mid}/cancel", headers=headers)
    assert again.json()["cancelled"] is False and again.json()["status"] == "cancelled"  # idempotent
    time.sleep(1)
    assert stored(stack, sid, mid) == events  # the worker wrote nothing more


def test_cancel_before_the_job_starts(ctx):
    stack, gw, headers, sid = ctx
    for p in workers(stack):
        stack.stop_proc(p)
    try:
        r = httpx.post(gw.url + f"/v1/agents/sessions/{sid}/messages", json={"content": "hello", "stream": True},
                       headers=headers, timeout=httpx.Timeout(5, read=0.5))
    except httpx.ReadTimeout:
        r = None
    mid = record_latest(stack, sid)
    c = httpx.post(gw.url + f"/v1/agents/sessions/{sid}/messages/{mid}/cancel", headers=headers)
    assert c.json()["cancelled"] is True
    assert stack.redis_call(lambda r: r.exists(keys.ARQ_JOB + mid)) == 1  # queued, not yet run
    keep_two_workers(stack)
    # The job runs now and must find the message already over. arq drops a finished job's key
    # (keep_result=0): once it is gone the job has run, however long the workers took to start.
    deadline = time.monotonic() + 60
    while stack.redis_call(lambda r: r.exists(keys.ARQ_JOB + mid)):
        assert time.monotonic() < deadline, "the job never ran"
        time.sleep(0.1)
    events = stored(stack, sid, mid)
    assert [e.type for e in events] == ["error"] and events[0].data["code"] == "cancelled"
    assert r is None or r.status_code == 200


def test_client_disconnect_does_not_cancel(ctx):
    stack, gw, headers, sid = ctx
    keep_two_workers(stack)
    with httpx.Client(timeout=10) as client, client.stream(
            "POST", gw.url + f"/v1/agents/sessions/{sid}/messages", headers=headers, json={"content": QUESTION}) as r:
        mid = r.headers["x-message-id"]
        for _ in r.iter_bytes():
            break  # leave right away
    deadline = time.monotonic() + 20
    while record(stack, sid, mid).get("status") not in ("completed", "failed") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert stored(stack, sid, mid)[-1].type == "done"


def record_latest(stack: Stack, sid: str) -> str:
    """The session's latest message, waiting for the gateway to record it: a client that gave
    up waiting for the answer (a read timeout) may have left before the gateway got that far."""
    import json

    deadline = time.monotonic() + 30
    while not (rows := stack.redis_call(lambda r: r.xrevrange(keys.session_log(sid), count=1))):
        assert time.monotonic() < deadline, "the gateway never recorded the message"
        time.sleep(0.05)
    return json.loads(rows[0][1][b"d"])["message_id"]


def test_pid_helper_sanity(stack):
    assert all(p.popen.pid != os.getpid() for p in stack.procs)


def _accept_without_job(stack: Stack, sid: str, ns_id: str, content: str, claim: bool) -> str:
    """A message recorded as the gateway would, whose job never reached arq (or vanished)."""
    import asyncio

    from shared import keys
    from shared.ids import new_id, now_ms
    from shared.settings import Settings
    from shared.stores.messages import MessageStore
    from shared.stores.session_log import UserEntry

    async def go() -> str:
        redis = stack.client()  # any topology (tests/backends_suite runs these on Cluster and Sentinel)
        try:
            store = MessageStore(redis, Settings(lease_s=1))
            mid = new_id("msg")
            await redis.zadd(keys.ACTIVE, {f"{sid}/{mid}": now_ms()})
            await store.accept(sid, ns_id, mid, UserEntry(message_id=mid, ts=now_ms(), content=content),
                               content, None, "h")
            if claim:
                await store.claim(sid, mid, "ghost-worker")  # a worker that then vanished with its job
            return mid
        finally:
            await redis.aclose()

    return asyncio.run(go())


def test_a_message_whose_job_never_reached_the_queue_is_enqueued_by_the_reaper(ctx, stack):
    _, gw, headers, sid = ctx
    keep_two_workers(stack)
    ns_id = httpx.get(gw.url + f"/v1/agents/sessions/{sid}", headers=headers).json()["namespace_id"]
    mid = _accept_without_job(stack, sid, ns_id, "hello there", claim=False)
    listener = Listener("GET", gw.url + f"/v1/agents/sessions/{sid}/messages/{mid}/events", headers)
    listener.start()
    listener.join(20)
    events = stored(stack, sid, mid)
    assert events[-1].type == "done" and check_log(events)["terminal"] == 1
    assert listener.events == events


def test_a_running_message_whose_job_vanished_ends_with_job_lost(ctx, stack):
    _, gw, headers, sid = ctx
    ns_id = httpx.get(gw.url + f"/v1/agents/sessions/{sid}", headers=headers).json()["namespace_id"]
    mid = _accept_without_job(stack, sid, ns_id, "hello there", claim=True)
    listener = Listener("GET", gw.url + f"/v1/agents/sessions/{sid}/messages/{mid}/events", headers)
    listener.start()
    listener.join(15)
    events = stored(stack, sid, mid)
    assert [e.type for e in events] == ["error"] and events[0].data["code"] == "job_lost"
    assert listener.events == events


def test_a_job_started_by_a_worker_that_died_before_claiming_is_restarted(ctx, stack):
    """arq set its in-progress key (minutes long) but the worker died before our claim."""
    import asyncio

    from shared import keys
    from shared.settings import Settings
    from shared.stores import jobs

    _, gw, headers, sid = ctx
    keep_two_workers(stack)
    ns_id = httpx.get(gw.url + f"/v1/agents/sessions/{sid}", headers=headers).json()["namespace_id"]
    mid = _accept_without_job(stack, sid, ns_id, "hello there", claim=False)

    async def half_started() -> None:
        redis = stack.queue_client()  # where arq's keys live
        try:
            await redis.set(keys.ARQ_IN_PROGRESS + mid, b"1", px=310_000)  # as arq's start_jobs does
            import msgspec
            from arq.connections import ArqRedis

            arq = ArqRedis(connection_pool=redis.connection_pool, job_serializer=msgspec.json.encode,
                           job_deserializer=msgspec.json.decode, default_queue_name=keys.QUEUE)
            await jobs.enqueue(arq, Settings(), sid, mid)
        finally:
            await redis.aclose()

    asyncio.run(half_started())
    t0 = time.monotonic()
    listener = Listener("GET", gw.url + f"/v1/agents/sessions/{sid}/messages/{mid}/events", headers)
    listener.start()
    listener.join(30)
    events = stored(stack, sid, mid)
    assert events and events[-1].type == "done" and check_log(events)["terminal"] == 1
    assert time.monotonic() - t0 < 20  # not the 310 s arq would wait
