"""The session-wide log over real HTTP: all messages' events in order, resumable, NDJSON."""

from __future__ import annotations

import json

from tests import sse
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
