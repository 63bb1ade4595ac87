"""send_message, get_history and submit_feedback through the SDK."""

from __future__ import annotations

import json
import re

import mixpeek
import pytest
from mixpeek import (
    GetHistoryResponse,
    SendMessageRequest,
    SubmitFeedbackRequest,
    SubmitFeedbackResponse,
)
from mixpeek.exceptions import (
    NotFoundException,
)

from cli.demo_data import DEMO_COLLECTION
from tests.sdk.helpers import (
    SSE_TIMEOUT_S,
    check_stream,
    content_type,
    error_of,
    header,
    new_session,
    parse_sse,
    stream,
)

pytestmark = pytest.mark.integration


# 5. send_message


def test_send_message_streams_sse_that_the_sdk_returns_as_one_string(sdk: mixpeek.AgentSessionsApi,
                                                                    seeded: tuple[str, str, str]) -> None:
    s = new_session(sdk)
    resp, events = stream(sdk, s.session_id, "list collections")
    by_type = check_stream(events)
    assert header(resp, "X-Message-Id") == by_type["done"].data["message_id"]
    assert [e.data["tool_name"] for e in events if e.event == "tool_call"] == ["list_collections"]
    result = by_type["tool_result"].data
    assert result["success"] is True and result["tool_call_id"] == by_type["tool_call"].data["tool_call_id"]
    assert DEMO_COLLECTION in by_type["message"].data["content"]
    assert by_type["intent"].data["intent"] == "data_browse"
    assert [e.data for e in events if e.event == "session_name"] == [{"session_name": "List collections"}]
    assert by_type["done"].data["tool_calls_made"] == 1

    again = sdk.send_message_agents_sessions(s.session_id, SendMessageRequest(content="hello"),
                                             _request_timeout=SSE_TIMEOUT_S)
    assert isinstance(again, str)  # the plain typed method hands over the same text
    later = parse_sse(again)
    check_stream(later)
    assert "session_name" not in {e.event for e in later}  # the first message only
    assert sdk.get_session_agents(s.session_id).session_name == "List collections"


def test_send_message_without_streaming_returns_one_json_object(sdk: mixpeek.AgentSessionsApi,
                                                               seeded: tuple[str, str, str]) -> None:
    s = new_session(sdk)
    resp = sdk.send_message_agents_sessions_with_http_info(
        s.session_id, SendMessageRequest(content="find documents about redis streams consumer groups",
                                         stream=False), _request_timeout=SSE_TIMEOUT_S)
    assert resp.status_code == 200 and content_type(resp) == "application/json"
    body = resp.data
    assert isinstance(body, dict)
    assert isinstance(body["message_id"], str) and body["message_id"].startswith("msg_")
    assert header(resp, "X-Message-Id") == body["message_id"]
    assert isinstance(body["content"], str) and body["content"]
    assert body["intent"]["intent"] == "retriever_search"
    assert body["tool_calls_made"] == 2 and body["data_accessed_via_retriever"] is True
    assert isinstance(body["latency_ms"], int | float) and body["latency_ms"] >= 0
    summary = body["retriever_summary"]
    assert summary["used_retrievers"] is True and summary["retriever_count"] == 1
    assert summary["total_documents"] == sum(e["documents_returned"] for e in summary["executions"]) > 0
    cited = re.findall(r"\[(doc_[A-Za-z0-9_]+)\]", body["content"])
    assert cited, body["content"]
    assert body["session_name"] == "Find documents about redis streams consumer"


# 6. get_history


def test_history_pages_oldest_first_with_string_tool_rows(sdk: mixpeek.AgentSessionsApi,
                                                         seeded: tuple[str, str, str]) -> None:
    s = new_session(sdk)
    _, events = stream(sdk, s.session_id, "list collections")
    msg_id = events[-1].data["message_id"]

    resp = sdk.get_history_agents_sessions_with_http_info(s.session_id)
    assert resp.status_code == 200 and content_type(resp) == "application/json"
    h = resp.data
    assert isinstance(h, GetHistoryResponse) and h.session_id == s.session_id
    assert [m.role for m in h.messages] == ["user", "tool", "assistant"]
    assert (h.total_messages, h.returned_messages, h.has_more) == (3, 3, False)
    assert all(m.message_id == msg_id for m in h.messages)
    assert [m.timestamp for m in h.messages] == sorted(m.timestamp for m in h.messages)
    user, tool, assistant = h.messages
    assert user.content == "list collections" and user.content_type == "text"
    assert tool.tool_name == "list_collections" and tool.tool_status == "success" and tool.content
    assert isinstance(tool.tool_inputs, str) and json.loads(tool.tool_inputs) == {}
    assert isinstance(tool.tool_outputs, str)
    outputs = json.loads(tool.tool_outputs)
    assert [c["collection_name"] for c in outputs["results"]] == [DEMO_COLLECTION]
    assert assistant.content == check_stream(events)["message"].data["content"]

    stream(sdk, s.session_id, "hello")
    page = sdk.get_history_agents_sessions(s.session_id, limit=2, offset=0)
    assert [m.role for m in page.messages] == ["user", "tool"]
    assert (page.total_messages, page.returned_messages, page.has_more) == (5, 2, True)
    tail = sdk.get_history_agents_sessions(s.session_id, limit=2, offset=3)
    assert [(m.role, m.content) for m in tail.messages][0] == ("user", "hello")
    assert (tail.returned_messages, tail.has_more) == (2, False)
    assert sdk.get_history_agents_sessions(s.session_id, limit=200, offset=5).messages == []
    stats = sdk.get_session_agents(s.session_id).stats
    assert (stats.total_messages, stats.total_tool_calls) == (4, 1)


# 7. submit_feedback


def test_feedback_stores_positive_and_not_negative_and_refuses_unknown_messages(
        sdk: mixpeek.AgentSessionsApi) -> None:
    s = new_session(sdk)
    first = stream(sdk, s.session_id, "hello")[1][-1].data["message_id"]
    second = stream(sdk, s.session_id, "hello there")[1][-1].data["message_id"]

    resp = sdk.submit_feedback_agents_sessions_with_http_info(
        s.session_id, SubmitFeedbackRequest(message_id=first, rating="positive", feedback_text="spot on"))
    assert resp.status_code == 200 and content_type(resp) == "application/json"
    assert isinstance(resp.data, SubmitFeedbackResponse)
    assert (resp.data.session_id, resp.data.message_id, resp.data.rating, resp.data.stored) == \
        (s.session_id, first, "positive", True)
    bad = sdk.submit_feedback_agents_sessions(s.session_id, SubmitFeedbackRequest(message_id=second,
                                                                                  rating="negative"))
    assert (bad.rating, bad.stored) == ("negative", False)

    with pytest.raises(NotFoundException) as exc:
        sdk.submit_feedback_agents_sessions(s.session_id, SubmitFeedbackRequest(message_id="msg_nope",
                                                                                rating="positive"))
    assert error_of(exc.value, 404).error.code == "message_not_found"
    other = new_session(sdk)
    with pytest.raises(NotFoundException) as exc:  # a message of another session
        sdk.submit_feedback_agents_sessions(other.session_id, SubmitFeedbackRequest(message_id=first,
                                                                                    rating="positive"))
    error_of(exc.value, 404)


def test_feedback_is_never_stored_when_memory_is_disabled(sdk: mixpeek.AgentSessionsApi) -> None:
    s = new_session(sdk, enable_memory=False)
    msg = stream(sdk, s.session_id, "hello")[1][-1].data["message_id"]
    got = sdk.submit_feedback_agents_sessions(s.session_id, SubmitFeedbackRequest(message_id=msg,
                                                                                  rating="positive"))
    assert got.stored is False
