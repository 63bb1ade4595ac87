"""Schemathesis fuzzes the live gateway from its own ``GET /openapi.json``.

Every documented operation gets a bounded number of generated requests, valid and invalid
(derandomized, so a failure reproduces). Each response must be below 500, every 4xx/5xx must be
the reference's ``ErrorResponse``, and 2xx bodies must match the documented schema (SSE events
included: each ``data`` against its event's payload schema). Half the examples use ids that
exist (a session with a finished message, a paused confirmation, a collection with a document,
a retriever), so validation past the 404 is reached too; DELETE keeps its generated ids, so the
live resources survive the run.

Each operation is its own pytest test driving ``APIOperation.as_strategy()`` with Hypothesis:
schemathesis' ``pytest.from_fixture`` loader (the way to fuzz a schema served by a fixture)
fails on pytest 9.2 (schemathesis 4.32.5 reads ``Node._nodeid``, which pytest 9.2 removed).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.openapi import OPERATIONS
from tests.stack import Proc, Stack

if TYPE_CHECKING:
    from schemathesis.specs.openapi.schemas import OpenApiSchema

# per operation; FUZZ_EXAMPLES=200 for a deeper (slower) run
MAX_EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "25"))
REQUEST_TIMEOUT_S = 10
ERROR_KEYS = {"success", "status", "error"}


def _ok(resp: httpx.Response) -> Any:
    assert resp.status_code == 200, resp.text
    return resp.json()


@dataclass(frozen=True)
class Target:
    schema: OpenApiSchema
    live_ids: dict[str, str]


@pytest.fixture(scope="module")
def target(stack: Stack, gateway: Proc) -> Target:
    key, ns, _ = stack.new_tenant()
    config = schemathesis.Config.from_dict({
        "base-url": gateway.url,
        "request-timeout": REQUEST_TIMEOUT_S,
        "auth": {"openapi": {"BearerAuth": {"bearer": key}, "NamespaceHeader": {"api_key": ns}}},
        "checks": {"enabled": False, "not_a_server_error": {"enabled": True},
                   "status_code_conformance": {"enabled": True}, "content_type_conformance": {"enabled": True},
                   "response_schema_conformance": {"enabled": True}},
        "warnings": False,
    })
    schema = schemathesis.openapi.from_url(gateway.url + "/openapi.json", config=config)
    with httpx.Client(base_url=gateway.url, headers={"Authorization": f"Bearer {key}", "X-Namespace": ns},
                      timeout=30) as api:
        return Target(schema, live_ids(api))


def live_ids(api: httpx.Client) -> dict[str, str]:
    """Path-parameter values that name real resources of the tenant."""
    def session() -> str:
        return str(_ok(api.post("/v1/agents/sessions", json={"agent_config": {}}))["session_id"])

    ses = session()
    msg = _ok(api.post(f"/v1/agents/sessions/{ses}/messages", json={"content": "hello", "stream": False}))
    paused = session()
    conf = _ok(api.post(f"/v1/agents/sessions/{paused}/messages",
                        json={"content": "create a new collection named fuzz-confirm", "stream": False}))
    assert conf["status"] == "awaiting_confirmation", conf
    col = _ok(api.post("/v1/collections", json={"collection_name": "fuzz"}))
    doc = _ok(api.post(f"/v1/collections/{col['collection_id']}/documents", json={"metadata": {"text": "hi"}}))
    ret = _ok(api.post("/v1/retrievers", json={
        "retriever_name": "fuzz", "collection_identifiers": [col["collection_id"]],
        "stages": [{"stage_name": "l", "config": {"stage_id": "limit", "parameters": {"n": 3}}}]}))
    return {"session_id": ses, "message_id": msg["message_id"], "paused_session_id": paused,
            "confirmation_id": conf["confirmation"]["confirmation_id"],
            "collection_identifier": col["collection_id"], "document_id": doc["document_id"],
            "retriever_id": ret["retriever_id"]}


def assert_error_shape(status: int, content_type: str, body: Any) -> None:
    """Reference §6: ``{"success": false, "status": <the status>, "error": {"message", "type", ...}}``."""
    assert content_type.startswith("application/json"), f"{status} with Content-Type {content_type!r}"
    assert isinstance(body, dict) and ERROR_KEYS <= set(body), f"not an ErrorResponse: {body!r}"
    assert body["success"] is False and body["status"] == status, f"success/status wrong: {body!r}"
    error = body["error"]
    assert isinstance(error, dict), f"error is not an object: {body!r}"
    assert isinstance(error.get("message"), str) and isinstance(error.get("type"), str), f"bad error: {body!r}"
    assert isinstance(error.get("code", ""), str) and isinstance(error.get("details", {}), dict), body


def error_shape(ctx: schemathesis.CheckContext, response: schemathesis.Response,
                case: schemathesis.Case) -> None:
    status = response.status_code
    if status < 400 or (case.path == "/readyz" and status == 503):  # the probe reports readiness instead
        return
    assert_error_shape(status, (response.headers.get("content-type") or [""])[0], response.json())


def strategy(operation: schemathesis.APIOperation, live: dict[str, str]) -> st.SearchStrategy[schemathesis.Case]:
    """Generated requests, valid and invalid; half of them aimed at live resources (not for DELETE,
    so that they survive the run)."""
    names = {p.name for p in operation.path_parameters}
    fixed = dict(live, session_id=live["paused_session_id"]) if "confirmation_id" in names else live
    fixed = {k: v for k, v in fixed.items() if k in names}
    modes = list(schemathesis.GenerationMode)
    out = [operation.as_strategy(mode) for mode in modes]
    if fixed and operation.method.upper() != "DELETE":
        out += [operation.as_strategy(mode, path_parameters=fixed) for mode in modes]
    return st.one_of(out)


@pytest.mark.parametrize("operation_id", [op.operation_id for op in OPERATIONS])
def test_fuzz(operation_id: str, target: Target) -> None:
    try:
        operation = target.schema.find_operation_by_id(operation_id)
    except LookupError:
        pytest.skip(f"{operation_id} is not served (its route module is absent)")

    @settings(max_examples=MAX_EXAMPLES, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(case=strategy(operation, target.live_ids))
    def fuzz(case: schemathesis.Case) -> None:
        case.call_and_validate(additional_checks=[error_shape], timeout=REQUEST_TIMEOUT_S)

    fuzz()


# Inputs the generator rarely reaches, each once: same rules (< 500, errors in the error shape).
_SES = "/v1/agents/sessions"
HAND_PICKED = [
    # str.isdigit() is true for superscripts and circled digits, which int() refuses
    ("POST", _SES + "/list?cursor=%C2%B2", None),
    ("POST", _SES + "/list?next_cursor=%C2%B9", None),
    ("POST", _SES + "/list?after=%E2%91%A0", None),
    ("POST", _SES + "/list?cursor=99999999999999999999999", None),
    ("POST", _SES + "/list?page=99999999999999999999999&limit=1000", None),
    ("POST", _SES + "/list?limit=%EF%BC%91", None),  # a full-width digit
    ("POST", _SES + "/list", b'{"sort": {"field": ["created_at"]}}'),
    ("POST", _SES, b'{"agent_config": {"temperature": 1e400}}'),
    ("POST", _SES, b'{"agent_config": {"system_prompt": "\\ud800"}}'),  # a lone surrogate
    ("POST", _SES + "/intent/detect", b'{"user_request": "x", "include_collection_analysis": "yes"}'),
    ("POST", "/v1/retrievers/execute", b'{"collection_identifiers": ["x"], "stages": [], '
                                       b'"pagination": {"offset": 99999999999999999999}}'),
    # issue 15: deep nesting anywhere, huge numbers, digits of other scripts, a trailing newline
    ("POST", _SES, b'{"agent_config": {}, "metadata": ' + b"[" * 990 + b"]" * 990 + b"}"),
    ("POST", _SES, b'{"agent_config": {}, "metadata": ' + b'{"a": ' * 400 + b"1" + b"}" * 400 + b"}"),
    ("POST", _SES, b'{"agent_config": {}, "user_memory": {"n": 1' + b"0" * 400 + b"}}"),
    ("POST", "/v1/retrievers/execute", b'{"collection_identifiers": ["x"], "stages": [], "filters": '
                                       + b'{"AND": [' * 450 + b'{"field": "a", "value": 1}' + b"]}" * 450 + b"}"),
    ("POST", "/v1/retrievers/execute", b'{"collection_identifiers": ["x"], "stages": [{"stage_name": "f", '
                                       b'"config": {"stage_id": "filter", "parameters": {"conditions": '
                                       + b'{"OR": [' * 300 + b'{"field": "a", "value": 1}' + b"]}" * 300 + b"}}}]}"),
    ("POST", "/v1/collections", b'{"collection_name": "huge", "metadata": {"n": -1' + b"9" * 5000 + b"}}"),
    ("POST", _SES + "/list?limit=%D9%A1%D9%A2", None),
    ("POST", _SES + "/list?cursor=1%0A", None),
    ("POST", _SES + "/list?limit=" + "9" * 5000, None),
]


@pytest.mark.parametrize(("method", "path", "body"), HAND_PICKED, ids=[f"{m} {p}" for m, p, _ in HAND_PICKED])
def test_hand_picked_inputs(method: str, path: str, body: bytes | None, gateway: Proc,
                            tenant: tuple[str, str, str]) -> None:
    key, ns, _ = tenant
    headers = {"Authorization": f"Bearer {key}", "X-Namespace": ns, "Content-Type": "application/json"}
    with httpx.Client(base_url=gateway.url, headers=headers, timeout=REQUEST_TIMEOUT_S) as api:
        r = api.request(method, path, content=body)
    assert r.status_code < 500, f"{method} {path} {body!r} -> {r.status_code} {r.text}"
    if r.status_code >= 400:
        assert_error_shape(r.status_code, r.headers.get("content-type", ""), r.json())
