"""Cancel, SIGTERM hand-over and SIGKILL with an OpenAI-compatible model: the provider's HTTP
stream is closed when the answer stops, and a retry on another worker with a model that words
itself differently reuses the recorded tool results and announces its new text with a reset.
Two workers with a short lease, so a killed or stopped worker's message continues on the other.
"""

from __future__ import annotations

import json
import random
import signal
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from shared import cursor
from tests import sse
from tests.fakes.openai_server import FakeOpenAI, Reply, Text, ToolCall
from tests.faults.harness import Listener, check_log, effective_tokens, record, stored, worker_running
from tests.stack import Proc, Stack
from tests.worker.openai_support import (
    INPUTS,
    MODEL,
    QUESTION,
    client_for,
    gateway_of,
    new_session,
    seeded_tenant,
    start_stack,
    tool_messages,
)

pytestmark = pytest.mark.faults


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(responder=None) as server:
        yield server


@pytest.fixture(scope="module")
def stack(fake: FakeOpenAI) -> Iterator[Stack]:
    s = start_stack(fake, workers=2, AGENTSTREAM_LEASE_S="2", AGENTSTREAM_REAPER_INTERVAL_S="0.5",
                    AGENTSTREAM_WORKER_DRAIN_S="1")
    yield s
    s.stop()


@pytest.fixture
def gw(stack: Stack) -> Proc:
    return gateway_of(stack)


@pytest.fixture
def responder(fake: FakeOpenAI) -> Iterator[FakeOpenAI]:
    yield fake
    fake.responder = None
    fake.replies.clear()


@pytest.fixture
def api(stack: Stack) -> Iterator[httpx.Client]:
    with client_for(stack, seeded_tenant(stack)) as client:
        yield client


def workers(stack: Stack) -> list[Proc]:
    return [p for p in stack.procs if p.kind == "worker"]


def keep_two_workers(stack: Stack) -> None:
    for p in workers(stack):
        if p.popen.poll() is not None:
            stack.procs.remove(p)
    while len(workers(stack)) < 2:
        stack.start_worker()


# --- cancel and hand-over reach the provider ------------------------------------------------------


def start(gw: Proc, api: httpx.Client, sid: str, content: str) -> tuple[Listener, str]:
    listener = Listener("POST", gw.url + f"/v1/agents/sessions/{sid}/messages", dict(api.headers),
                        {"content": content})
    listener.start()
    listener.wait_for(lambda evs: bool(listener.status), 10)
    return listener, listener.response_headers["x-message-id"]


def tokens_seen(n: int, after: str | None = None):  # type: ignore[no-untyped-def]
    def pred(evs: list[sse.Ev]) -> bool:
        start = next((i for i, e in enumerate(evs) if e.type == after), None) if after else 0
        return start is not None and sum(1 for e in evs[start:] if e.type == "token") >= n
    return pred


WORDS = [f"w{i} " for i in range(40)]


@pytest.mark.parametrize("reply", [
    # The server has gone quiet: the worker learns of the cancel when its lease is refused.
    Reply([Text("one ", "two ", "three ", "four")], stall_after=3),
    # Tokens still flowing: the next token's append is refused, and the step is closed at once.
    Reply([Text(*WORDS)], delay_s=0.25),
], ids=["stalled", "streaming"])
def test_cancel_closes_the_providers_stream(gw: Proc, api: httpx.Client, responder: FakeOpenAI,
                                            reply: Reply) -> None:
    fake = responder
    first = len(fake.served)
    fake.script(reply)
    sid = new_session(api, model=MODEL)
    listener, mid = start(gw, api, sid, "hello")
    listener.wait_for(tokens_seen(2))
    served = fake.served[first]
    assert not served.disconnected.is_set()
    r = api.post(f"/v1/agents/sessions/{sid}/messages/{mid}/cancel")
    assert r.status_code == 200 and r.json()["cancelled"] is True
    listener.join(20)
    assert listener.events[-1].type == "error" and listener.events[-1].data["code"] == "cancelled"
    assert served.disconnected.wait(15)  # the worker closed the connection: no tokens paid for after it
    assert served.chunks_sent < len(WORDS)  # the answer was cut short, not read to its end
    assert len(fake.served) - first == 1


def test_sigterm_hand_over_closes_the_stream_and_another_worker_continues(
        stack: Stack, gw: Proc, api: httpx.Client, responder: FakeOpenAI) -> None:
    fake = responder
    keep_two_workers(stack)
    first = len(fake.served)
    fake.script(Reply([Text("one ", "two ", "three ", "four")], stall_after=3),
                Reply([Text("one ", "two ", "three ", "four")]))
    sid = new_session(api, model=MODEL)
    listener, mid = start(gw, api, sid, "hello")
    listener.wait_for(tokens_seen(2))
    leaving = worker_running(stack, sid, mid)
    leaving.popen.send_signal(signal.SIGTERM)
    assert fake.served[first].disconnected.wait(20)
    listener.join(30)
    assert leaving.popen.wait(10) == 0
    events = stored(stack, sid, mid)
    assert check_log(events) == {"terminal": 1, "tool_reruns": 0, "resets": 0}  # the same text: continued
    assert events[-1].type == "done" and effective_tokens(events) == "one two three four"
    assert listener.events == events
    stack.procs.remove(leaving)
    keep_two_workers(stack)


# --- a retry with a model that does not repeat itself ---------------------------------------------


class Sampling:
    """A model that samples: no two answers are worded alike, and its call ids are random, as
    OpenAI's are. Only the tool it picks (the same search for the same question) is stable.
    The first final answer is slow, so that a test can kill the worker in the middle of it."""

    OPENERS = ["Let me search. ", "Searching the docs. ", "One moment, looking. ", "I'll check the docs. "]
    WORDS = ["Braces", "keep", "related", "keys", "on", "one", "slot", "so", "multi-key", "commands", "work"]

    def __init__(self) -> None:
        self.rng = random.Random()
        self.last_opener = ""
        self.answers = 0
        self.lock = threading.Lock()

    def __call__(self, body: dict[str, Any]) -> Reply:
        with self.lock:
            if not tool_messages(body):
                opener = self.rng.choice([o for o in self.OPENERS if o != self.last_opener])
                self.last_opener = opener
                return Reply([Text(opener), ToolCall("smart_search", INPUTS)], prompt_tokens=30, completion_tokens=5)
            self.answers += 1
            doc = json.loads(tool_messages(body)[0]["content"])["documents"][0]["document_id"]
            words = [f"{w} " for w in self.rng.sample(self.WORDS, k=8)]
            return Reply([Text(f"({doc}) ", *words)], prompt_tokens=60, completion_tokens=len(words) + 1,
                         delay_s=0.3 if self.answers == 1 else 0.0)


def test_sigkill_mid_answer_continues_on_another_worker_with_reset_and_reused_tool_results(
        stack: Stack, gw: Proc, api: httpx.Client, responder: FakeOpenAI) -> None:
    fake = responder
    keep_two_workers(stack)
    first = len(fake.served)
    fake.responder = Sampling()
    sid = new_session(api, model=MODEL)
    listener, mid = start(gw, api, sid, QUESTION)
    listener.wait_for(tokens_seen(3, after="tool_result"), 30)
    victim = worker_running(stack, sid, mid)
    victim.popen.send_signal(signal.SIGKILL)
    listener.join(40)
    assert not listener.is_alive() and listener.error is None

    events = stored(stack, sid, mid)
    assert listener.events == events  # the open client saw exactly the stored log
    assert events[-1].type == "done" and check_log(events)["terminal"] == 1
    assert int(record(stack, sid, mid)["attempt"]) == 2
    (reset,) = [e for e in events if e.type == "reset"]
    assert reset.data["reason"] == "retry" and reset.data["attempt"] == 2
    before, after = events[:events.index(reset)], events[events.index(reset) + 1:]
    # The new attempt's words differ from the dead one's, and the reset says so.
    # The recorded first step (its text and its call) is the agent's state and is kept; only the
    # step after it is asked again (issue 18), and the reset discards the dead attempt's words
    # of that step.
    cut = cursor.parse(reset.data["discard_after"])
    kept = [e.data["content"] for e in before if e.type == "token" and cursor.parse(e.id) <= cut]
    dropped = [e.data["content"] for e in before if e.type == "token" and cursor.parse(e.id) > cut]
    second_tokens = [e.data["content"] for e in after if e.type == "token"]
    assert kept and kept[0] in Sampling.OPENERS
    assert dropped and dropped != second_tokens[:len(dropped)]
    message = next(e for e in after if e.type == "message").data["content"]
    assert effective_tokens(events) == message == "".join(kept) + "".join(second_tokens)

    # The search ran once and its step was not asked again: the recorded call and result are
    # the agent's state, kept in the stream once, and the new attempt only asked for the answer.
    calls = [e.data for e in events if e.type == "tool_call"]
    results = [e.data for e in events if e.type == "tool_result"]
    runs = [e.data["execution_id"] for e in events if e.type == "retriever_execution"]
    assert len(calls) == len(results) == len(runs) == 1
    assert len([s for s in fake.served[first:] if not tool_messages(s.body)]) == 1
    # And the model was sent that same recorded result on both attempts.
    answers = [s for s in fake.served[first:] if tool_messages(s.body)]
    assert len(answers) == 2
    assert tool_messages(answers[0].body) == tool_messages(answers[1].body)
    assert json.loads(tool_messages(answers[1].body)[0]["content"]) == results[0]["output"]
    done = events[-1].data
    assert done["tool_calls_made"] == 1 and done["total_tokens"] == 60 + 9  # the new attempt's one call
    keep_two_workers(stack)
