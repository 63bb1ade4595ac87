"""Feedback and memory: positive feedback is remembered and later turns use it; PATCH
replaces user_memory; both survive a restart of the gateway and the worker."""

from __future__ import annotations

import httpx

from tests import sse
from tests.gateway.test_messages import new_session, send


def test_positive_feedback_is_remembered_and_used_by_later_turns(api, stack, gateway):
    sid = new_session(api)
    mid = send(api, sid, "hello there").headers["x-message-id"]
    r = api.post(f"/v1/agents/sessions/{sid}/feedback", json={"message_id": mid, "rating": "positive"})
    assert r.status_code == 200 and r.json()["stored"] is True
    again = api.post(f"/v1/agents/sessions/{sid}/feedback", json={"message_id": mid, "rating": "positive"})
    assert again.json()["stored"] is True  # idempotent: remembered once
    answer = next(e for e in sse.parse(send(api, sid, "hello again").text) if e.type == "message")
    assert "Remembering 1 earlier exchange" in answer.data["content"]


def test_negative_feedback_is_not_remembered(api):
    sid = new_session(api)
    mid = send(api, sid, "hello there").headers["x-message-id"]
    r = api.post(f"/v1/agents/sessions/{sid}/feedback", json={"message_id": mid, "rating": "negative"})
    assert r.json()["stored"] is False
    answer = next(e for e in sse.parse(send(api, sid, "hello again").text) if e.type == "message")
    assert "Remembering" not in answer.data["content"]


def test_memory_disabled_stores_nothing(api):
    r = api.post("/v1/agents/sessions", json={"agent_config": {}, "enable_memory": False})
    sid = r.json()["session_id"]
    mid = send(api, sid, "hello").headers["x-message-id"]
    assert api.post(f"/v1/agents/sessions/{sid}/feedback",
                    json={"message_id": mid, "rating": "positive"}).json()["stored"] is False


def test_patch_replaces_user_memory_and_memory_survives_restarts():
    from tests.stack import Stack

    own = Stack()  # its own processes: restarting the shared stack would break other tests
    own.start_redis()
    try:
        own.start_worker()
        gw = own.start_gateway()
        own.wait_ready(gw)
        key, ns, _ = own.new_tenant()
        headers = {"Authorization": f"Bearer {key}", "X-Namespace": ns}
        with httpx.Client(base_url=gw.url, headers=headers, timeout=30) as api:
            sid = new_session(api)
            api.patch(f"/v1/agents/sessions/{sid}", json={"user_memory": {"tone": "formal", "lang": "en"}})
            api.patch(f"/v1/agents/sessions/{sid}", json={"user_memory": {"tone": "casual"}})
            assert api.get(f"/v1/agents/sessions/{sid}").json()["user_memory"] == {"tone": "casual"}
            mid = send(api, sid, "hello there").headers["x-message-id"]
            api.post(f"/v1/agents/sessions/{sid}/feedback", json={"message_id": mid, "rating": "positive"})
        for proc in list(own.procs):  # restart every gateway and worker
            own.stop_proc(proc)
        own.start_worker()
        gw = own.start_gateway()
        own.wait_ready(gw)
        with httpx.Client(base_url=gw.url, headers=headers, timeout=30) as fresh:
            assert fresh.get(f"/v1/agents/sessions/{sid}").json()["user_memory"] == {"tone": "casual"}
            answer = next(e for e in sse.parse(send(fresh, sid, "hello again").text) if e.type == "message")
            assert "Remembering 1 earlier exchange" in answer.data["content"]
    finally:
        own.stop()
