"""respond_to_confirmation through the SDK: unknown ids, approve, deny, a paused non-streamed message."""

from __future__ import annotations

import asyncio

import mixpeek
import pytest
from mixpeek import (
    ConfirmationRequest,
    SendMessageRequest,
)
from mixpeek.exceptions import (
    BadRequestException,
    NotFoundException,
)

from cli.demo_data import DEMO_COLLECTION
from dataplane.service import DataPlane
from shared import connect
from tests.sdk.helpers import (
    HAS_CONFIRMATIONS,
    SSE_TIMEOUT_S,
    TERMINAL,
    Sse,
    check_stream,
    content_type,
    error_of,
    header,
    id_tuple,
    new_session,
    parse_sse,
    stream,
)
from tests.stack import Stack

pytestmark = pytest.mark.integration


# 8. respond_to_confirmation


def test_confirming_an_unknown_confirmation_is_404_with_an_error_body(sdk: mixpeek.AgentSessionsApi) -> None:
    s = new_session(sdk)
    with pytest.raises(NotFoundException) as exc:
        sdk.respond_to_confirmation_agents_sessions(s.session_id, "conf_doesnotexist",
                                                    ConfirmationRequest(approved=True))
    assert error_of(exc.value, 404).error.type == "NotFoundError"


def _ask_to_delete(sdk: mixpeek.AgentSessionsApi) -> tuple[str, list[Sse], mixpeek.ApiResponse]:
    s = new_session(sdk)
    resp, events = stream(sdk, s.session_id, f"delete the collection {DEMO_COLLECTION}")
    ids = [id_tuple(e.id) for e in events]
    assert all(a < b for a, b in zip(ids, ids[1:], strict=False))
    assert events[-1].event == "confirmation_required", [e.event for e in events]
    assert not TERMINAL & {e.event for e in events}  # paused, not over
    confirmation = events[-1].data
    assert confirmation["confirmation_id"].startswith("conf_")
    assert confirmation["tool_name"] == "delete_collection"
    assert confirmation["inputs"] == {"collection_identifier": DEMO_COLLECTION}
    return s.session_id, events, resp


def _collection_names(stack: Stack, ns_id: str) -> list[str]:
    async def go() -> list[str]:
        redis = connect.client(stack.redis_url)
        try:
            return [c.collection_name for c in await DataPlane(redis).list_collections(ns_id)]
        finally:
            await redis.aclose()

    return asyncio.run(go())


@pytest.mark.skipif(not HAS_CONFIRMATIONS, reason="no confirmation flow (gateway/routes/confirmations.py)")
def test_approving_a_confirmation_runs_the_write_tool(sdk: mixpeek.AgentSessionsApi, stack: Stack,
                                                      seeded: tuple[str, str, str]) -> None:
    ses_id, before, paused = _ask_to_delete(sdk)
    conf_id = before[-1].data["confirmation_id"]
    resp = sdk.respond_to_confirmation_agents_sessions_with_http_info(
        ses_id, conf_id, ConfirmationRequest(approved=True), _request_timeout=SSE_TIMEOUT_S)
    assert resp.status_code == 200 and content_type(resp) == "text/event-stream"
    assert isinstance(resp.data, str)
    assert header(resp, "X-Message-Id") == header(paused, "X-Message-Id")  # the same message continues
    after = parse_sse(resp.data)
    check_stream(before + after)
    results = [e.data for e in after if e.event == "tool_result"]
    assert [(r["tool_name"], r["success"]) for r in results] == [("delete_collection", True)]
    assert DEMO_COLLECTION not in _collection_names(stack, seeded[2])
    with pytest.raises(BadRequestException) as exc:  # already processed
        sdk.respond_to_confirmation_agents_sessions(ses_id, conf_id, ConfirmationRequest(approved=True))
    assert error_of(exc.value, 400).error.code == "confirmation_already_answered"
    tool_rows = [m for m in sdk.get_history_agents_sessions(ses_id).messages if m.role == "tool"]
    assert [(m.tool_name, m.tool_status) for m in tool_rows] == [("delete_collection", "success")]


@pytest.mark.skipif(not HAS_CONFIRMATIONS, reason="no confirmation flow (gateway/routes/confirmations.py)")
def test_denying_a_confirmation_does_not_run_the_tool(sdk: mixpeek.AgentSessionsApi, stack: Stack,
                                                      seeded: tuple[str, str, str]) -> None:
    ses_id, before, _ = _ask_to_delete(sdk)
    conf_id = before[-1].data["confirmation_id"]
    other = new_session(sdk)
    with pytest.raises(NotFoundException) as exc:  # the confirmation belongs to another session
        sdk.respond_to_confirmation_agents_sessions(other.session_id, conf_id, ConfirmationRequest(approved=True))
    assert error_of(exc.value, 404).error.code == "confirmation_not_found"
    text = sdk.respond_to_confirmation_agents_sessions(ses_id, conf_id, ConfirmationRequest(approved=False),
                                                       _request_timeout=SSE_TIMEOUT_S)
    assert isinstance(text, str)
    after = parse_sse(text)
    by_type = check_stream(before + after)
    assert by_type["tool_result"].data["success"] is False
    assert "denied" in by_type["message"].data["content"]
    assert DEMO_COLLECTION in _collection_names(stack, seeded[2])


@pytest.mark.skipif(not HAS_CONFIRMATIONS, reason="no confirmation flow (gateway/routes/confirmations.py)")
def test_a_non_streamed_message_reports_its_pause_and_the_answer_streams(sdk: mixpeek.AgentSessionsApi,
                                                                         stack: Stack,
                                                                         seeded: tuple[str, str, str]) -> None:
    s = new_session(sdk)
    paused = sdk.send_message_agents_sessions(
        s.session_id, SendMessageRequest(content=f"delete the collection {DEMO_COLLECTION}", stream=False),
        _request_timeout=SSE_TIMEOUT_S)
    assert isinstance(paused, dict) and paused["status"] == "awaiting_confirmation"
    conf_id = paused["confirmation"]["confirmation_id"]
    text = sdk.respond_to_confirmation_agents_sessions(s.session_id, conf_id, ConfirmationRequest(approved=True),
                                                       _request_timeout=SSE_TIMEOUT_S)
    events = parse_sse(text)
    assert events[-1].event == "done" and events[-1].data["message_id"] == paused["message_id"]
    assert DEMO_COLLECTION not in _collection_names(stack, seeded[2])
