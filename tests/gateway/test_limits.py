"""Limits over real HTTP, on a stack configured with small limits."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests import sse
from tests.gateway.seed import seed_demo_for
from tests.stack import Stack


@pytest.fixture(scope="module")
def limited() -> Iterator[Stack]:
    s = Stack(env={
        "AGENTSTREAM_MAX_BODY_BYTES": "2048",
        "AGENTSTREAM_MAX_CONTENT_CHARS": "200",
        "AGENTSTREAM_RATE_LIMIT_PER_MINUTE": "25",
        "AGENTSTREAM_MAX_STREAMS_PER_KEY": "2",
        "AGENTSTREAM_MAX_EVENT_BYTES": "600",
        "AGENTSTREAM_BUILTIN_TOKEN_DELAY_MS": "50",
    })
    s.start_redis()
    s.start_worker()
    gw = s.start_gateway()
    s.wait_ready(gw)
    yield s
    s.stop()


def client(s: Stack, tenant) -> httpx.Client:
    gw = next(p for p in s.procs if p.kind == "gateway")
    key, ns, _ = tenant
    return httpx.Client(base_url=gw.url, headers={"Authorization": f"Bearer {key}", "X-Namespace": ns}, timeout=30)


def test_oversized_body_is_413_before_it_is_read(limited):
    with client(limited, limited.new_tenant()) as api:
        sid = api.post("/v1/agents/sessions", json={"agent_config": {}}).json()["session_id"]
        r = api.post(f"/v1/agents/sessions/{sid}/messages", content=b'{"content": "' + b"x" * 5000 + b'"}',
                     headers={"Content-Type": "application/json"})
        assert r.status_code == 413 and r.json()["error"]["code"] == "body_too_large"

        def chunks():
            yield b'{"content": "'
            for _ in range(10):
                yield b"y" * 1000  # no Content-Length: refused while streaming in
            yield b'"}'

        r = api.post(f"/v1/agents/sessions/{sid}/messages", content=chunks(),
                     headers={"Content-Type": "application/json"})
        assert r.status_code == 413


def test_overlong_content_is_422(limited):
    with client(limited, limited.new_tenant()) as api:
        sid = api.post("/v1/agents/sessions", json={"agent_config": {}}).json()["session_id"]
        r = api.post(f"/v1/agents/sessions/{sid}/messages", json={"content": "z" * 201})
        assert r.status_code == 422 and r.json()["error"]["code"] == "content_too_long"


def test_per_key_rate_limit_is_429_with_retry_after(limited):
    with client(limited, limited.new_tenant()) as api:
        codes = [api.get("/v1/agents/sessions/tools").status_code for _ in range(30)]
        assert codes[:25] == [200] * 25 and set(codes[25:]) == {429}
        r = api.get("/v1/agents/sessions/tools")
        assert int(r.headers["retry-after"]) >= 1
        assert r.json()["error"]["details"]["retryable"] is True
    with client(limited, limited.new_tenant()) as other:  # another key is not affected
        assert other.get("/v1/agents/sessions/tools").status_code == 200


def test_concurrent_streams_per_key_are_limited(limited):
    tenant = limited.new_tenant()
    with client(limited, tenant) as api:
        sid = api.post("/v1/agents/sessions", json={"agent_config": {}}).json()["session_id"]
        url = f"/v1/agents/sessions/{sid}/messages"
        with api.stream("POST", url, json={"content": "hello one"}) as a, \
                api.stream("POST", url, json={"content": "hello two"}) as b:
            assert a.status_code == b.status_code == 200
            third = api.post(url, json={"content": "hello three"})
            assert third.status_code == 429 and third.json()["error"]["code"] == "too_many_streams"
            assert third.headers["retry-after"] == "1"
        # slots are released once the gateway notices the clients left (its next write)
        import time

        for _ in range(15):
            r = api.post(url, json={"content": "hello four"})
            if r.status_code == 200:
                break
            assert r.json()["error"]["code"] == "too_many_streams"
            time.sleep(0.3)
        assert r.status_code == 200


def test_oversized_event_ends_the_message_with_a_clear_error(limited):
    tenant = limited.new_tenant()
    seed_demo_for(limited, tenant)
    with client(limited, tenant) as api:
        sid = api.post("/v1/agents/sessions", json={"agent_config": {}}).json()["session_id"]
        r = api.post(f"/v1/agents/sessions/{sid}/messages", json={"content": "find documents about redis streams"})
        events = sse.parse(r.text)
        sse.check_stream(events)
        assert events[-1].type == "error" and events[-1].data["code"] == "event_too_large"
        assert "exceeds 600 bytes" in events[-1].data["message"]
