"""Per-call extras the SDK offers (``_headers``, ``_without_preload_content``) and the edges of a
request: namespaces, idempotency keys, streaming reads, unicode, cursors, sizes."""

from __future__ import annotations

import mixpeek
import pytest
from mixpeek import (
    ApiException,
    ErrorResponse,
    ListSessionsRequest,
    PatchSessionRequest,
    SendMessageRequest,
)
from mixpeek.exceptions import (
    BadRequestException,
    NotFoundException,
    UnprocessableEntityException,
)

from tests.sdk.helpers import (
    SSE_TIMEOUT_S,
    check_stream,
    error_of,
    header,
    new_session,
    parse_sse,
    sdk_client,
    stream,
)
from tests.stack import Proc, Stack

pytestmark = pytest.mark.integration


# Per-call extras the SDK offers (_headers, _without_preload_content) and the edges of a request


def test_namespace_header_takes_a_name_or_an_id_and_hides_foreign_ones(gateway: Proc, stack: Stack,
                                                                       tenant: tuple[str, str, str]) -> None:
    key, ns_name, ns_id = tenant
    with sdk_client(gateway.url, key, ns_id) as by_id, sdk_client(gateway.url, key, ns_name) as by_name:
        s = new_session(by_id)
        assert by_name.get_session_agents(s.session_id).namespace_id == ns_id
    with sdk_client(gateway.url, key, None) as implicit:  # a key with one namespace needs no header
        assert implicit.get_session_agents(s.session_id).session_id == s.session_id
    _, foreign, _ = stack.new_tenant()
    bodies = []
    for ns in (foreign, "no-such-namespace"):
        with sdk_client(gateway.url, key, ns) as wrong:
            with pytest.raises(NotFoundException) as exc:
                wrong.list_tools_agents_sessions()
        assert error_of(exc.value, 404).error.code == "namespace_not_found"
        bodies.append((exc.value.body or "").replace(ns, "<ns>"))
    assert bodies[0] == bodies[1]


def test_idempotency_key_and_last_event_id_travel_in_sdk_headers(sdk: mixpeek.AgentSessionsApi) -> None:
    s = new_session(sdk)
    request = SendMessageRequest(content="hello")
    first = sdk.send_message_agents_sessions_with_http_info(s.session_id, request, _headers={"Idempotency-Key": "k1"},
                                                            _request_timeout=SSE_TIMEOUT_S)
    events = parse_sse(first.data)
    check_stream(events)
    assert header(first, "Idempotent-Replayed") == "false"
    again = sdk.send_message_agents_sessions_with_http_info(s.session_id, request, _headers={"Idempotency-Key": "k1"},
                                                            _request_timeout=SSE_TIMEOUT_S)
    assert header(again, "Idempotent-Replayed") == "true"
    assert header(again, "X-Message-Id") == header(first, "X-Message-Id")
    assert parse_sse(again.data) == events  # the same message, replayed, not run twice
    cut = len(events) // 2
    tail = sdk.send_message_agents_sessions(s.session_id, request, _request_timeout=SSE_TIMEOUT_S,
                                            _headers={"Idempotency-Key": "k1", "Last-Event-ID": events[cut].id})
    assert parse_sse(tail) == events[cut + 1:]
    assert sdk.get_session_agents(s.session_id).message_count == 2
    with pytest.raises(ApiException) as exc:  # same key, another body: 409 is outside the SDK's map
        sdk.send_message_agents_sessions(s.session_id, SendMessageRequest(content="bye"),
                                         _headers={"Idempotency-Key": "k1"}, _request_timeout=SSE_TIMEOUT_S)
    assert exc.value.status == 409 and exc.value.data is None
    assert ErrorResponse.from_json(exc.value.body or "").error.code == "idempotency_key_reused"


def test_the_stream_can_be_read_as_it_arrives(sdk: mixpeek.AgentSessionsApi) -> None:
    s = new_session(sdk)
    raw = sdk.send_message_agents_sessions_without_preload_content(s.session_id, SendMessageRequest(content="hello"),
                                                                   _request_timeout=SSE_TIMEOUT_S)
    try:
        assert raw.status == 200 and raw.headers["Content-Type"].startswith("text/event-stream")
        text = b"".join(raw.stream(64)).decode()
    finally:
        raw.release_conn()
    check_stream(parse_sse(text))


def test_unicode_and_line_breaks_survive_the_sse_framing(sdk: mixpeek.AgentSessionsApi) -> None:
    s = new_session(sdk)
    content = "Résumé für naïve Kunden ✓\nzweite Zeile\r\n„dritte“ 🚢"
    _, events = stream(sdk, s.session_id, content)
    by_type = check_stream(events)
    assert content.split("\n")[0] in by_type["message"].data["content"]
    history = sdk.get_history_agents_sessions(s.session_id)
    assert history.messages[0].content == content
    assert sdk.get_session_agents(s.session_id).session_name == "Résumé für naïve Kunden ✓ zweite"


def test_list_sessions_sorts_and_refuses_a_malformed_cursor(sdk: mixpeek.AgentSessionsApi) -> None:
    made = [new_session(sdk).session_id for _ in range(3)]
    oldest_first = sdk.list_sessions_agents(list_sessions_request=ListSessionsRequest(
        sort={"field": "created_at", "direction": "asc"}))
    assert [r.session_id for r in oldest_first.results] == made
    with pytest.raises(BadRequestException) as exc:
        sdk.list_sessions_agents(cursor="a b/c")
    assert error_of(exc.value, 400).error.code == "invalid_cursor"
    with pytest.raises(UnprocessableEntityException) as exc:
        sdk.list_sessions_agents(list_sessions_request=ListSessionsRequest(filters={"colour": "red"}))
    error_of(exc.value, 422)


def test_oversized_requests_are_refused_with_an_error_body(sdk: mixpeek.AgentSessionsApi) -> None:
    s = new_session(sdk)
    with pytest.raises(UnprocessableEntityException) as exc:
        sdk.send_message_agents_sessions(s.session_id, SendMessageRequest(content="x" * 32_001))
    assert error_of(exc.value, 422).error.code == "content_too_long"
    with pytest.raises(ApiException) as big:
        sdk.patch_session_agents(s.session_id, PatchSessionRequest(user_memory={"blob": "x" * 2_000_000}))
    # 413 is not in the SDK's response map, so e.data stays None; the body is still the error shape
    assert big.value.status == 413 and big.value.data is None
    assert ErrorResponse.from_json(big.value.body or "").error.code == "body_too_large"
    assert sdk.get_session_agents(s.session_id).user_memory is None
