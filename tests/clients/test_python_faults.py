"""The Python client through real faults: random cuts (inside headers and mid-event), a gateway
SIGKILLed mid-answer, a POST whose response is lost after the server accepted it, a trimmed
cursor (``reset cursor_expired``) and a worker SIGKILLed mid-answer (``reset retry``).

For every message the application's kept events (every ``reset`` applied as the client
announced it) equal the stored log: lost, duplicated, out of order and bad retractions all 0.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx
import pytest
from agentstream_client import AgentStream, AsyncAgentStream, MessageStream, StreamEvent

from tests.clients.harness import (
    CHAT,
    CHAT_CUTS,
    CLAUDE,
    SEARCH,
    SEARCH_CUTS,
    Faulty,
    Tally,
    effective,
    stored,
)
from tests.proxy import CuttingProxy
from tests.stack import Stack

pytestmark = pytest.mark.faults
TALLY = Tally()  # across the module


@pytest.fixture(scope="module", autouse=True)
def report() -> Iterator[None]:
    yield
    print("\n" + TALLY.line("python client, all fault scenarios"))


def record(ev: StreamEvent, out: list[tuple[str, str, tuple[str, ...], str]]) -> None:
    reason = str(getattr(ev.event, "reason", "")) if ev.type == "reset" else ""
    out.append((ev.id, ev.type, ev.retracted, reason))


def finish(stack: Stack, sid: str, stream: MessageStream | object, delivered: list) -> None:
    mid = stream.message_id  # type: ignore[attr-defined]
    TALLY.check(delivered, effective(stored(stack, sid, mid)), stream.connections - 1)  # type: ignore[attr-defined]


def test_random_cuts_lose_and_repeat_nothing(faulty: Faulty, tenant):
    """Short chat answers cut within a few hundred bytes (many cycles), then search answers
    whose big tool results are cut in the middle too."""
    key, ns, _ = tenant
    runs: list[tuple[str, object, list]] = []

    async def conversation(client: AsyncAgentStream, n: int, questions: list[str], count: int) -> None:
        sid = (await client.create_session())["session_id"]
        for i in range(count):
            delivered: list = []
            stream = client.send(sid, questions[(n + i) % len(questions)])
            async for ev in stream:
                record(ev, delivered)
            assert type(stream.result).__name__ in ("Done", "Error")
            runs.append((sid, stream, delivered))

    async def phase(questions: list[str], count: int) -> None:
        async with AsyncAgentStream(faulty.proxy.url, key, ns, max_retries=30) as client:
            await asyncio.gather(*(conversation(client, n, questions, count) for n in range(8)))

    cycles_before = TALLY.cycles
    faulty.proxy.cut_bytes, faulty.proxy.cut_ratio = CHAT_CUTS, 1.0
    asyncio.run(phase(CHAT, 2))
    faulty.proxy.cut_bytes = SEARCH_CUTS
    asyncio.run(phase(SEARCH, 1))
    for sid, stream, delivered in runs:
        finish(faulty.stack, sid, stream, delivered)
    print("\n" + TALLY.line("python client, random cuts"), faulty.proxy.stats())
    assert TALLY.exact() == (0, 0, 0, 0)
    assert faulty.proxy.counters["cuts_in_headers"] > 0
    assert TALLY.cycles - cycles_before >= 200


def test_gateway_sigkill_mid_answer(faulty: Faulty, tenant):
    """A paced (fake Claude) answer, so the gateway dies while it still streams."""
    key, ns, _ = tenant
    faulty.proxy.cut_ratio = 0.0  # only the kill cuts this answer
    try:
        with AgentStream(faulty.proxy.url, key, ns, max_retries=30) as client:
            sid = client.create_session({"agent_config": {"model": CLAUDE}})["session_id"]
            delivered: list = []
            stream = client.send(sid, "tell me something long")
            for n, ev in enumerate(stream):
                record(ev, delivered)
                if n == 6:
                    faulty.kill_gateway()
            assert stream.connections >= 2  # the kill cut it; it resumed on the other gateway
            finish(faulty.stack, sid, stream, delivered)
    finally:
        faulty.proxy.cut_ratio = 1.0
    assert TALLY.exact() == (0, 0, 0, 0)


def test_post_response_lost_after_accept_returns_the_same_message(faulty: Faulty, tenant):
    key, ns, _ = tenant
    faulty.proxy.cut_ratio = 0.0
    try:
        with AgentStream(faulty.proxy.url, key, ns) as client:
            sid = client.create_session()["session_id"]
            faulty.proxy.drop_next(1)
            delivered: list = []
            stream = client.send(sid, "hello there")
            for ev in stream:
                record(ev, delivered)
            finish(faulty.stack, sid, stream, delivered)
            faulty.proxy.drop_next(1)
            answer = client.send_and_wait(sid, "hello again")
            history = client.get_history(sid)
    finally:
        faulty.proxy.cut_ratio = 1.0
    assert faulty.proxy.counters["dropped_responses"] >= 2
    users = [m for m in history["messages"] if m["role"] == "user"]
    assert [m["content"] for m in users] == ["hello there", "hello again"]  # each sent once
    assert answer["status"] == "completed"
    assert TALLY.exact() == (0, 0, 0, 0)


def test_worker_sigkill_mid_answer_retracts_the_dead_attempt(faulty: Faulty, tenant):
    """Attempt 2 of a diverging model starts with ``reset retry``. (On a loaded machine the
    reaper may end a killed attempt with ``job_lost`` instead of retrying it: then the next
    message is tried, up to three; every one must still be exact.)"""
    key, ns, _ = tenant
    resets: list[StreamEvent] = []
    with AgentStream(faulty.proxy.url, key, ns, max_retries=30) as client:
        sid = client.create_session({"agent_config": {"model": CLAUDE}})["session_id"]
        for _ in range(3):
            delivered: list = []
            stream = client.send(sid, "tell me something long", on_reset=resets.append)
            tokens = 0
            for ev in stream:
                record(ev, delivered)
                tokens += ev.type == "token"
                if tokens == 5 and ev.type == "token":
                    assert stream.message_id is not None
                    faulty.kill_worker_of(sid, stream.message_id)
            finish(faulty.stack, sid, stream, delivered)
            if any(getattr(r.event, "reason", "") == "retry" for r in resets):
                break
    retry = [r for r in resets if getattr(r.event, "reason", "") == "retry"]
    assert retry and all(r.retracted for r in retry)  # the dead attempt's tokens, taken back
    assert TALLY.exact() == (0, 0, 0, 0)


def test_trimmed_cursor_resets_and_keeps_exactly_the_stored_log(trim: tuple[Stack, CuttingProxy]):
    stack, proxy = trim
    key, ns, _ = stack.new_tenant()
    proxy.cut_ratio = 0.0
    gw = next(p for p in stack.procs if p.kind == "gateway")
    expired = 0
    with AgentStream(proxy.url, key, ns, max_retries=30) as client:
        sid = client.create_session()["session_id"]
        for _ in range(2):
            delivered: list = []
            stream = client.send(sid, "hello there, what can you do?")
            for n, ev in enumerate(stream):
                record(ev, delivered)
                if n == 2:
                    # Freeze the proxy, cut the stream, let the answer finish (its stream is
                    # trimmed to the last few entries), then let the client resume.
                    proxy.hold()
                    proxy.cut_all()
                    httpx.get(gw.url + f"/v1/agents/sessions/{sid}/messages/{stream.message_id}/events",
                              headers={"Authorization": f"Bearer {key}", "X-Namespace": ns}, timeout=30)
                    proxy.release()
            expired += sum(1 for d in delivered if d[3] == "cursor_expired")
            finish(stack, sid, stream, delivered)
    assert expired >= 2
    assert TALLY.exact() == (0, 0, 0, 0)
