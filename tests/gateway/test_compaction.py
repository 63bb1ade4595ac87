"""Compaction of finished messages through a real gateway: a late reader gets exactly what is
kept, and an explicit ``reset {reason: "compacted"}`` wherever tokens were folded."""

from __future__ import annotations

import httpx

from shared.settings import Settings
from shared.stores import compaction
from shared.stores.messages import MessageStore
from tests import sse
from tests.gateway.test_messages import new_session, send
from tests.stack import Stack


def answered(api: httpx.Client, content: str = "hello there") -> tuple[str, str, list[sse.Ev]]:
    sid = new_session(api)
    r = send(api, sid, content)
    assert r.status_code == 200, r.text
    events = sse.parse(r.text)
    sse.check_stream(events)
    assert sum(e.type == "token" for e in events) >= 2
    return sid, r.headers["x-message-id"], events


def compact(stack: Stack, sid: str, mid: str) -> str:
    return stack.redis_call(lambda r: compaction.compact(r, sid, mid))


def resume(api: httpx.Client, sid: str, mid: str, cursor: str | None) -> list[sse.Ev]:
    headers = {"Last-Event-ID": cursor} if cursor else {}
    r = api.get(f"/v1/agents/sessions/{sid}/messages/{mid}/events", headers=headers)
    assert r.status_code == 200, r.text
    return sse.parse(r.text)


def kept_after(events: list[sse.Ev], cursor: str) -> list[sse.Ev]:
    ids = [e.id for e in events]
    return [e for e in events[ids.index(cursor) + 1:] if e.type != "token"]


def test_resume_after_the_folded_tokens_is_exact(api, stack):
    sid, mid, events = answered(api)
    assert compact(stack, sid, mid) == "ok"
    message = next(e for e in events if e.type == "message")
    assert resume(api, sid, mid, message.id) == events[events.index(message) + 1:]


def test_resume_inside_the_folded_tokens_resets_then_delivers_the_kept_events(api, stack):
    sid, mid, events = answered(api)
    tokens = [e for e in events if e.type == "token"]
    assert compact(stack, sid, mid) == "ok"
    cursor = tokens[1].id
    got = resume(api, sid, mid, cursor)
    assert got[0].type == "reset" and got[0].id == cursor
    assert got[0].data["reason"] == "compacted" and got[0].data["replay_from"] == cursor
    assert got[1:] == kept_after(events, cursor)
    # The final message holds every token's text: nothing of the answer is lost.
    assert got[1].type == "message"
    assert got[1].data["content"] == "".join(t.data["content"] for t in tokens)


def test_resume_before_the_folded_tokens_resets_then_delivers_the_kept_events(api, stack):
    sid, mid, events = answered(api)
    assert compact(stack, sid, mid) == "ok"
    cursor = events[0].id  # the intent, before any token
    got = resume(api, sid, mid, cursor)
    assert [got[0].type, got[0].data["reason"]] == ["reset", "compacted"]
    assert got[1:] == kept_after(events, cursor)


def test_a_new_reader_of_a_compacted_message_is_told_first(api, stack):
    sid, mid, events = answered(api)
    assert compact(stack, sid, mid) == "ok"
    got = resume(api, sid, mid, None)
    assert [got[0].type, got[0].data["reason"], got[0].data["replay_from"]] == ["reset", "compacted", "0-0"]
    assert got[1:] == [e for e in events if e.type != "token"]


def test_resume_at_the_terminal_event_of_a_compacted_message_ends_at_once(api, stack):
    sid, mid, events = answered(api)
    assert compact(stack, sid, mid) == "ok"
    r = api.get(f"/v1/agents/sessions/{sid}/messages/{mid}/events", headers={"Last-Event-ID": events[-1].id})
    assert r.status_code == 204


def test_compaction_racing_a_reader_part_way_through_is_announced(api, stack):
    """A reader that read part of the stream before it was compacted, and reads on after."""
    sid, mid, events = answered(api)
    store_reads = []

    async def read_then_compact_then_read(r):
        store = MessageStore(r, Settings())
        first = await store.read(sid, mid, "0-0", 3)  # intent, thinking, thinking/tokens...
        store_reads.append(first)
        assert await compaction.compact(r, sid, mid) == "ok"
        return await store.read(sid, mid, first[-1][0].decode(), 1000)

    rest = stack.redis_call(read_then_compact_then_read)
    last_read = store_reads[0][-1][0].decode()
    if any(e.type == "token" and e.id > last_read for e in events):
        assert rest[0][1] == b"reset" and b'"compacted"' in rest[0][2] and rest[0][0].decode() == last_read
        rest = rest[1:]
    assert [(i.decode(), t.decode()) for i, t, _ in rest] == [(e.id, e.type) for e in kept_after(events, last_read)]


def test_compaction_is_idempotent_and_leaves_running_messages_alone(api, stack):
    sid, mid, _ = answered(api)
    assert compact(stack, sid, mid) == "ok"
    assert compact(stack, sid, mid) == "compacted"
    assert stack.redis_call(lambda r: compaction.compact(r, sid, "msg_doesnotexist")) == "missing"


def test_compaction_shrinks_the_record_and_keeps_the_outcome(api, stack):
    sid, mid, events = answered(api)

    async def record(r):
        return await MessageStore(r, Settings()).record(sid, mid)

    before = stack.redis_call(record)
    assert compact(stack, sid, mid) == "ok"
    after = stack.redis_call(record)
    assert after.final_payload is None and after.terminal_payload is None  # stored once, in the events
    assert (after.status, after.terminal_type, after.terminal_id, after.final_id) == \
           (before.status, before.terminal_type, before.terminal_id, before.final_id)
    assert after.compacted and after.folded_count == sum(e.type == "token" for e in events)
    # Feedback reads the final answer from the packed events.
    r = api.post(f"/v1/agents/sessions/{sid}/feedback", json={"message_id": mid, "rating": "positive"})
    assert r.status_code == 200, r.text


def test_history_keeps_whole_tool_outputs_after_compaction(api, stack, tenant):
    from tests.gateway.seed import seed_demo_for

    seed_demo_for(stack, tenant)
    sid, mid, _ = answered(api, "find documents about redis streams")
    before = api.get(f"/v1/agents/sessions/{sid}/history").json()["messages"]
    tool_rows = [m for m in before if m["role"] == "tool"]
    assert tool_rows and max(len(m["tool_outputs"]) for m in tool_rows) > Settings().log_tool_output_chars
    assert compact(stack, sid, mid) == "ok"
    assert api.get(f"/v1/agents/sessions/{sid}/history").json()["messages"] == before
