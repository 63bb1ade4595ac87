"""Listing sessions reads a page of the creation-time index, not the namespace (issue 15.8: after
2,000 sessions, ``list?limit=1`` read every session and took 76-85 ms, growing linearly)."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.stack import Stack

SESSIONS = 120


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    s = Stack()
    s.start_redis()
    s.start_gateway()  # no worker: nothing else touches Redis while the commands are counted
    yield s
    s.stop()


def _session_reads(stack: Stack) -> int:
    async def stats(r):  # type: ignore[no-untyped-def]
        return await r.info("commandstats")

    return int(stack.redis_call(stats).get("cmdstat_hgetall", {}).get("calls", 0))


def test_listing_sessions_reads_only_the_page_not_every_session(stack: Stack) -> None:
    key, ns, _ = stack.new_tenant()
    gw = next(p for p in stack.procs if p.kind == "gateway")
    with httpx.Client(base_url=gw.url, headers={"Authorization": f"Bearer {key}", "X-Namespace": ns}) as api:
        made = [api.post("/v1/agents/sessions", json={"agent_config": {}}).json()["session_id"]
                for _ in range(SESSIONS)]
        before = _session_reads(stack)
        first = api.post("/v1/agents/sessions/list?limit=1", json={}).json()
        reads = _session_reads(stack) - before
        assert reads <= 2, f"{reads} session records read for a page of one"  # the page (+ the key's record)
        assert [s["session_id"] for s in first["results"]] == [made[-1]]  # newest first
        assert first["total"] == SESSIONS and first["pagination"]["has_next"] is True

        # paging by cursor walks every session exactly once, newest first; ascending the other way
        seen, cursor = [], None
        while True:
            page = api.post("/v1/agents/sessions/list", params={"limit": 50, **({"cursor": cursor} if cursor else {})},
                            json={}).json()
            seen += [s["session_id"] for s in page["results"]]
            cursor = page["pagination"]["next_cursor"]
            if cursor is None:
                break
        assert seen == made[::-1]
        asc = api.post("/v1/agents/sessions/list?limit=3",
                       json={"sort": {"field": "created_at", "direction": "asc"}}).json()
        assert [s["session_id"] for s in asc["results"]] == made[:3]


def test_expired_sessions_leave_the_index_without_leaving_holes_in_a_page(stack: Stack) -> None:
    from shared import keys

    key, ns, _ = stack.new_tenant()
    gw = next(p for p in stack.procs if p.kind == "gateway")
    with httpx.Client(base_url=gw.url, headers={"Authorization": f"Bearer {key}", "X-Namespace": ns}) as api:
        made = [api.post("/v1/agents/sessions", json={"agent_config": {}}).json()["session_id"] for _ in range(6)]
        for sid in made[3:5]:  # two of the newest expire (their records go)
            stack.redis_call(lambda r, sid=sid: r.delete(keys.session(sid)))
        page = api.post("/v1/agents/sessions/list?limit=3", json={}).json()
        assert [s["session_id"] for s in page["results"]] == [made[5], made[2], made[1]]
        assert page["total"] == 4


def test_cursors_and_numeric_query_params_take_ascii_digits_only(stack: Stack) -> None:
    """Issue 15.9: cursors and ``limit`` accepted ``١٢٣-٠`` and a trailing newline."""
    key, ns, _ = stack.new_tenant()
    gw = next(p for p in stack.procs if p.kind == "gateway")
    with httpx.Client(base_url=gw.url, headers={"Authorization": f"Bearer {key}", "X-Namespace": ns}) as api:
        sid = api.post("/v1/agents/sessions", json={"agent_config": {}}).json()["session_id"]
        for bad in ("\u0661\u0662", "1\n", " 1", "1_0", "+1", "9" * 5000):
            r = api.post("/v1/agents/sessions/list", params={"limit": bad}, json={})
            assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_query", (bad, r.text)
            r = api.get(f"/v1/agents/sessions/{sid}/history", params={"offset": bad})
            assert r.status_code == 422, (bad, r.text)
            r = api.post("/v1/agents/sessions/list", params={"cursor": bad}, json={})
            assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_cursor", (bad, r.text)
        for bad in ("\u0661\u0662\u0663-\u0660", "123-0\n"):
            r = api.get(f"/v1/agents/sessions/{sid}/events", params={"last_event_id": f"msg_x/{bad}"})
            assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_last_event_id", (bad, r.text)
        assert api.post("/v1/agents/sessions/list", params={"limit": "2", "cursor": "0"}, json={}).status_code == 200


def test_listing_by_status_pages_an_index_and_finds_sessions_terminated_before_it(stack: Stack) -> None:
    from shared import keys

    key, ns, ns_id = stack.new_tenant()
    gw = next(p for p in stack.procs if p.kind == "gateway")
    with httpx.Client(base_url=gw.url, headers={"Authorization": f"Bearer {key}", "X-Namespace": ns}) as api:
        made = [api.post("/v1/agents/sessions", json={"agent_config": {}}).json()["session_id"]
                for _ in range(SESSIONS)]
        ended = made[5::10]  # 12 of them
        for sid in ended:
            assert api.delete(f"/v1/agents/sessions/{sid}").status_code == 200
        # one terminated before the terminated index existed: not in it, and no backfill yet
        stack.redis_call(lambda r: r.zrem(keys.namespace_terminated_sessions(ns_id), ended[0]))
        stack.redis_call(lambda r: r.delete(keys.namespace_terminated_indexed(ns_id)))

        def listing(status: str, limit: int, **params: str) -> dict:
            return api.post("/v1/agents/sessions/list", params={"limit": limit, **params},
                            json={"status": status}).json()

        first = listing("terminated", 5)
        assert [s["session_id"] for s in first["results"]] == ended[::-1][:5] and first["total"] == len(ended)
        assert {s["status"] for s in first["results"]} == {"terminated"}
        before = _session_reads(stack)
        one = listing("terminated", 1)  # the backfill ran once; now only the page is read
        assert _session_reads(stack) - before <= 2 and one["results"][0]["session_id"] == ended[-1]

        active = [sid for sid in made[::-1] if sid not in ended]
        seen, cursor = [], None
        while True:
            page = listing("active", 25, **({"cursor": cursor} if cursor else {}))
            assert page["total"] == len(active)
            seen += [s["session_id"] for s in page["results"]]
            cursor = page["pagination"]["next_cursor"]
            if cursor is None:
                break
        assert seen == active
        filtered = api.post("/v1/agents/sessions/list?limit=3", json={"filters": {"status": "active"}}).json()
        assert [s["session_id"] for s in filtered["results"]] == active[:3]
        assert listing("archived", 5)["results"] == []
