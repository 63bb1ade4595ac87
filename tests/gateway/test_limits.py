"""Limits over real HTTP, on a stack configured with small limits."""

from __future__ import annotations

import time
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
    # The limit counts per clock minute (gateway/limits.py): a run that straddles a minute's end
    # starts a fresh count halfway and shows nothing. Such a run is redone with a fresh key;
    # a run inside one minute must show the limit exactly.
    for _ in range(3):
        minute = int(time.time() // 60)
        with client(limited, limited.new_tenant()) as api:
            codes = [api.get("/v1/agents/sessions/tools").status_code for _ in range(30)]
            r = api.get("/v1/agents/sessions/tools")
        if int(time.time() // 60) == minute:
            break
    assert codes[:25] == [200] * 25 and set(codes[25:]) == {429}
    assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1
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
        deadline = time.monotonic() + 30  # against a hang: the next write comes within a token's delay
        while (r := api.post(url, json={"content": "hello four"})).status_code != 200:
            assert r.json()["error"]["code"] == "too_many_streams"
            assert time.monotonic() < deadline, "the slots were never released"
            time.sleep(0.3)


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


def test_session_log_stream_counts_toward_the_per_key_stream_limit(limited):
    """Issue 15.5: GET .../events (the session log) took no stream slot, so with a limit of 3,
    20 session-log streams opened while 3 message streams held the key's slots."""
    tenant = limited.new_tenant()
    with client(limited, tenant) as api:
        sid = api.post("/v1/agents/sessions", json={"agent_config": {}}).json()["session_id"]
        url = f"/v1/agents/sessions/{sid}/messages"
        with api.stream("POST", url, json={"content": "hello one"}) as a, \
                api.stream("POST", url, json={"content": "hello two"}) as b:
            assert a.status_code == b.status_code == 200
            log = api.get(f"/v1/agents/sessions/{sid}/events")
            assert log.status_code == 429 and log.json()["error"]["code"] == "too_many_streams"
            assert log.headers["retry-after"] == "1"
        with api.stream("GET", f"/v1/agents/sessions/{sid}/events") as one, \
                api.stream("GET", f"/v1/agents/sessions/{sid}/events") as two:
            assert one.status_code == two.status_code == 200, (one.status_code, two.status_code)
            third = api.get(f"/v1/agents/sessions/{sid}/messages/{a.headers['x-message-id']}/events")
            assert third.status_code == 429


def test_stream_limits_have_defaults_and_the_process_ceiling_comes_from_the_fd_limit(monkeypatch):
    import resource

    from gateway.limits import stream_ceiling
    from shared.settings import Settings

    assert Settings().max_streams_per_key == 500 and Settings().max_open_streams == 0
    monkeypatch.setattr(resource, "getrlimit", lambda _: (1024, 4096))
    assert stream_ceiling(Settings()) == 1024 - 256  # a quarter stays for everything else
    monkeypatch.setattr(resource, "getrlimit", lambda _: (256, 4096))
    assert stream_ceiling(Settings()) == 256 - 128
    assert stream_ceiling(Settings(max_open_streams=7)) == 7


def test_a_gateway_at_its_stream_ceiling_refuses_new_streams_with_503_and_retry_after():
    """Issue 15.5: one key opened 1,500 streams (1,519 descriptors) with the default settings; the
    process now stops at its ceiling, for every key, before descriptors run out."""
    s = Stack(env={"AGENTSTREAM_MAX_OPEN_STREAMS": "2", "AGENTSTREAM_MAX_STREAMS_PER_KEY": "0"})
    s.start_redis()
    s.start_gateway()  # no worker: a message stays queued, so its event stream stays open
    try:
        (a, b) = s.new_tenant(), s.new_tenant()
        with client(s, a) as api_a, client(s, b) as api_b:
            sid = api_a.post("/v1/agents/sessions", json={"agent_config": {}}).json()["session_id"]
            with api_a.stream("POST", f"/v1/agents/sessions/{sid}/messages", json={"content": "hi"}) as first:
                mid = first.headers["x-message-id"]
                with api_a.stream("GET", f"/v1/agents/sessions/{sid}/events") as second:
                    assert first.status_code == second.status_code == 200
                    sid_b = api_b.post("/v1/agents/sessions", json={"agent_config": {}}).json()["session_id"]
                    assert sid_b.startswith("ses_")  # ordinary requests still work
                    refused = api_b.get(f"/v1/agents/sessions/{sid_b}/events")
                    assert refused.status_code == 503, refused.text
                    assert refused.json()["error"]["code"] == "too_many_open_streams"
                    assert refused.headers["retry-after"] == "1"
            for _ in range(50):  # freed once the gateway notices the clients left
                with api_a.stream("GET", f"/v1/agents/sessions/{sid}/messages/{mid}/events") as r:
                    if r.status_code == 200:
                        break
                time.sleep(0.2)
            assert r.status_code == 200
    finally:
        s.stop()
