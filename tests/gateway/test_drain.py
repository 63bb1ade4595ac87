"""A gateway's SIGTERM drain (gateway/main.py): open streams are handed over at once, and a send
or stream that still reaches the gateway meanwhile gets 503 `draining`, not a refused
connection (issue 19: during the drain a new POST got no answer at all)."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator

import httpx
import pytest

from tests.stack import Stack

pytestmark = pytest.mark.integration


@pytest.fixture
def paced() -> Iterator[Stack]:
    s = Stack(env={"AGENTSTREAM_BUILTIN_TOKEN_DELAY_MS": "100"})
    s.start_redis()
    s.start_worker()
    yield s
    s.stop()


def test_sigterm_hands_streams_over_then_answers_503_draining_until_it_exits(paced: Stack) -> None:
    # Long enough that the checks below certainly fall inside it; a second SIGTERM ends it.
    gw = paced.start_gateway(AGENTSTREAM_GATEWAY_DRAIN_S="60")
    paced.wait_ready(gw)
    key, ns, _ = paced.new_tenant()
    headers = {"Authorization": f"Bearer {key}", "X-Namespace": ns}
    api = httpx.Client(base_url=gw.url, headers=headers, timeout=30)
    sid = api.post("/v1/agents/sessions", json={"agent_config": {}}).json()["session_id"]

    lines: list[str] = []
    opened, mid = threading.Event(), []

    def follow() -> None:
        with httpx.Client(base_url=gw.url, headers=headers, timeout=30) as c, \
                c.stream("POST", f"/v1/agents/sessions/{sid}/messages",
                         json={"content": "find documents about redis streams"}) as r:
            mid.append(r.headers["x-message-id"])
            for line in r.iter_lines():
                lines.append(line)
                if line.startswith("event: token"):
                    opened.set()

    reader = threading.Thread(target=follow)
    reader.start()
    assert opened.wait(30), "the answer never started streaming"
    gw.popen.send_signal(signal.SIGTERM)
    reader.join(30)
    assert not reader.is_alive()
    assert lines[-2:] == [": closing: shutdown; reconnect with Last-Event-ID", "retry: 250"]
    assert not any(line.startswith("event: done") for line in lines)  # handed over mid-answer

    # New connections, as a client the load balancer still routes here would open.
    send = httpx.post(f"{gw.url}/v1/agents/sessions/{sid}/messages", headers=headers,
                      json={"content": "hello", "stream": False}, timeout=10)
    resume = httpx.get(f"{gw.url}/v1/agents/sessions/{sid}/messages/{mid[0]}/events", headers=headers, timeout=10)
    log = httpx.get(f"{gw.url}/v1/agents/sessions/{sid}/events", headers=headers, timeout=10)
    ready = httpx.get(f"{gw.url}/readyz", timeout=10)
    for r in (send, resume, log):
        assert r.status_code == 503, r.text
        assert r.json()["error"]["code"] == "draining" and r.headers["retry-after"] == "1"
        assert r.json()["error"]["details"] == {"retryable": True, "retry_after_seconds": 1}
    assert ready.status_code == 503  # the load balancer's cue to stop routing here
    assert gw.popen.poll() is None

    gw.popen.send_signal(signal.SIGTERM)  # a second signal: exit now, not after the drain
    gw.popen.wait(timeout=30)
    api.close()
