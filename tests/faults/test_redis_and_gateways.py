"""Redis restarted or silent, and gateways stopped: clients resume without a gap, the gateway
answers 503 + Retry-After while Redis is away and recovers by itself."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator

import httpx
import pytest

from cli import embedded
from tests.faults.harness import Listener, check_log, stored
from tests.gateway.seed import seed_demo_for
from tests.stack import Stack

pytestmark = pytest.mark.faults
QUESTION = "find documents about redis streams and consumer groups"


@pytest.fixture
def stack() -> Iterator[Stack]:
    s = Stack(env={"AGENTSTREAM_BUILTIN_TOKEN_DELAY_MS": "60", "AGENTSTREAM_LEASE_S": "2",
                   "AGENTSTREAM_REAPER_INTERVAL_S": "0.5"})
    s.start_redis()
    s.start_worker()
    a = s.start_gateway()
    s.start_gateway()
    s.wait_ready(a)
    yield s
    s.stop()


def setup(stack: Stack):
    tenant = stack.new_tenant()
    seed_demo_for(stack, tenant)
    key, ns, _ = tenant
    headers = {"Authorization": f"Bearer {key}", "X-Namespace": ns}
    gws = [p for p in stack.procs if p.kind == "gateway"]
    sid = httpx.post(gws[0].url + "/v1/agents/sessions", json={"agent_config": {}}, headers=headers).json()["session_id"]
    return gws, headers, sid


def resume_until_done(url: str, headers: dict[str, str], last_id: str | None, timeout_s: float = 40) -> list:
    """What a well-behaved client does: reconnect with Last-Event-ID, honour 503 Retry-After."""
    got = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        h = {**headers, **({"Last-Event-ID": last_id} if last_id else {})}
        listener = Listener("GET", url, h)
        listener.run()
        if listener.status == 204:
            return got
        if listener.status != 200:
            time.sleep(0.3)
            continue
        got.extend(listener.events)
        last_id = listener.last_id() or last_id
        if got and got[-1].type in ("done", "error"):
            return got
        time.sleep(0.1)
    raise TimeoutError("never finished")


def test_redis_restart_mid_answer(stack):
    gws, headers, sid = setup(stack)
    first = Listener("POST", gws[0].url + f"/v1/agents/sessions/{sid}/messages", headers, {"content": QUESTION})
    first.start()
    first.wait_for(lambda evs: sum(e.type == "token" for e in evs) >= 3)
    mid = first.response_headers["x-message-id"]
    embedded.stop(stack.redis_proc, stack.data_dir)  # SHUTDOWN: the AOF is flushed first
    first.join(10)
    assert not first.is_alive()  # the gateway closed the stream, asking the client to resume
    assert "retry:" in first.raw.split("\n\n")[-2] or "closing" in first.raw
    down = httpx.post(gws[1].url + f"/v1/agents/sessions/{sid}/messages", json={"content": "hello"},
                      headers=headers, timeout=15)
    assert down.status_code == 503 and down.headers["retry-after"]
    assert down.json()["error"]["type"] == "ServiceUnavailableError"
    assert httpx.get(gws[1].url + "/readyz", timeout=15).status_code == 503
    time.sleep(1)
    stack.redis_proc = embedded.start(stack.data_dir)  # same data dir, same AOF
    rest = resume_until_done(gws[1].url + f"/v1/agents/sessions/{sid}/messages/{mid}/events", headers,
                             first.last_id())
    received = [e for e in first.events + rest if e.type != "reset"]
    log = stored(stack, sid, mid)
    assert check_log(log)["terminal"] == 1
    assert [e.id for e in received] == [e.id for e in log]  # no gap, nothing twice
    for _ in range(100):  # both gateways recover by themselves
        if all(httpx.get(g.url + "/readyz").status_code == 200 for g in gws):
            break
        time.sleep(0.1)
    ok = httpx.post(gws[0].url + f"/v1/agents/sessions/{sid}/messages", json={"content": "hello", "stream": False},
                    headers=headers, timeout=30)
    assert ok.status_code == 200 and ok.json()["status"] == "completed"


def test_silent_redis_is_noticed_within_the_socket_timeout(stack):
    gws, headers, sid = setup(stack)
    stack.redis_proc.send_signal(signal.SIGSTOP)  # connections stay open; nothing answers
    try:
        t0 = time.monotonic()
        r = httpx.get(gws[0].url + "/readyz", timeout=20)
        took = time.monotonic() - t0
        assert r.status_code == 503
        assert took < 8  # the 5 s socket timeout, not a hang
    finally:
        stack.redis_proc.send_signal(signal.SIGCONT)
    for _ in range(100):
        if httpx.get(gws[0].url + "/readyz").status_code == 200:
            break
        time.sleep(0.1)
    assert httpx.get(gws[0].url + "/readyz").status_code == 200


def test_gateway_sigterm_tells_clients_to_reconnect_and_they_resume_elsewhere(stack):
    gws, headers, sid = setup(stack)
    first = Listener("POST", gws[0].url + f"/v1/agents/sessions/{sid}/messages", headers, {"content": QUESTION})
    first.start()
    first.wait_for(lambda evs: sum(e.type == "token" for e in evs) >= 3)
    mid = first.response_headers["x-message-id"]
    t0 = time.monotonic()
    # uvicorn re-raises the signal after its graceful shutdown, so -SIGTERM is a clean exit
    assert stack.stop_proc(gws[0]) in (0, -signal.SIGTERM)
    assert time.monotonic() - t0 < 8
    first.join(5)
    assert not first.is_alive()
    assert "closing: shutdown" in first.raw and "retry: 250" in first.raw
    rest = resume_until_done(gws[1].url + f"/v1/agents/sessions/{sid}/messages/{mid}/events", headers,
                             first.last_id())
    log = stored(stack, sid, mid)
    assert [e.id for e in first.events + rest] == [e.id for e in log]
    assert check_log(log)["terminal"] == 1
