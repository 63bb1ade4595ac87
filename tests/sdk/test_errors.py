"""Errors through the SDK: the right exception class and an ``ErrorResponse`` in ``e.data``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import mixpeek
import pytest
from mixpeek import (
    AgentConfig,
    ConfirmationRequest,
    CreateSessionRequest,
    DetectIntentRequest,
    ErrorResponse,
    PatchSessionRequest,
    SendMessageRequest,
    SessionStatus,
    SubmitFeedbackRequest,
)
from mixpeek.exceptions import (
    NotFoundException,
    UnauthorizedException,
    UnprocessableEntityException,
)

from tests.sdk.helpers import HAS_CONFIRMATIONS, SSE_TIMEOUT_S, error_of, new_session, raw_call, sdk_client
from tests.stack import Proc

pytestmark = pytest.mark.integration


# Errors through the SDK


def _all_operations(ses_id: str) -> dict[str, Callable[[mixpeek.AgentSessionsApi], Any]]:
    return {
        "create_session": lambda a: a.create_session_agents(CreateSessionRequest(agent_config=AgentConfig())),
        "get_session": lambda a: a.get_session_agents(ses_id),
        "patch_session": lambda a: a.patch_session_agents(ses_id, PatchSessionRequest(user_memory={})),
        "terminate_session": lambda a: a.terminate_session_agents(ses_id),
        "list_sessions": lambda a: a.list_sessions_agents(),
        "send_message": lambda a: a.send_message_agents_sessions(ses_id, SendMessageRequest(content="hi"),
                                                                 _request_timeout=SSE_TIMEOUT_S),
        "get_history": lambda a: a.get_history_agents_sessions(ses_id),
        "submit_feedback": lambda a: a.submit_feedback_agents_sessions(
            ses_id, SubmitFeedbackRequest(message_id="msg_x", rating="positive")),
        "respond_to_confirmation": lambda a: a.respond_to_confirmation_agents_sessions(
            ses_id, "conf_x", ConfirmationRequest(approved=False)),
        "detect_intent": lambda a: a.detect_intent_agents_sessions(DetectIntentRequest(user_request="x")),
        "list_tools": lambda a: a.list_tools_agents_sessions(),
    }


# without the confirmations route, respond_to_confirmation is a 404 for want of a route
_NO_ROUTE = pytest.mark.skipif(not HAS_CONFIRMATIONS, reason="no confirmations route yet")
OPERATIONS = [pytest.param(op, marks=_NO_ROUTE) if op == "respond_to_confirmation" else op
              for op in _all_operations("")]
SESSION_OPERATIONS = [op for op in _all_operations("")
                      if op not in {"create_session", "list_sessions", "detect_intent", "list_tools"}]


@pytest.mark.parametrize("key", [None, "sk_not_a_real_key"], ids=["missing", "invalid"])
@pytest.mark.parametrize("op", OPERATIONS)
def test_every_operation_without_a_valid_key_is_401(gateway: Proc, sdk: mixpeek.AgentSessionsApi,
                                                   tenant: tuple[str, str, str], key: str | None, op: str) -> None:
    s = new_session(sdk)
    with sdk_client(gateway.url, key, tenant[1]) as anonymous:
        with pytest.raises(UnauthorizedException) as exc:
            _all_operations(s.session_id)[op](anonymous)
    assert error_of(exc.value, 401).error.type == "UnauthorizedError"
    assert sdk.get_session_agents(s.session_id).status == SessionStatus.ACTIVE  # nothing happened


@pytest.mark.parametrize("op", SESSION_OPERATIONS)
def test_another_namespaces_session_answers_exactly_like_a_missing_one(
        sdk: mixpeek.AgentSessionsApi, other_sdk: mixpeek.AgentSessionsApi, op: str) -> None:
    theirs = new_session(other_sdk).session_id
    missing = "ses_" + "0" * (len(theirs) - 4)
    bodies = []
    for ses_id in (theirs, missing):
        with pytest.raises(NotFoundException) as exc:
            _all_operations(ses_id)[op](sdk)
        error_of(exc.value, 404)
        assert exc.value.body is not None
        bodies.append(exc.value.body.replace(ses_id, "<id>"))
    assert bodies[0] == bodies[1]
    assert other_sdk.get_session_agents(theirs).status == SessionStatus.ACTIVE  # untouched


def test_a_session_id_with_reserved_characters_is_just_not_found(sdk: mixpeek.AgentSessionsApi) -> None:
    with pytest.raises(NotFoundException) as exc:
        sdk.get_session_agents("ses_a/b c?d")  # the SDK sends ses_a%2Fb%20c%3Fd
    error_of(exc.value, 404)


@pytest.mark.parametrize(("path", "body", "code"), [
    ("/v1/agents/sessions", None, "body_required"),
    ("/v1/agents/sessions", {}, "invalid_body"),
    ("/v1/agents/sessions", {"agent_config": {"temperature": 5}}, "invalid_body"),
    ("/v1/agents/sessions", {"agent_config": {}, "agent": "x"}, "extra_forbidden"),
    ("/v1/agents/sessions", {"agent_config": {"modle": "x"}}, "extra_forbidden"),
    ("/v1/agents/sessions/intent/detect", {"user_request": ""}, "invalid_body"),
    ("/v1/agents/sessions/intent/detect", {"user_request": 7}, "invalid_body"),
    ("/v1/agents/sessions/list", {"status": "expired"}, "invalid_body"),
], ids=["create-no-body", "create-empty", "create-temperature", "create-unknown-key", "create-nested-unknown",
        "intent-empty", "intent-not-a-string", "list-bad-status"])
def test_invalid_bodies_are_422_with_an_error_body(sdk: mixpeek.AgentSessionsApi, path: str, body: Any,
                                                  code: str) -> None:
    with pytest.raises(UnprocessableEntityException) as exc:
        raw_call(sdk, "POST", path, body)
    err = error_of(exc.value, 422)
    assert err.error.code == code, exc.value.body
    if code == "extra_forbidden":
        assert err.error.details and "accepted_keys" in err.error.details


@pytest.mark.parametrize(("suffix", "method", "body", "code"), [
    ("/messages", "POST", None, "body_required"),
    ("/messages", "POST", {"content": ""}, "invalid_body"),
    ("/messages", "POST", {"content": "hi", "stream": "yes"}, "invalid_body"),
    ("/feedback", "POST", {"message_id": "msg_x", "rating": "meh"}, "invalid_body"),
    ("", "PATCH", {}, "invalid_body"),
    ("", "PATCH", {"user_memory": ["not", "an", "object"]}, "invalid_body"),
], ids=["message-no-body", "message-empty", "message-stream-type", "feedback-rating", "patch-empty",
        "patch-list"])
def test_invalid_session_bodies_are_422(sdk: mixpeek.AgentSessionsApi, suffix: str, method: str, body: Any,
                                        code: str) -> None:
    s = new_session(sdk)
    with pytest.raises(UnprocessableEntityException) as exc:
        raw_call(sdk, method, f"/v1/agents/sessions/{s.session_id}{suffix}", body)
    assert error_of(exc.value, 422).error.code == code, exc.value.body


def test_malformed_json_is_400_with_an_error_body(gateway: Proc, tenant: tuple[str, str, str]) -> None:
    # the SDK always JSON-encodes bodies, so broken JSON needs a plain client
    key, ns, _ = tenant
    resp = httpx.post(gateway.url + "/v1/agents/sessions", content=b'{"agent_config": {',
                      headers={"Authorization": f"Bearer {key}", "X-Namespace": ns,
                               "Content-Type": "application/json"}, timeout=SSE_TIMEOUT_S)
    assert resp.status_code == 400 and resp.headers["content-type"] == "application/json"
    err = ErrorResponse.from_json(resp.text)
    assert err is not None and err.status == 400 and err.error.code == "malformed_json"


def test_the_sdk_body_shapes_are_accepted_byte_for_byte(gateway: Proc, tenant: tuple[str, str, str]) -> None:
    """What the SDK serialises (reference §1.3), sent as plain HTTP: the server takes it as is."""
    key, ns, _ = tenant
    headers = {"Authorization": f"Bearer {key}", "X-Namespace": ns, "Accept": "application/json"}
    body = CreateSessionRequest(agent_config=AgentConfig()).to_dict()
    assert body == {"agent_config": {"model": "claude-sonnet-4-5-20250929", "temperature": 0.7, "max_tokens": 4096,
                                     "system_prompt": "You are a helpful AI assistant with access to Mixpeek's "
                                                      "data infrastructure."}, "enable_memory": True}
    with httpx.Client(base_url=gateway.url, headers=headers, timeout=SSE_TIMEOUT_S) as http:
        created = http.post("/v1/agents/sessions", json=body)
        assert created.status_code == 200, created.text
        listed = http.post("/v1/agents/sessions/list", headers={"Content-Type": "application/json"})
        assert listed.status_code == 200 and listed.json()["total"] == 1
