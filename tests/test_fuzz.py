"""Schemathesis fuzzes the live gateway from its own ``GET /openapi.json``.

Every documented operation gets a bounded number of generated requests, valid and invalid
(derandomized, so a failure reproduces). Each response must be below 500, every 4xx/5xx must be
the reference's ``ErrorResponse``, and 2xx bodies must match the documented schema (SSE events
included: each ``data`` against its event's payload schema). Half the examples use ids that
exist (a session with a finished message, a paused confirmation, a collection with a document,
a retriever), so validation past the 404 is reached too; DELETE keeps its generated ids, so the
live resources survive the run.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.openapi import OPERATIONS
from tests.stack import Proc, Stack

# per operation; FUZZ_EXAMPLES=200 for a deeper (slower) run
MAX_EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "15"))
REQUEST_TIMEOUT_S = 10
ERROR_KEYS = {"success", "status", "error"}


def _ok(resp: httpx.Response) -> Any:
    assert resp.status_code == 200, resp.text
    return resp.json()


@dataclass(frozen=True)
class Target:
    schema: schemathesis.BaseSchema
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


def error_shape(ctx: schemathesis.CheckContext, response: schemathesis.Response,
                case: schemathesis.Case) -> None:
    """Reference §6: ``{"success": false, "status": <the status>, "error": {"message", "type", ...}}``."""
    status = response.status_code
    if status < 400 or (case.path == "/readyz" and status == 503):  # the probe reports readiness instead
        return
    content_type = (response.headers.get("content-type") or [""])[0]
    assert content_type.startswith("application/json"), f"{status} with Content-Type {content_type!r}"
    body = response.json()
    assert isinstance(body, dict) and ERROR_KEYS <= set(body), f"not an ErrorResponse: {body!r}"
    assert body["success"] is False and body["status"] == status, f"success/status wrong: {body!r}"
    error = body["error"]
    assert isinstance(error, dict), f"error is not an object: {body!r}"
    assert isinstance(error.get("message"), str) and isinstance(error.get("type"), str), f"bad error: {body!r}"
    assert isinstance(error.get("code", ""), str) and isinstance(error.get("details", {}), dict), body


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
    operation = target.schema.find_operation_by_id(operation_id)

    @settings(max_examples=MAX_EXAMPLES, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(case=strategy(operation, target.live_ids))
    def fuzz(case: schemathesis.Case) -> None:
        case.call_and_validate(additional_checks=[error_shape], timeout=REQUEST_TIMEOUT_S)

    fuzz()
