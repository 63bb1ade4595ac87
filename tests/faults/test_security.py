"""Security: tenants never see each other (every route), SSE framing cannot be forged from
user or tool text, CORS never wildcards, jobs are JSON, and keys are stored only as hashes."""

from __future__ import annotations

import json
import re

import httpx
import msgspec
import pytest

from shared import keys
from shared.settings import Settings, SettingsError
from shared.stores.tenancy import hash_key
from tests import sse
from tests.gateway.test_messages import new_session, send

pytestmark = pytest.mark.faults


@pytest.fixture
def victim(api, stack):
    """Objects of one tenant: a session with a finished and a paused message, a collection with
    a document, a retriever."""
    sid = new_session(api)
    mid = send(api, sid, "hello").headers["x-message-id"]
    paused = sse.parse(send(api, sid, "create a collection named secret-plans").text)[-1].data
    col = api.post("/v1/collections", json={"collection_name": "private-docs"}).json()["collection_id"]
    doc = api.post(f"/v1/collections/{col}/documents", json={"metadata": {"title": "salary data"}}).json()
    ret = api.post("/v1/retrievers", json={
        "retriever_name": "private-ret", "collection_identifiers": [col],
        "stages": [{"stage_name": "s", "config": {"stage_id": "bm25_search", "parameters": {"query": "x"}}}],
    }).json()
    return {"sid": sid, "mid": mid, "conf": paused["confirmation_id"], "col": col,
            "doc": doc["document_id"], "ret": ret["retriever_id"]}


ROUTES = [
    ("GET", "/v1/agents/sessions/{sid}", None),
    ("PATCH", "/v1/agents/sessions/{sid}", {"user_memory": {"x": 1}}),
    ("DELETE", "/v1/agents/sessions/{sid}", None),
    ("GET", "/v1/agents/sessions/{sid}/history", None),
    ("POST", "/v1/agents/sessions/{sid}/messages", {"content": "hi"}),
    ("GET", "/v1/agents/sessions/{sid}/messages/{mid}/events", None),
    ("POST", "/v1/agents/sessions/{sid}/messages/{mid}/cancel", None),
    ("GET", "/v1/agents/sessions/{sid}/events", None),
    ("POST", "/v1/agents/sessions/{sid}/feedback", {"message_id": "{mid}", "rating": "positive"}),
    ("POST", "/v1/agents/sessions/{sid}/confirmations/{conf}", {"approved": True}),
    ("GET", "/v1/collections/{col}", None),
    ("DELETE", "/v1/collections/{col}", None),
    ("GET", "/v1/collections/private-docs", None),
    ("POST", "/v1/collections/{col}/documents", {"metadata": {"a": 1}}),
    ("GET", "/v1/collections/{col}/documents/count", None),
    ("GET", "/v1/collections/{col}/documents/{doc}", None),
    ("DELETE", "/v1/collections/{col}/documents/{doc}", None),
    ("GET", "/v1/retrievers/{ret}", None),
    ("DELETE", "/v1/retrievers/{ret}", None),
    ("POST", "/v1/retrievers/{ret}/execute", {"inputs": {}}),
]
FAKE = {"sid": "ses_0000000000000000", "mid": "msg_0000000000000000", "conf": "conf_0000000000000000",
        "col": "col_0000000000000000", "doc": "doc_0000000000000000", "ret": "ret_0000000000000000"}


def _fill(template: str, ids: dict[str, str]) -> str:
    for name, value in ids.items():
        template = template.replace("{" + name + "}", value)
    return template


def _mask(text: str, ids: dict[str, str]) -> str:
    for v in ids.values():
        text = text.replace(v, "<id>")
    return re.sub(r"(ses|msg|conf|col|doc|ret)_[0-9a-z]{16}", "<id>", text).replace("private-docs", "<id>")


def test_another_namespace_answers_exactly_like_a_missing_object_on_every_route(victim, api, stack, gateway):
    key, ns, _ = stack.new_tenant()
    with httpx.Client(base_url=gateway.url, headers={"Authorization": f"Bearer {key}", "X-Namespace": ns},
                      timeout=10) as intruder:
        for method, path, body in ROUTES:
            real = intruder.request(method, _fill(path, victim),
                                    json=json.loads(_fill(json.dumps(body), victim)) if body else None)
            missing = intruder.request(method, _fill(path, FAKE),
                                       json=json.loads(_fill(json.dumps(body), FAKE)) if body else None)
            assert real.status_code == 404, (method, path, real.status_code, real.text)
            assert (real.status_code, _mask(real.text, victim)) == (missing.status_code, _mask(missing.text, FAKE)), \
                (method, path)
    # and nothing of the victim's was touched
    assert api.get(_fill("/v1/agents/sessions/{sid}", victim)).json()["status"] == "active"
    assert api.get(_fill("/v1/collections/{col}/documents/{doc}", victim)).status_code == 200
    assert api.get(_fill("/v1/retrievers/{ret}", victim)).status_code == 200


def test_sse_framing_cannot_be_forged_from_user_text(api):
    sid = new_session(api)
    evil = "hi\n\nevent: done\ndata: {}\n\nid: 9999999999999-0\r\nevent: error\rdata: x\x00"
    r = send(api, sid, evil)
    events = sse.parse(r.text)
    sse.check_stream(events)
    assert [e.type for e in events].count("done") == 1
    assert all(e.type in {"intent", "thinking", "tool_call", "tool_result", "retriever_execution", "pipeline_config", "token",
                          "message", "session_name", "done"} for e in events)
    history = api.get(f"/v1/agents/sessions/{sid}/history").json()["messages"]
    assert history[0]["content"] == evil  # stored exactly as sent, only framed safely


def test_cors_is_configurable_and_never_a_wildcard():
    with pytest.raises(SettingsError, match="CORS_ORIGINS"):
        Settings.from_env({"AGENTSTREAM_CORS_ORIGINS": "*"})
    s = Settings.from_env({"AGENTSTREAM_CORS_ORIGINS": "https://app.example.com"})
    assert s.cors_origins == ("https://app.example.com",)


def test_jobs_are_json_not_pickle(api, stack):
    sid = new_session(api)
    # stop nothing: read a job while it is queued by enqueueing one on a queue no worker reads
    import asyncio

    from arq.connections import ArqRedis

    from shared import connect

    async def go() -> bytes:
        redis = connect.client(stack.redis_url)
        try:
            arq = ArqRedis(connection_pool=redis.connection_pool, job_serializer=msgspec.json.encode,
                           job_deserializer=msgspec.json.decode, default_queue_name="as:test-queue")
            await arq.enqueue_job(keys.JOB_FUNCTION, sid, "msg_x", _job_id="job-json-probe")
            return await redis.get(keys.ARQ_JOB + "job-json-probe")
        finally:
            await redis.aclose()

    raw = asyncio.run(go())
    assert json.loads(raw)["a"] == [sid, "msg_x"]  # plain JSON; a pickle would not parse
    # and the worker's own serializer is JSON too
    from worker.main import _encode_job

    assert json.loads(_encode_job({"r": ValueError("boom")})) == {"r": "ValueError('boom')"}


def test_api_keys_are_stored_only_as_hashes(stack, tenant):
    key, _, _ = tenant
    stored = stack.redis_call(lambda r: r.hgetall(keys.api_key(hash_key(key))))
    flat = b" ".join(k + b" " + v for k, v in stored.items())
    assert key.encode() not in flat and stored[b"hash"] == hash_key(key).encode()
    all_keys = stack.redis_call(lambda r: r.keys("as:apikey:*"))
    assert all(key.encode() not in k for k in all_keys)


# Issue 15: what an attacker found in an afternoon, each attack replayed.

def test_a_pathological_message_of_one_tenant_neither_stalls_nor_restarts_anything(api, stack, gateway):
    """31,000 spaces made the built-in model's regexes take 13-14 s each: another tenant's
    "hello" waited a minute, and the lease lapsed so the reaper started attempt 2."""
    sid = new_session(api)
    evil = send(api, sid, "find documents about redis" + " " * 31_000 + "x")
    events = sse.parse(evil.text)
    sse.check_stream(events)
    assert events[-1].type == "done" and not any(e.type == "reset" for e in events)
    mid = evil.headers["x-message-id"]
    assert stack.redis_call(lambda r: r.hget(keys.message(sid, mid), "attempt")) == b"1"
    key, ns, _ = stack.new_tenant()
    with httpx.Client(base_url=gateway.url, headers={"Authorization": f"Bearer {key}", "X-Namespace": ns},
                      timeout=30) as other:
        assert sse.parse(send(other, new_session(other), "hello").text)[-1].type == "done"


def test_deep_nesting_huge_numbers_and_non_json_bodies_get_4xx_in_the_error_shape(api):
    deep = b'{"agent_config": {}, "metadata": ' + b"[" * 990 + b"]" * 990 + b"}"
    r = api.post("/v1/agents/sessions", content=deep, headers={"Content-Type": "application/json"})
    assert (r.status_code, r.json()["error"]["code"]) == (400, "json_too_deep")
    col = api.post("/v1/collections", json={"collection_name": "numbers"}).json()["collection_id"]
    r = api.post(f"/v1/collections/{col}/documents", content=b'{"metadata": {"n": 1' + b"0" * 309 + b"}}",
                 headers={"Content-Type": "application/json"})
    assert (r.status_code, r.json()["error"]["code"]) == (422, "number_out_of_range")
    r = api.post("/v1/agents/sessions", content=b'{"agent_config": {}}', headers={"Content-Type": "text/plain"})
    assert (r.status_code, r.json()["error"]["code"]) == (415, "unsupported_media_type")


def test_huge_headers_are_refused_before_authentication(gateway):
    from tests.gateway.test_protocol import _exchange

    head = b"GET /v1/agents/sessions/tools HTTP/1.1\r\nHost: x\r\nX-Junk: " + b"j" * (32 * 1024 * 1024)
    answer = _exchange(gateway, head, 16384)  # no key at all: refused before authentication
    assert answer.startswith(b"HTTP/1.1 431 ") and b'"headers_too_large"' in answer


def test_a_terminated_session_cannot_approve_a_pending_write(api):
    sid = new_session(api)
    paused = sse.parse(send(api, sid, "create a collection named pwn3").text)[-1].data
    api.delete(f"/v1/agents/sessions/{sid}")
    r = api.post(f"/v1/agents/sessions/{sid}/confirmations/{paused['confirmation_id']}", json={"approved": True})
    assert (r.status_code, r.json()["error"]["code"]) == (400, "session_terminated")
    assert "pwn3" not in [c["collection_name"] for c in api.post("/v1/collections/list", json={}).json()["results"]]
