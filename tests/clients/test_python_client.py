"""The Python client against a real stack, without faults: the API's operations, typed events,
``stream: false``, idempotency and errors in the API's shape."""

from __future__ import annotations

import asyncio

import pytest
from agentstream_client import AgentStream, ApiError, AsyncAgentStream
from agentstream_client.events import EVENT_TYPES, Done, Error, Intent, Message, Token

from tests.clients.harness import Faulty


@pytest.fixture
def client(faulty: Faulty, tenant):
    key, ns, _ = tenant
    with AgentStream(faulty.direct, key, ns) as c:
        yield c


def test_send_yields_typed_events_as_they_arrive_and_the_result(client):
    sid = client.create_session()["session_id"]
    stream = client.send(sid, "hello there, what can you do?")
    events = list(stream)
    assert stream.message_id and stream.message_id.startswith("msg_")
    assert isinstance(events[0].event, Intent)
    for e in events:  # each event is the union's struct for its wire type
        assert type(e.event) is EVENT_TYPES[e.type] and e.retracted == ()
    assert stream.result is events[-1].event
    if isinstance(stream.result, Done):
        final = next(e.event for e in events if isinstance(e.event, Message))
        assert stream.result.message_id == final.message_id == stream.message_id
        assert any(isinstance(e.event, Token) for e in events)
    else:  # a loaded machine can starve a short lease; the error is still typed and final
        assert isinstance(stream.result, Error), [(e.type, e.raw) for e in events]
    assert stream.last_event_id == events[-1].id


def test_the_same_idempotency_key_returns_the_same_message(client):
    sid = client.create_session()["session_id"]
    a = client.send(sid, "hello there", idempotency_key="k-1")
    a.wait()
    b = client.send(sid, "hello there", idempotency_key="k-1")
    b.wait()
    assert a.message_id == b.message_id
    assert len([m for m in client.get_history(sid)["messages"] if m["role"] == "user"]) == 1


def test_stream_false_and_follow_from_a_cursor(client):
    sid = client.create_session()["session_id"]
    answer = client.send_and_wait(sid, "hello there")
    assert answer["status"] == "completed"
    events = list(client.follow(sid, answer["message_id"]))
    tail = list(client.follow(sid, answer["message_id"], last_event_id=events[2].id))
    assert [e.id for e in tail] == [e.id for e in events[3:]]
    done = client.follow(sid, answer["message_id"], last_event_id=events[-1].id)
    assert list(done) == [] and done.result is None  # 204: nothing left


def test_the_session_log_and_cancel(client):
    sid = client.create_session()["session_id"]
    stream = client.send(sid, "hello there, what can you do?")
    events = list(stream)
    log = list(client.session_events(sid))
    assert [e.id for e in log] == [f"{stream.message_id}/{e.id}" for e in events]
    assert [type(e.event) for e in log] == [type(e.event) for e in events]
    assert client.cancel(sid, stream.message_id or "")["cancelled"] is False  # it had ended


def test_session_operations(client):
    s = client.create_session({"agent_config": {}})
    sid = s["session_id"]
    assert client.get_session(sid)["session_id"] == sid
    assert any(x["session_id"] == sid for x in client.list_sessions({})["results"])
    client.update_session(sid, {"user_memory": {"team": "b"}})
    assert client.get_session(sid)["user_memory"] == {"team": "b"}
    assert client.list_tools()["results"]
    client.delete_session(sid)
    with pytest.raises(ApiError) as info:
        client.send(sid, "hello").wait()
    assert info.value.status == 400 and info.value.code == "session_terminated"


def test_errors_carry_the_api_shape(client):
    with pytest.raises(ApiError) as info:
        client.get_session("ses_doesnotexist00")
    err = info.value
    assert err.status == 404 and err.type == "NotFoundError" and err.code and err.message
    with pytest.raises(ApiError) as info:
        client.follow("ses_doesnotexist00", "msg_x").wait()
    assert info.value.status == 404


def test_async_client(faulty: Faulty, tenant):
    key, ns, _ = tenant

    async def main() -> None:
        async with AsyncAgentStream(faulty.direct, key, ns) as c:
            sid = (await c.create_session())["session_id"]
            stream = c.send(sid, "hello there")
            types = [e.type async for e in stream]
            assert types[-1] == "done" and isinstance(stream.result, Done)
            assert (await c.send_and_wait(sid, "hello again"))["status"] == "completed"
            assert [e.type async for e in c.session_events(sid)][-1] == "done"

    asyncio.run(main())
