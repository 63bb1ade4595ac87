"""SessionQuotas are enforced when a message is accepted, with clear codes."""

from __future__ import annotations

from shared import keys
from tests.gateway.test_messages import send


def session(api, **quotas) -> str:
    r = api.post("/v1/agents/sessions", json={"agent_config": {}, "quotas": quotas})
    assert r.status_code == 200, r.text
    return r.json()["session_id"]


def test_max_messages(api):
    sid = session(api, max_messages=1)
    assert send(api, sid, "hello").status_code == 200
    r = send(api, sid, "hello again")
    assert r.status_code == 403 and r.json()["error"]["code"] == "quota_max_messages"


def test_max_tokens_total(api):
    sid = session(api, max_tokens_total=5)
    assert send(api, sid, "hello").status_code == 200  # 19 tokens: the quota is checked before a turn
    r = send(api, sid, "hello again")
    assert r.status_code == 403 and r.json()["error"]["code"] == "quota_max_tokens_total"


def test_max_tool_calls(api):
    sid = session(api, max_tool_calls=1)
    assert send(api, sid, "list the collections").status_code == 200
    r = send(api, sid, "list the collections")
    assert r.status_code == 403 and r.json()["error"]["code"] == "quota_max_tool_calls"


def test_rate_limit_messages_per_minute(api):
    sid = session(api, rate_limit_messages_per_minute=2)
    assert [send(api, sid, "hello").status_code for _ in range(2)] == [200, 200]
    r = send(api, sid, "hello")
    assert r.status_code == 429 and r.json()["error"]["code"] == "session_rate_limited"
    assert 1 <= int(r.headers["retry-after"]) <= 60


def test_max_session_duration(api, stack):
    sid = session(api, max_session_duration_minutes=1)
    assert send(api, sid, "hello").status_code == 200
    stack.redis_call(lambda redis: redis.hset(keys.session(sid), "quota_deadline_ms", 1))  # a minute later
    r = send(api, sid, "hello")
    assert r.status_code == 403 and r.json()["error"]["code"] == "quota_max_session_duration"


def test_quotas_are_shown_on_the_session(api):
    sid = session(api, max_messages=3)
    quotas = api.get(f"/v1/agents/sessions/{sid}").json()["quotas"]
    assert quotas["max_messages"] == 3 and quotas["max_tool_calls"] is None  # unset = unlimited
