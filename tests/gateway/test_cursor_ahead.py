"""Issue 18.4 through real processes: a POST whose Last-Event-ID is ahead of a stream that has
no entry yet (no worker ran) gets ``cursor_ahead`` and ends with the message, never hangs."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.faults.harness import Listener
from tests.stack import Proc, Stack


@pytest.fixture(scope="module")
def no_worker_yet() -> Iterator[tuple[Stack, Proc]]:
    s = Stack()
    try:
        s.start_redis()
        yield s, s.start_gateway()
    finally:
        s.stop()


def test_regression_18_4_a_cursor_ahead_of_an_empty_stream_gets_cursor_ahead_and_ends(no_worker_yet):
    stack, gw = no_worker_yet
    key, ns, _ = stack.new_tenant()
    headers = {"Authorization": f"Bearer {key}", "X-Namespace": ns}
    sid = httpx.post(gw.url + "/v1/agents/sessions", json={"agent_config": {}}, headers=headers).json()["session_id"]
    listener = Listener("POST", gw.url + f"/v1/agents/sessions/{sid}/messages",
                        {**headers, "Last-Event-ID": "99999999999999-0"}, {"content": "hello"})
    listener.start()
    listener.wait_for(lambda evs: bool(evs), 15)  # the reset comes before any worker ran
    assert listener.events[0].type == "reset" and listener.events[0].data["reason"] == "cursor_ahead"
    assert listener.events[0].data["replay_from"] == "0-0"
    stack.start_worker()
    listener.join(30)
    assert not listener.is_alive() and listener.error is None  # the response ended
    types = [e.type for e in listener.events]
    assert types[1:3] == ["intent", "thinking"] and types[-1] == "done", types
