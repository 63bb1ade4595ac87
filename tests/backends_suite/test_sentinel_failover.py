"""A Sentinel failover under load (run once): several answers stream while the primary is
SIGKILLed; the sentinels promote the replica, every answer completes, and every client, by
resuming with Last-Event-ID, ends with its stored log: nothing repeated, and nothing lost
without a ``reset`` that says so."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest

from tests import sse
from tests.backends_suite.servers import Sentinels, wait_for
from tests.faults.harness import Listener, check_log, stored
from tests.stack import Stack

pytestmark = pytest.mark.faults
ANSWERS = 6


@pytest.fixture(scope="module")
def paced(redis_sentinel: Sentinels) -> Iterator[Stack]:
    s = Stack(topology=redis_sentinel.env, env={"AGENTSTREAM_BUILTIN_TOKEN_DELAY_MS": "60",
                                                "AGENTSTREAM_LEASE_S": "2", "AGENTSTREAM_REAPER_INTERVAL_S": "0.5"})
    s.up(workers=2)
    yield s
    s.stop()


def finish(gw_url: str, headers: dict[str, str], sid: str, mid: str, seen: list[sse.Ev]) -> list[sse.Ev]:
    """Resume with Last-Event-ID until the terminal event, as a client does (a 503 while the
    gateway's live path reconnects is retried, as ``Retry-After`` asks)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if seen and seen[-1].type in ("done", "error"):
            return seen
        last = next((e.id for e in reversed(seen) if e.id and e.type != "reset"), None)
        try:
            r = httpx.get(gw_url + f"/v1/agents/sessions/{sid}/messages/{mid}/events",
                          headers={**headers, **({"Last-Event-ID": last} if last else {})}, timeout=60)
        except httpx.HTTPError:
            time.sleep(0.25)
            continue
        if r.status_code == 204:
            return seen
        if r.status_code != 200:
            time.sleep(0.25)
            continue
        seen = seen + sse.parse(r.text)
    return seen


def test_sentinel_failover_under_load_counts_are_zero_or_explicit(paced: Stack, redis_sentinel: Sentinels):
    key, ns, _ = paced.new_tenant()
    headers = {"Authorization": f"Bearer {key}", "X-Namespace": ns}
    gw = next(p for p in paced.procs if p.kind == "gateway")
    runs = []
    for i in range(ANSWERS):
        sid = httpx.post(gw.url + "/v1/agents/sessions", json={"agent_config": {}}, headers=headers).json()["session_id"]
        listener = Listener("POST", gw.url + f"/v1/agents/sessions/{sid}/messages", headers,
                            {"content": f"tell me a long story about redis streams, part {i}"})
        listener.start()
        runs.append((sid, listener))
    for _, listener in runs:
        listener.wait_for(lambda evs: sum(1 for e in evs if e.type == "token") >= 3, 30)
    victim = redis_sentinel.current_primary()
    killed_at = time.monotonic()
    redis_sentinel.kill(victim)
    wait_for(lambda: redis_sentinel.current_primary() != victim, "the sentinels promote the replica", 30)
    promoted = time.monotonic() - killed_at
    totals = {"answers": 0, "repeated": 0, "lost_silently": 0, "resets": 0, "errors": 0, "stored": 0}
    for sid, listener in runs:
        listener.join(90)
        mid = listener.response_headers["x-message-id"]
        seen = finish(gw.url, headers, sid, mid, list(listener.events))
        events = stored(paced, sid, mid)
        counts = check_log(events)
        kept = [e for e in seen if e.type != "reset"]
        resets = [e for e in seen if e.type == "reset"]
        ids = [e.id for e in kept]
        stored_ids = {e.id for e in events}
        totals["answers"] += 1
        totals["stored"] += len(events)
        totals["repeated"] += len(ids) - len(set(ids))
        totals["resets"] += len(resets)
        totals["errors"] += sum(1 for e in events if e.type == "error")
        if any(e.id not in stored_ids for e in kept) and not resets:
            totals["lost_silently"] += 1
        assert counts["terminal"] == 1, (sid, [e.type for e in events][-5:])
        assert seen[-1].type in ("done", "error")
        assert [e for e in kept if e.id in stored_ids][-1] == events[-1]
    print(f"\nsentinel failover: primary {victim} SIGKILLed, replica promoted in {promoted:.1f}s; {totals}")
    assert totals["repeated"] == 0
    assert totals["lost_silently"] == 0
