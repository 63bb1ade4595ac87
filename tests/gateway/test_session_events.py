"""The session-wide log over real HTTP: all messages' events in order, resumable, NDJSON."""

from __future__ import annotations

import json

from shared import keys
from tests import sse
from tests.faults.harness import Listener
from tests.gateway.test_messages import new_session, send


def test_session_log_is_every_message_in_order_and_resumes_exactly(api):
    sid = new_session(api)
    first = sse.parse(send(api, sid, "hello").text)
    second = sse.parse(send(api, sid, "hello again").text)
    r = api.get(f"/v1/agents/sessions/{sid}/events")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    got = sse.parse(r.text)
    assert [(e.type, e.data) for e in got] == [(e.type, e.data) for e in first + second]
    mids = {e.id.split("/")[0] for e in got}
    assert len(mids) == 2
    for i in (0, len(first) - 1, len(first), len(got) - 2):
        rest = sse.parse(api.get(f"/v1/agents/sessions/{sid}/events", headers={"Last-Event-ID": got[i].id}).text)
        assert rest == got[i + 1:]


def test_session_log_as_json_lines(api):
    sid = new_session(api)
    events = sse.parse(send(api, sid, "hello").text)
    r = api.get(f"/v1/agents/sessions/{sid}/events", headers={"Accept": "application/x-ndjson"})
    assert r.headers["content-type"].startswith("application/x-ndjson")
    lines = [json.loads(line) for line in r.text.splitlines()]
    assert [(x["type"], x["payload"]) for x in lines] == [(e.type, e.data) for e in events]
    assert all(x["id"].endswith(e.id) and x["timestamp"].endswith("Z") for x, e in zip(lines, events, strict=True))


def test_session_log_bad_cursor_is_400(api):
    sid = new_session(api)
    send(api, sid, "hello")
    for bad in ("garbage", "msg_unknown/1-0", "1-0"):
        r = api.get(f"/v1/agents/sessions/{sid}/events", headers={"Last-Event-ID": bad})
        assert r.status_code == 400, bad
        assert r.json()["error"]["code"] == "invalid_last_event_id"


def test_regression_18_3_the_session_log_follows_a_paused_message_to_its_end(api, gateway):
    """The log stopped reading a message at confirmation_required and marked it delivered: once
    a later message existed, the continuation (tool_result, tokens, message, done) never came."""
    sid = new_session(api)
    paused = send(api, sid, "create a new collection named follow-the-pause")
    m1 = paused.headers["x-message-id"]
    conf = sse.parse(paused.text)[-1]
    assert conf.type == "confirmation_required"
    with api.stream("POST", f"/v1/agents/sessions/{sid}/messages", json={"content": "hello again"}) as r:
        m2 = r.headers["x-message-id"]  # a later message; leaving its stream cancels nothing
    log = Listener("GET", gateway.url + f"/v1/agents/sessions/{sid}/events",
                   {k: v for k, v in api.headers.items() if k.lower() in ("authorization", "x-namespace")})
    log.start()
    log.wait_for(lambda evs: any(e.type == "confirmation_required" for e in evs), 15)
    r = api.post(f"/v1/agents/sessions/{sid}/confirmations/{conf.data['confirmation_id']}", json={"approved": True})
    assert r.status_code == 200
    log.join(30)
    assert not log.is_alive() and log.error is None
    owners = [e.id.split("/")[0] for e in log.events]
    assert owners == [m1] * owners.count(m1) + [m2] * owners.count(m2)  # m1 whole, then m2
    first = [e.type for e in log.events if e.id.startswith(m1 + "/")]
    assert first.count("confirmation_required") == 1 and "tool_result" in first and first[-1] == "done", first
    assert [e.type for e in log.events if e.id.startswith(m2 + "/")][-1] == "done"


def test_regression_18_11_the_session_log_ends_with_204_and_announces_an_expired_message(api, stack):
    sid = new_session(api)
    first = sse.parse(send(api, sid, "hello").text)
    send(api, sid, "hello again")
    full = sse.parse(api.get(f"/v1/agents/sessions/{sid}/events").text)
    assert len(full) > len(first)
    r = api.get(f"/v1/agents/sessions/{sid}/events", headers={"Last-Event-ID": full[-1].id})
    assert r.status_code == 204 and r.text == ""  # like a message stream resumed at its end
    # The first message's record and stream outlived their retention.
    m1 = full[0].id.split("/")[0]
    stack.redis_call(lambda redis: redis.delete(keys.message(sid, m1), keys.events(sid, m1)))
    got = sse.parse(api.get(f"/v1/agents/sessions/{sid}/events").text)
    assert got[0].type == "reset" and got[0].id == f"{m1}/0-0"
    assert got[0].data["reason"] == "message_expired"
    assert got[1:] == full[len(first):]
