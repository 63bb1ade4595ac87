"""Sending messages over real HTTP: SSE, JSON, headers, resume, idempotency, cancel."""

from __future__ import annotations

import concurrent.futures
import json

import httpx
import pytest

from tests import sse


def new_session(api: httpx.Client, **config) -> str:
    r = api.post("/v1/agents/sessions", json={"agent_config": config})
    assert r.status_code == 200, r.text
    return r.json()["session_id"]


def send(api: httpx.Client, sid: str, content: str, headers: dict | None = None, **body) -> httpx.Response:
    return api.post(f"/v1/agents/sessions/{sid}/messages", json={"content": content, **body}, headers=headers)


def test_streamed_answer_is_complete_ordered_and_ends_once(api):
    sid = new_session(api)
    r = send(api, sid, "hello there")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/event-stream")
    assert r.headers["cache-control"].startswith("no-cache")
    assert r.headers["x-accel-buffering"] == "no"
    mid = r.headers["x-message-id"]
    assert r.headers["content-location"] == f"/v1/agents/sessions/{sid}/messages/{mid}/events"
    assert r.text.startswith("retry: ")
    events = sse.parse(r.text)
    sse.check_stream(events)
    types = [e.type for e in events]
    assert types[0] == "intent" and types[1] == "thinking"
    assert types[-3:] == ["message", "session_name", "done"]
    message = next(e for e in events if e.type == "message")
    assert message.data["content"] == "".join(e.data["content"] for e in events if e.type == "token")
    assert message.data == {"content": message.data["content"], "message_id": mid, "is_final": True}
    assert set(events[0].data) == {"intent", "confidence", "category", "reasoning", "context_scope"}
    done = events[-1].data
    assert {"latency_ms", "tool_calls_made", "message_id", "retriever_summary",
            "data_accessed_via_retriever"} <= set(done)


def test_session_name_only_on_the_first_message(api):
    sid = new_session(api)
    first = [e.type for e in sse.parse(send(api, sid, "hello").text)]
    second = [e.type for e in sse.parse(send(api, sid, "hello again").text)]
    assert "session_name" in first and "session_name" not in second
    assert api.get(f"/v1/agents/sessions/{sid}").json()["session_name"] == "Hello"


def test_tools_and_retriever_events(api, stack, tenant):
    from tests.gateway.seed import seed_demo_for

    seed_demo_for(stack, tenant)
    sid = new_session(api)
    events = sse.parse(send(api, sid, "find documents about redis cluster hash tags").text)
    sse.check_stream(events)
    calls = [e.data["tool_name"] for e in events if e.type == "tool_call"]
    assert calls == ["list_collections", "smart_search"]
    results = [e for e in events if e.type == "tool_result"]
    assert all(r.data["success"] for r in results)
    runs = [e for e in events if e.type == "retriever_execution"]
    assert runs and runs[0].data["documents_returned"] > 0
    done = events[-1].data
    assert done["data_accessed_via_retriever"] is True
    assert done["tool_calls_made"] == 2
    assert done["retriever_summary"]["total_documents"] == sum(r.data["documents_returned"] for r in runs)
    cited = [d["document_id"] for d in results[1].data["output"]["documents"][:1]]
    assert cited[0] in next(e for e in events if e.type == "message").data["content"]


def test_non_streamed_answer(api):
    sid = new_session(api)
    r = send(api, sid, "hello", stream=False)
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    body = r.json()
    for key in ("message_id", "content", "intent", "tool_calls_made", "retriever_summary",
                "data_accessed_via_retriever", "latency_ms"):
        assert key in body
    assert body["message_id"] == r.headers["x-message-id"]
    assert body["status"] == "completed" and body["content"]


def test_resume_from_every_cursor_is_exact(api):
    sid = new_session(api)
    r = send(api, sid, "hello there")
    full = sse.parse(r.text)
    url = r.headers["content-location"]
    assert sse.parse(api.get(url).text) == full
    for i, ev in enumerate(full[:-1]):
        rest = sse.parse(api.get(url, headers={"Last-Event-ID": ev.id}).text)
        assert rest == full[i + 1:]
        via_query = sse.parse(api.get(url, params={"last_event_id": ev.id}).text)
        assert via_query == full[i + 1:]


def test_resume_after_the_terminal_event_answers_204(api):
    sid = new_session(api)
    r = send(api, sid, "hello")
    last = sse.parse(r.text)[-1].id
    assert api.get(r.headers["content-location"], headers={"Last-Event-ID": last}).status_code == 204


@pytest.mark.parametrize("bad", ["abc", "1-2-3", "-5", "1.5"])
def test_malformed_cursor_is_400(api, bad):
    sid = new_session(api)
    r = send(api, sid, "hello")
    resp = api.get(r.headers["content-location"], headers={"Last-Event-ID": bad})
    assert resp.status_code == 400
    assert resp.json()["error"]["code"] == "invalid_last_event_id"


def test_cursor_ahead_of_the_stream_resets(api):
    sid = new_session(api)
    r = send(api, sid, "hello")
    full = sse.parse(r.text)
    ahead = f"{int(full[-1].id.split('-')[0]) + 10_000}-0"
    got = sse.parse(api.get(r.headers["content-location"], headers={"Last-Event-ID": ahead}).text)
    assert got[0].type == "reset" and got[0].data["reason"] == "cursor_ahead"
    assert got[0].id == "0-0" and got[0].data["replay_from"] == "0-0"
    assert got[1:] == full


def test_unknown_message_and_other_namespace_are_identical_404s(api, stack, gateway):
    sid = new_session(api)
    mid = send(api, sid, "hello").headers["x-message-id"]
    key, ns, _ = stack.new_tenant()
    with httpx.Client(base_url=gateway.url, headers={"Authorization": f"Bearer {key}", "X-Namespace": ns}) as other:
        a = other.get(f"/v1/agents/sessions/{sid}/messages/{mid}/events")
        c = other.get(f"/v1/agents/sessions/ses_doesnotexist/messages/{mid}/events")
    b = api.get(f"/v1/agents/sessions/{sid}/messages/msg_doesnotexist/events")
    assert a.status_code == b.status_code == c.status_code == 404
    assert a.json()["error"]["type"] == c.json()["error"]["type"] == "NotFoundError"
    body_a = a.text.replace(sid, "X")
    body_c = c.text.replace("ses_doesnotexist", "X")
    assert body_a == body_c


def test_idempotency_key_same_body_same_message_one_job(api, stack):
    sid = new_session(api)
    headers = {"Idempotency-Key": "k-1"}

    def post() -> httpx.Response:
        return send(api, sid, "hello there", headers=headers)

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        responses = list(pool.map(lambda _: post(), range(4)))
    ids = {r.headers["x-message-id"] for r in responses}
    assert len(ids) == 1
    texts = {r.text for r in responses}
    assert len(texts) == 1  # same stream, same ids
    later = post()
    assert later.headers["x-message-id"] in ids and later.headers["idempotent-replayed"] == "true"
    assert later.text == responses[0].text
    last = sse.parse(later.text)[2].id
    tail = send(api, sid, "hello there", headers={**headers, "Last-Event-ID": last})
    assert sse.parse(tail.text) == sse.parse(later.text)[3:]
    history = api.get(f"/v1/agents/sessions/{sid}/history").json()
    assert [m["role"] for m in history["messages"]] == ["user", "assistant"]  # one job ran


def test_idempotency_key_with_a_different_body_is_409(api):
    sid = new_session(api)
    send(api, sid, "hello", headers={"Idempotency-Key": "k-2"})
    r = send(api, sid, "something else", headers={"Idempotency-Key": "k-2"})
    assert r.status_code == 409
    assert r.json()["error"]["code"] == "idempotency_key_reused"


def test_cancel_after_the_end_is_a_no_op(api):
    sid = new_session(api)
    mid = send(api, sid, "hello").headers["x-message-id"]
    r = api.post(f"/v1/agents/sessions/{sid}/messages/{mid}/cancel")
    assert r.status_code == 200
    assert r.json() == {"message_id": mid, "session_id": sid, "status": "completed", "cancelled": False}


@pytest.mark.parametrize("body,status,code", [
    (b"{not json", 400, "malformed_json"),
    (json.dumps({"content": ""}).encode(), 422, "invalid_body"),
    (json.dumps({"content": 5}).encode(), 422, "invalid_body"),
    (json.dumps({"content": "x", "colour": "red"}).encode(), 422, "extra_forbidden"),
    (b"", 422, "body_required"),
])
def test_bad_bodies(api, body, status, code):
    sid = new_session(api)
    r = api.post(f"/v1/agents/sessions/{sid}/messages", content=body, headers={"Content-Type": "application/json"})
    assert r.status_code == status, r.text
    err = r.json()
    assert err["success"] is False and err["status"] == status and err["error"]["code"] == code
    if code == "extra_forbidden":
        assert err["error"]["details"]["accepted_keys"] == ["content", "metadata", "stream"]


def test_missing_and_unknown_keys_are_401(gateway):
    a = httpx.post(gateway.url + "/v1/agents/sessions", json={"agent_config": {}})
    b = httpx.post(gateway.url + "/v1/agents/sessions", json={"agent_config": {}},
                   headers={"Authorization": "Bearer sk_nope"})
    assert a.status_code == b.status_code == 401
    assert a.json()["error"]["type"] == "UnauthorizedError"


def test_cursor_older_than_retention_resets_then_delivers_the_rest(api, stack):
    from shared import keys

    sid = new_session(api)
    r = send(api, sid, "hello there")
    full = sse.parse(r.text)
    mid = r.headers["x-message-id"]
    stack.redis_call(lambda redis: redis.xtrim(keys.events(sid, mid), maxlen=5, approximate=False))
    got = sse.parse(api.get(r.headers["content-location"], headers={"Last-Event-ID": full[1].id}).text)
    assert got[0].type == "reset" and got[0].data["reason"] == "cursor_expired"
    assert got[0].data["status"] == "completed" and got[0].data["replay_from"] == full[1].id
    assert got[1:] == full[-5:]


def test_expired_stream_still_gives_the_final_message_and_terminal_event(api, stack):
    from shared import keys

    sid = new_session(api)
    r = send(api, sid, "hello there")
    full = sse.parse(r.text)
    mid = r.headers["x-message-id"]
    stack.redis_call(lambda redis: redis.delete(keys.events(sid, mid)))
    got = sse.parse(api.get(r.headers["content-location"], headers={"Last-Event-ID": full[2].id}).text)
    assert [e.type for e in got] == ["reset", "message", "done"]
    assert got[0].data["reason"] == "stream_expired" and got[0].data["status"] == "completed"
    assert got[1] == next(e for e in full if e.type == "message")
    assert got[2] == full[-1]
    body = send(api, sid, "x", stream=False)  # the session still works
    assert body.status_code == 200


def test_stream_retention_ttl_is_set_after_the_terminal_event(api, stack):
    from shared import keys

    sid = new_session(api)
    mid = send(api, sid, "hello").headers["x-message-id"]
    ttl = stack.redis_call(lambda redis: redis.ttl(keys.events(sid, mid)))
    record_ttl = stack.redis_call(lambda redis: redis.ttl(keys.message(sid, mid)))
    assert 0 < ttl <= 86_400
    assert record_ttl > ttl
