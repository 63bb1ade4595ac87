"""Write tools pause for confirmation; the answer continues the same message as a new stream."""

from __future__ import annotations

from shared import keys
from tests import sse
from tests.gateway.test_messages import new_session, send


def _pause(api, name: str):
    sid = new_session(api)
    r = send(api, sid, f"create a new collection named {name}")
    events = sse.parse(r.text)
    assert events[-1].type == "confirmation_required", [e.type for e in events]
    assert not any(e.type in ("done", "error") for e in events)
    conf = events[-1].data
    assert set(conf) >= {"confirmation_id", "tool_name", "inputs", "expires_at"}
    assert conf["tool_name"] == "create_collection" and conf["inputs"]["collection_name"] == name
    return sid, r.headers["x-message-id"], events, conf


def test_approved_runs_the_tool_once_and_finishes_the_same_message(api):
    sid, mid, before, conf = _pause(api, "reports-2026")
    r = api.post(f"/v1/agents/sessions/{sid}/confirmations/{conf['confirmation_id']}", json={"approved": True})
    assert r.status_code == 200 and r.headers["x-message-id"] == mid
    after = sse.parse(r.text)
    sse.check_stream(before + after)
    results = [e for e in after if e.type == "tool_result"]
    assert len(results) == 1 and results[0].data["success"] is True
    assert after[-1].type == "done"
    cols = api.post("/v1/collections/list", json={}).json()["results"]
    assert [c["collection_name"] for c in cols].count("reports-2026") == 1
    full = sse.parse(api.get(f"/v1/agents/sessions/{sid}/messages/{mid}/events").text)
    assert [e.id for e in full] == [e.id for e in before + after]  # one message, one stream, no reset
    again = api.post(f"/v1/agents/sessions/{sid}/confirmations/{conf['confirmation_id']}", json={"approved": True})
    assert again.status_code == 400
    assert again.json()["error"]["code"] == "confirmation_already_answered"


def test_denied_is_acknowledged_and_not_run(api):
    sid, mid, before, conf = _pause(api, "never-made")
    r = api.post(f"/v1/agents/sessions/{sid}/confirmations/{conf['confirmation_id']}", json={"approved": False})
    after = sse.parse(r.text)
    result = next(e for e in after if e.type == "tool_result")
    assert result.data["success"] is False and result.data["output"]["approved"] is False
    assert "denied" in next(e for e in after if e.type == "message").data["content"]
    cols = api.post("/v1/collections/list", json={}).json()["results"]
    assert "never-made" not in [c["collection_name"] for c in cols]


def test_unknown_confirmation_is_404_and_bad_body_422(api):
    sid, mid, before, conf = _pause(api, "x1")
    r = api.post(f"/v1/agents/sessions/{sid}/confirmations/conf_nope", json={"approved": True})
    assert r.status_code == 404 and r.json()["error"]["code"] == "confirmation_not_found"
    r = api.post(f"/v1/agents/sessions/{sid}/confirmations/{conf['confirmation_id']}", json={"approved": "yes"})
    assert r.status_code == 422


def test_expired_confirmation_is_400(api, stack):
    from shared import keys

    sid, mid, before, conf = _pause(api, "late")
    stack.redis_call(lambda redis: redis.hset(keys.confirmation(sid, conf["confirmation_id"]), "expires_ms", 1))
    r = api.post(f"/v1/agents/sessions/{sid}/confirmations/{conf['confirmation_id']}", json={"approved": True})
    assert r.status_code == 400 and r.json()["error"]["code"] == "confirmation_expired"


def test_non_streamed_pause_reports_the_confirmation(api):
    sid = new_session(api)
    body = send(api, sid, "create a collection named quiet-one", stream=False).json()
    assert body["status"] == "awaiting_confirmation"
    assert body["confirmation"]["tool_name"] == "create_collection"


def test_confirmation_on_a_terminated_session_is_400_session_terminated_and_runs_nothing(api, stack):
    """Issue 15.6: approving after DELETE of the session answered 200 and created the collection."""
    sid, mid, before, conf = _pause(api, "pwn3")
    assert api.delete(f"/v1/agents/sessions/{sid}").status_code == 200
    r = api.post(f"/v1/agents/sessions/{sid}/confirmations/{conf['confirmation_id']}", json={"approved": True})
    assert r.status_code == 400 and r.json()["error"]["code"] == "session_terminated", r.text
    cols = api.post("/v1/collections/list", json={}).json()["results"]
    assert "pwn3" not in [c["collection_name"] for c in cols]
    # an expired session too (its record lives a minute past expires_at)
    sid2, _, _, conf2 = _pause(api, "pwn4")
    stack.redis_call(lambda r: r.hset(keys.session(sid2), "expires_ms", 1))
    r = api.post(f"/v1/agents/sessions/{sid2}/confirmations/{conf2['confirmation_id']}", json={"approved": True})
    assert r.status_code == 400 and r.json()["error"]["code"] == "session_terminated", r.text
    assert "pwn4" not in [c["collection_name"] for c in api.post("/v1/collections/list", json={}).json()["results"]]
