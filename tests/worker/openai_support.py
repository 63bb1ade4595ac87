"""What the OpenAI-compatible end-to-end tests share: the catalogue that points a stack at the
fake server, a stack holding it, and plain-HTTP calls (as curl makes them)."""

from __future__ import annotations

import json
from typing import Any

import httpx

from tests import sse
from tests.fakes.openai_server import FakeOpenAI
from tests.gateway.seed import seed_demo_for
from tests.stack import Proc, Stack

KEY = "sk-openai-e2e-not-a-real-key"
MODEL = "fake-gpt"
QUESTION = "find documents about redis cluster hash tags"
INPUTS: dict[str, Any] = {"query": "redis cluster hash tags", "limit": 3}


def catalogue(fake: FakeOpenAI) -> str:
    return json.dumps({"models": {
        MODEL: {"provider": "openai", "base_url": fake.base_url, "api_key_env": "AS_TEST_FAKE_OPENAI_KEY"},
        "fake-stall": {"provider": "openai", "base_url": fake.base_url, "api_key_env": "AS_TEST_FAKE_OPENAI_KEY",
                       "timeout_s": 1, "model": "fake-upstream"},
        "local/*": {"provider": "openai", "base_url": fake.base_url, "max_tokens": 333, "temperature": 0.1},
    }})


def start_stack(fake: FakeOpenAI, workers: int, **env: str) -> Stack:
    """Redis, ``workers`` workers and one gateway, all reading the catalogue and the fake's key.
    No fallback to the built-in model: a model that cannot run is refused, as in production."""
    s = Stack(env={"AGENTSTREAM_MODELS": catalogue(fake), "AS_TEST_FAKE_OPENAI_KEY": KEY,
                   "AGENTSTREAM_FALLBACK_TO_BUILTIN": "false", **env})
    try:
        s.start_redis()
        for _ in range(workers):
            s.start_worker()
        s.wait_ready(s.start_gateway())
    except BaseException:
        s.stop()
        raise
    return s


def gateway_of(stack: Stack) -> Proc:
    return next(p for p in stack.procs if p.kind == "gateway")


def seeded_tenant(stack: Stack) -> tuple[str, str, str]:
    """A fresh key in a fresh namespace that holds the demo collection: (key, namespace, ns id)."""
    tenant = stack.new_tenant()
    seed_demo_for(stack, tenant)
    return tenant


def client_for(stack: Stack, tenant: tuple[str, str, str]) -> httpx.Client:
    key, ns, _ = tenant
    return httpx.Client(base_url=gateway_of(stack).url, headers={"Authorization": f"Bearer {key}",
                                                                 "X-Namespace": ns}, timeout=30)


def new_session(api: httpx.Client, **config: Any) -> str:
    r = api.post("/v1/agents/sessions", json={"agent_config": config})
    assert r.status_code == 200, r.text
    return str(r.json()["session_id"])


def ask(api: httpx.Client, sid: str, content: str) -> tuple[str, list[sse.Ev]]:
    """As ``curl -N`` does: one POST, the SSE body read as it comes."""
    with api.stream("POST", f"/v1/agents/sessions/{sid}/messages", json={"content": content},
                    headers={"Accept": "text/event-stream"}) as r:
        assert r.status_code == 200, r.read()
        assert r.headers["content-type"].startswith("text/event-stream")
        text = "".join(r.iter_text())
        mid = r.headers["x-message-id"]
    events = sse.parse(text)
    sse.check_stream(events)
    return mid, events


def tool_messages(body: dict[str, Any]) -> list[dict[str, Any]]:
    return [m for m in body["messages"] if m["role"] == "tool"]
