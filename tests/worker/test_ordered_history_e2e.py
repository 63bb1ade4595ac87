"""What the model is told when a user sends again before the agent has answered (issue 20):
Claude (played by the fake Messages API) receives, for each of several rapid messages of one
session, every earlier exchange in order and none of the later ones. Real gateway and worker
processes; the fake records every request body."""

from __future__ import annotations

import concurrent.futures
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests import sse
from tests.fakes.anthropic_server import FakeAnthropic, Reply, Text
from tests.stack import Stack

pytestmark = pytest.mark.integration
MODEL = "claude-haiku-4-5-20251001"
KEY = "sk-ant-order-not-a-real-key"


def _echo(body: dict[str, Any]) -> Reply:
    """Answer slowly enough that the messages overlap, naming the question answered."""
    question = body["messages"][-1]["content"]
    return Reply([Text("You said: ", question, ".")], delay_s=0.05)


@pytest.fixture(scope="module")
def claude() -> Iterator[tuple[Stack, FakeAnthropic, str]]:
    with FakeAnthropic(responder=_echo) as fake:
        s = Stack()
        try:
            s.start_redis()
            env = {"ANTHROPIC_API_KEY": KEY, "AGENTSTREAM_ANTHROPIC_BASE_URL": fake.url}
            s.start_worker(**env)
            s.start_worker(**env)
            gw = s.start_gateway(**env)
            s.wait_ready(gw)
            yield s, fake, gw.url
        finally:
            s.stop()


def test_each_rapid_message_is_answered_with_every_earlier_exchange_and_no_later_one(claude):
    stack, fake, url = claude
    key, ns, _ = stack.new_tenant()
    headers = {"Authorization": f"Bearer {key}", "X-Namespace": ns}
    sid = httpx.post(url + "/v1/agents/sessions", headers=headers,
                     json={"agent_config": {"model": MODEL, "available_tools": []}}).json()["session_id"]
    questions = [f"question number {i}" for i in range(5)]

    def send(q: str) -> list[sse.Ev]:
        r = httpx.post(url + f"/v1/agents/sessions/{sid}/messages", headers=headers, json={"content": q}, timeout=60)
        assert r.status_code == 200, r.text
        return sse.parse(r.text)

    first = len(fake.requests)
    with concurrent.futures.ThreadPoolExecutor(5) as pool:
        results = list(pool.map(send, questions))
    assert all(events[-1].type == "done" for events in results)
    sent = [r.body["messages"] for r in fake.requests[first:]]
    assert len(sent) == 5
    accepted = [m[-1]["content"] for m in sent]  # the order the model saw them in
    assert sorted(accepted) == sorted(questions)
    for i, messages in enumerate(sent):
        expected: list[dict[str, Any]] = []
        for q in accepted[:i]:
            expected += [{"role": "user", "content": q}, {"role": "assistant", "content": f"You said: {q}."}]
        expected.append({"role": "user", "content": accepted[i]})
        assert messages == expected
    rows = httpx.get(url + f"/v1/agents/sessions/{sid}/history", headers=headers).json()["messages"]
    assert [r["content"] for r in rows if r["role"] == "user"] == accepted  # history in that same order
