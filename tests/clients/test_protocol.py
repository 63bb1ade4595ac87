"""The Python client's pure parts: the SSE parser and the reset reconciler (no sockets)."""

from __future__ import annotations

import json

import pytest
from agentstream_client._core import Request, StreamState
from agentstream_client.errors import ApiError, ConnectionLost
from agentstream_client.reconcile import Reconciler
from agentstream_client.sse import Parser


def test_retry_inside_the_first_block_is_applied_and_the_event_dispatched():
    p = Parser()
    frames = p.feed(b"retry: 20\n: keep-alive\nid: 1-0\nevent: token\ndata: {}\n\n")
    assert p.retry_ms == 20
    assert [(f.id, f.event, f.data) for f in frames] == [("1-0", "token", "{}")]


def test_comments_never_end_a_block_and_field_less_blocks_dispatch_nothing():
    p = Parser()
    assert p.feed(b"retry: 5\n\n: hb\n\n") == []
    assert p.feed(b"id: 2-0\nevent: done\ndata: {\"a\":\ndata: 1}\n\n")[0].data == '{"a":\n1}'


def test_lines_split_across_chunks_and_crlf_cr_line_ends():
    p = Parser()
    out = []
    for chunk in (b"id: 3-0\r", b"\nevent: tok", b"en\rdata: {}\r\n", b"\r\n"):
        out += p.feed(chunk)
    assert [(f.id, f.event) for f in out] == [("3-0", "token")]


def feed(r: Reconciler, eid: str, t: str, data: object = None, from_start: bool = False):
    out, restart = r.feed(eid, t, json.dumps(data or {}).encode(), from_start)
    return [(d.id, d.type, d.retracted) for d in out], restart


def test_reset_retry_retracts_what_followed_discard_after():
    r = Reconciler()
    for i in range(1, 5):
        feed(r, f"{i}-0", "token")
    out, _ = feed(r, "5-0", "reset", {"reason": "retry", "status": "running", "replay_from": "2-0",
                                      "attempt": 2, "discard_after": "2-0"})
    assert out == [("5-0", "reset", ("3-0", "4-0"))]
    assert feed(r, "6-0", "token")[0] == [("6-0", "token", ())]
    assert r.held == [("1-0", "token"), ("2-0", "token"), ("6-0", "token")]


def test_cursor_expired_retracts_everything_held_before_the_retained_entries():
    r = Reconciler()
    feed(r, "1-0", "intent")
    feed(r, "2-0", "token")
    assert feed(r, "2-0", "reset", {"reason": "cursor_expired", "status": "running", "replay_from": "2-0"}) == ([], False)
    assert feed(r, "9-0", "token")[0] == [("2-0", "reset", ("1-0", "2-0")), ("9-0", "token", ())]
    assert r.held == [("9-0", "token")]


def test_cursor_ahead_walks_the_replay_and_retracts_only_the_lost_tail():
    r = Reconciler()
    for i in range(1, 5):
        feed(r, f"{i}-0", "token")
    feed(r, "0-0", "reset", {"reason": "cursor_ahead", "status": "running", "replay_from": "0-0"})
    assert feed(r, "1-0", "token")[0] == []
    assert feed(r, "2-0", "token")[0] == []
    assert feed(r, "7-0", "done")[0] == [("0-0", "reset", ("3-0", "4-0")), ("7-0", "done", ())]
    assert r.ended == "done"


def test_a_replay_that_matches_to_the_end_retracts_nothing():
    r = Reconciler()
    feed(r, "1-0", "token")
    feed(r, "2-0", "done")
    feed(r, "0-0", "reset", {"reason": "cursor_ahead", "status": "completed", "replay_from": "0-0"})
    assert feed(r, "1-0", "token")[0] == []
    assert feed(r, "2-0", "done")[0] == [("0-0", "reset", ())]


def test_stream_expired_on_a_resumed_connection_asks_for_a_restart_from_the_start():
    r = Reconciler()
    feed(r, "1-0", "token")
    body = {"reason": "stream_expired", "status": "completed", "replay_from": "0-0"}
    assert feed(r, "0-0", "reset", body)[1] is True
    assert feed(r, "0-0", "reset", body, from_start=True)[1] is False


def test_a_repeated_event_is_not_delivered_twice():
    r = Reconciler()
    feed(r, "1-0", "token")
    assert feed(r, "1-0", "token")[0] == []


def state() -> StreamState:
    first = Request("GET", "/v1/agents/sessions/ses_a/messages/msg_a/events", None, {})
    return StreamState("ses_a", first, "msg_a", None, max_retries=3, on_reset=None, on_connection=None)


def test_the_backoff_honours_retry_and_retry_after_and_gives_up_after_max_retries():
    st = state()
    st.opened(200, {})
    st.chunk(b"retry: 40\nid: 1-0\nevent: token\ndata: {\"content\":\"a\"}\n\n")
    assert st.retry_ms == 40 and st.last_event_id == "1-0"
    assert st.lost(None) == 0.04  # the server's retry: after a cut
    body = b'{"status":503,"error":{"message":"busy","type":"ServiceUnavailableError","code":"draining"}}'
    assert st.failed_status(503, body, {"retry-after": "3"}) == 3.0  # Retry-After wins when longer
    assert st.request().headers["Last-Event-ID"] == "1-0"
    st.lost(None)
    with pytest.raises(ConnectionLost):
        st.lost(None)  # the fourth failed attempt in a row


def test_a_non_retryable_answer_raises_the_api_error():
    body = b'{"status":404,"error":{"message":"Message not found","type":"NotFoundError","code":"message_not_found","details":{"message_id":"msg_a"}}}'
    with pytest.raises(ApiError) as info:
        state().failed_status(404, body, {})
    err = info.value
    assert (err.status, err.code, err.type, err.message, err.details) == (
        404, "message_not_found", "NotFoundError", "Message not found", {"message_id": "msg_a"})
