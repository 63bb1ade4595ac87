"""Conversations in order (issue 20), through real processes: two gateways, two workers.

Messages of one session run one at a time in acceptance order; a waiting message says so on its
stream; ``X-Agentstream-Multitask`` picks another behaviour per request (reject, interrupt,
rollback); pauses, cancels and a killed worker never wedge a session; other sessions still run
in parallel.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator

import httpx
import pytest

from shared import keys
from tests import sse
from tests.faults.harness import Listener, check_log, record, stored, worker_running
from tests.gateway.seed import seed_demo_for
from tests.stack import Stack

pytestmark = pytest.mark.integration
QUESTION = "find documents about redis streams consumer groups"
HEADER = "X-Agentstream-Multitask"


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    s = Stack(env={"AGENTSTREAM_BUILTIN_TOKEN_DELAY_MS": "25", "AGENTSTREAM_LEASE_S": "2",
                   "AGENTSTREAM_REAPER_INTERVAL_S": "0.5", "AGENTSTREAM_WORKER_DRAIN_S": "1"})
    s.start_redis()
    s.start_worker()
    s.start_worker()
    a = s.start_gateway()
    s.start_gateway()
    s.wait_ready(a)
    yield s
    s.stop()


@pytest.fixture
def ctx(stack: Stack):  # type: ignore[no-untyped-def]
    tenant = stack.new_tenant()
    seed_demo_for(stack, tenant)
    key, ns, _ = tenant
    headers = {"Authorization": f"Bearer {key}", "X-Namespace": ns}
    gws = [p for p in stack.procs if p.kind == "gateway"][:2]
    sid = httpx.post(gws[0].url + "/v1/agents/sessions", json={"agent_config": {}}, headers=headers).json()["session_id"]
    return gws, headers, sid


def post(gw, headers, sid, content, extra=None) -> Listener:  # type: ignore[no-untyped-def]
    listener = Listener("POST", gw.url + f"/v1/agents/sessions/{sid}/messages", {**headers, **(extra or {})},
                        {"content": content})
    listener.start()
    listener.wait_for(lambda evs: listener.status is not None, 15)
    return listener


def finish(*listeners: Listener) -> None:
    for li in listeners:
        li.join(60)
        assert not li.is_alive() and li.error is None, li.error


def timing(stack: Stack, sid: str, mid: str) -> tuple[int, int]:
    rec = record(stack, sid, mid)
    return int(rec["started_at_ms"]), int(rec["finished_at_ms"])


def history(gw, headers, sid) -> list[dict]:  # type: ignore[no-untyped-def]
    r = httpx.get(gw.url + f"/v1/agents/sessions/{sid}/history", headers=headers, params={"limit": 200})
    assert r.status_code == 200, r.text
    return r.json()["messages"]


def exchange_order(rows: list[dict]) -> list[str]:
    """Message ids in the order their exchanges appear; each exchange must be contiguous."""
    order: list[str] = []
    for row in rows:
        if not order or order[-1] != row["message_id"]:
            assert row["message_id"] not in order, "an exchange is split in the history"
            order.append(row["message_id"])
    return order


def test_two_rapid_messages_run_one_after_the_other_and_the_second_says_it_waits(stack, ctx):
    gws, headers, sid = ctx
    first = post(gws[0], headers, sid, QUESTION)
    second = post(gws[1], headers, sid, "what did I just ask you?")
    finish(first, second)
    a, b = first.response_headers["x-message-id"], second.response_headers["x-message-id"]
    sse.check_stream(first.events)
    sse.check_stream(second.events)
    assert first.events[-1].type == "done" and second.events[-1].type == "done"
    notice = second.events[0]
    assert notice.type == "thinking" and notice.data["step"] == "queued" and a in notice.data["message"]
    assert timing(stack, sid, a)[1] <= timing(stack, sid, b)[0]  # b started after a ended
    rows = history(gws[0], headers, sid)
    assert exchange_order(rows) == [a, b]
    assert [r["role"] for r in rows if r["message_id"] == a][0] == "user"
    assert [r["role"] for r in rows if r["message_id"] == a][-1] == "assistant"


def test_ten_rapid_messages_across_two_gateways_run_strictly_in_acceptance_order(stack, ctx):
    gws, headers, sid = ctx
    listeners = []
    for i in range(10):
        listeners.append(post(gws[i % 2], headers, sid, f"hello number {i}, tell me about sessions"))
    finish(*listeners)
    mids = [li.response_headers["x-message-id"] for li in listeners]
    for li in listeners:
        sse.check_stream(li.events)
        assert li.events[-1].type == "done"
    times = [timing(stack, sid, m) for m in mids]
    for (_, end), (start, _) in zip(times, times[1:], strict=False):
        assert end <= start  # one at a time, in the order they were accepted
    assert exchange_order(history(gws[1], headers, sid)) == mids
    stats = httpx.get(gws[0].url + f"/v1/agents/sessions/{sid}", headers=headers).json()["stats"]
    assert stats["total_messages"] == 20


def test_messages_of_different_sessions_still_run_in_parallel(stack, ctx):
    gws, headers, sid = ctx
    other = httpx.post(gws[0].url + "/v1/agents/sessions", json={"agent_config": {}}, headers=headers).json()["session_id"]
    a = post(gws[0], headers, sid, QUESTION)
    b = post(gws[1], headers, other, QUESTION)
    finish(a, b)
    ta = timing(stack, sid, a.response_headers["x-message-id"])
    tb = timing(stack, other, b.response_headers["x-message-id"])
    assert ta[0] < tb[1] and tb[0] < ta[1]  # the two runs overlapped
    assert b.events[0].type != "thinking" or b.events[0].data["step"] != "queued"


def test_reject_answers_409_naming_the_running_message_and_records_nothing(stack, ctx):
    gws, headers, sid = ctx
    first = post(gws[0], headers, sid, QUESTION)
    a = first.response_headers["x-message-id"]
    r = httpx.post(gws[1].url + f"/v1/agents/sessions/{sid}/messages", json={"content": "again?"},
                   headers={**headers, HEADER: "reject"}, timeout=30)
    assert r.status_code == 409, r.text
    err = r.json()["error"]
    assert err["code"] == "session_busy" and err["details"]["running_message_id"] == a and a in err["message"]
    finish(first)
    rows = history(gws[0], headers, sid)
    assert {row["message_id"] for row in rows} == {a}  # the refused message left no trace
    bad = httpx.post(gws[1].url + f"/v1/agents/sessions/{sid}/messages", json={"content": "x"},
                     headers={**headers, HEADER: "sometimes"})
    assert bad.status_code == 422 and bad.json()["error"]["code"] == "invalid_multitask"


def test_interrupt_ends_the_running_message_and_keeps_its_work_in_the_history(stack, ctx):
    gws, headers, sid = ctx
    first = post(gws[0], headers, sid, QUESTION)
    first.wait_for(lambda evs: sum(e.type == "token" for e in evs) >= 3)
    second = post(gws[1], headers, sid, "stop, tell me about hash tags instead", {HEADER: "interrupt"})
    finish(first, second)
    a, b = first.response_headers["x-message-id"], second.response_headers["x-message-id"]
    sse.check_stream(first.events)
    assert first.events[-1].type == "error" and first.events[-1].data["code"] == "interrupted"
    assert b in first.events[-1].data["message"]
    assert second.events[-1].type == "done"
    assert timing(stack, sid, a)[1] <= timing(stack, sid, b)[0]
    rows = history(gws[0], headers, sid)
    assert exchange_order(rows) == [a, b]
    kept = [r for r in rows if r["message_id"] == a]
    streamed = "".join(e.data["content"] for e in first.events if e.type == "token")
    assert [r["role"] for r in kept][0] == "user" and any(r["role"] == "tool" for r in kept)
    partial = [r["content"] for r in kept if r["role"] == "assistant"]
    assert partial and streamed.startswith(partial[0])  # the answer so far, as recorded
    assert record(stack, sid, a)["status"] == "cancelled"


def test_rollback_ends_the_running_message_and_leaves_it_out_of_the_history(stack, ctx):
    gws, headers, sid = ctx
    first = post(gws[0], headers, sid, QUESTION)
    first.wait_for(lambda evs: sum(e.type == "token" for e in evs) >= 3)
    second = post(gws[1], headers, sid, "never mind that", {HEADER: "rollback"})
    finish(first, second)
    b = second.response_headers["x-message-id"]
    assert first.events[-1].type == "error" and first.events[-1].data["code"] == "rolled_back"
    assert second.events[-1].type == "done"
    assert exchange_order(history(gws[0], headers, sid)) == [b]


def test_cancel_releases_the_session_and_the_next_message_runs(stack, ctx):
    gws, headers, sid = ctx
    first = post(gws[0], headers, sid, QUESTION)
    second = post(gws[1], headers, sid, "and then?")
    a, b = first.response_headers["x-message-id"], second.response_headers["x-message-id"]
    first.wait_for(lambda evs: any(e.type == "token" for e in evs))
    assert httpx.post(gws[1].url + f"/v1/agents/sessions/{sid}/messages/{a}/cancel", headers=headers).status_code == 200
    finish(first, second)
    assert first.events[-1].data["code"] == "cancelled" and second.events[-1].type == "done"
    assert timing(stack, sid, a)[1] <= timing(stack, sid, b)[0]


def test_a_message_behind_one_awaiting_confirmation_is_told_and_runs_after_the_answer(stack, ctx):
    gws, headers, sid = ctx
    paused = httpx.post(gws[0].url + f"/v1/agents/sessions/{sid}/messages", headers=headers, timeout=30,
                        json={"content": "create a new collection named ordered-notes"})
    events = sse.parse(paused.text)
    assert events[-1].type == "confirmation_required"
    a, conf = paused.headers["x-message-id"], events[-1].data["confirmation_id"]
    second = post(gws[1], headers, sid, "what collections do I have?")
    second.wait_for(lambda evs: len(evs) >= 1)
    notice = second.events[0]
    assert notice.data["step"] == "queued" and a in notice.data["message"]
    assert "confirmation" in notice.data["message"] and "interrupt" in notice.data["message"]
    answer = httpx.post(gws[0].url + f"/v1/agents/sessions/{sid}/confirmations/{conf}", headers=headers,
                        json={"approved": True}, timeout=30)
    assert sse.parse(answer.text)[-1].type == "done"
    finish(second)
    assert second.events[-1].type == "done"
    assert timing(stack, sid, a)[1] <= timing(stack, sid, second.response_headers["x-message-id"])[0]


@pytest.mark.faults
def test_a_worker_sigkilled_with_a_queue_behind_loses_nothing_and_keeps_the_order(stack, ctx):
    gws, headers, sid = ctx
    listeners = [post(gws[i % 2], headers, sid, QUESTION if i == 0 else f"follow-up {i}") for i in range(3)]
    mids = [li.response_headers["x-message-id"] for li in listeners]
    listeners[0].wait_for(lambda evs: sum(e.type == "token" for e in evs) >= 2)
    victim = worker_running(stack, sid, mids[0])
    stack.stop_proc(victim, signal.SIGKILL)
    stack.start_worker()
    finish(*listeners)
    times = []
    for mid in mids:
        log = stored(stack, sid, mid)
        counts = check_log(log)
        assert log[-1].type == "done" and counts["terminal"] == 1 and counts["tool_reruns"] == 0
        times.append(timing(stack, sid, mid))
    assert int(record(stack, sid, mids[0])["attempt"]) >= 2
    for (_, end), (start, _) in zip(times, times[1:], strict=False):
        assert end <= start
    assert exchange_order(history(gws[0], headers, sid)) == mids


def test_a_refused_stream_records_nothing(stack, ctx):
    """18.10: 429 too_many_streams used to come after the accept, so the refused message ran."""
    _, headers, sid = ctx
    gw = stack.start_gateway(AGENTSTREAM_MAX_STREAMS_PER_KEY="1")
    try:
        other = httpx.post(gw.url + "/v1/agents/sessions", json={"agent_config": {}}, headers=headers).json()["session_id"]
        third = httpx.post(gw.url + "/v1/agents/sessions", json={"agent_config": {}}, headers=headers).json()["session_id"]
        paused = httpx.post(gw.url + f"/v1/agents/sessions/{third}/messages", headers=headers, timeout=30,
                            json={"content": "create a new collection named slot-notes", "stream": False}).json()
        conf = paused["confirmation"]["confirmation_id"]
        holding = post(gw, headers, sid, QUESTION)
        refused = httpx.post(gw.url + f"/v1/agents/sessions/{other}/messages", json={"content": "hello"},
                             headers=headers, timeout=30)
        assert refused.status_code == 429 and refused.json()["error"]["code"] == "too_many_streams"
        answer = httpx.post(gw.url + f"/v1/agents/sessions/{third}/confirmations/{conf}", json={"approved": True},
                            headers=headers, timeout=30)
        assert answer.status_code == 429  # and the confirmation is still open: nothing was recorded
        assert stack.redis_call(lambda r: r.hget(keys.confirmation(third, conf), "state")) == b"pending"
        finish(holding)
        answer = httpx.post(gw.url + f"/v1/agents/sessions/{third}/confirmations/{conf}", json={"approved": True},
                            headers=headers, timeout=30)
        assert answer.status_code == 200 and sse.parse(answer.text)[-1].type == "done"
        assert history(gw, headers, other) == []
        session = httpx.get(gw.url + f"/v1/agents/sessions/{other}", headers=headers).json()
        assert session["stats"]["total_messages"] == 0
        assert stack.redis_call(lambda r: r.hget(keys.session(other), "turn")) is None
    finally:
        stack.stop_proc(gw)
