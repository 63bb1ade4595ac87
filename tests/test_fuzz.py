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

from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from tests.stack import Proc

MAX_EXAMPLES = 10
REQUEST_TIMEOUT_S = 10
ERROR_KEYS = {"success", "status", "error"}


def _ok(resp: httpx.Response) -> Any:
    assert resp.status_code == 200, resp.text
    return resp.json()


@pytest.fixture
def live_ids(gateway: Proc, tenant: tuple[str, str, str]) -> dict[str, str]:
    """Path-parameter values that name real resources of the tenant."""
    key, ns, _ = tenant
    with httpx.Client(base_url=gateway.url, headers={"Authorization": f"Bearer {key}", "X-Namespace": ns},
                      timeout=30) as api:
        def session() -> str:
            return str(_ok(api.post("/v1/agents/sessions", json={"agent_config": {}}))["session_id"])

        ses = session()
        msg = _ok(api.post(f"/v1/agents/sessions/{ses}/messages", json={"content": "hello", "stream": False}))
        paused = session()
        conf = _ok(api.post(f"/v1/agents/sessions/{paused}/messages",
                            json={"content": "create a new collection named fuzz-confirm", "stream": False}))
        col = _ok(api.post("/v1/collections", json={"collection_name": "fuzz"}))
        doc = _ok(api.post(f"/v1/collections/{col['collection_id']}/documents",
                           json={"metadata": {"text": "hello fuzz"}}))
        ret = _ok(api.post("/v1/retrievers", json={
            "retriever_name": "fuzz", "collection_identifiers": [col["collection_id"]],
            "stages": [{"stage_name": "l", "config": {"stage_id": "limit", "parameters": {"n": 3}}}]}))
    assert conf["status"] == "awaiting_confirmation", conf
    return {"session_id": ses, "message_id": msg["message_id"], "paused_session_id": paused,
            "confirmation_id": conf["confirmation"]["confirmation_id"],
            "collection_identifier": col["collection_id"], "document_id": doc["document_id"],
            "retriever_id": ret["retriever_id"]}


@pytest.fixture
def api_schema(gateway: Proc, tenant: tuple[str, str, str]) -> schemathesis.BaseSchema:
    key, ns, _ = tenant
    config = schemathesis.Config.from_dict({
        "seed": 9,
        "base-url": gateway.url,
        "request-timeout": REQUEST_TIMEOUT_S,
        "auth": {"openapi": {"BearerAuth": {"bearer": key}, "NamespaceHeader": {"api_key": ns}}},
        # examples and fuzzing only: the coverage phase alone would send hundreds of requests
        "phases": {"coverage": {"enabled": False}, "stateful": {"enabled": False}},
        "checks": {"enabled": False, "not_a_server_error": {"enabled": True},
                   "status_code_conformance": {"enabled": True}, "content_type_conformance": {"enabled": True},
                   "response_schema_conformance": {"enabled": True}},
        "warnings": False,
    })
    return schemathesis.openapi.from_url(gateway.url + "/openapi.json", config=config)


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


def use_live_ids(case: schemathesis.Case, live_ids: dict[str, str]) -> None:
    values = dict(live_ids)
    if "confirmation_id" in case.path_parameters:
        values["session_id"] = values["paused_session_id"]
    for name in case.path_parameters:
        if name in values:
            case.path_parameters[name] = values[name]


schema = schemathesis.pytest.from_fixture("api_schema")


@pytest.mark.timeout(300)
@schema.parametrize()
@schema.given(live=st.booleans())
@settings(max_examples=MAX_EXAMPLES, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
def test_fuzz(case: schemathesis.Case, live: bool, live_ids: dict[str, str]) -> None:
    if live and case.method != "DELETE":
        use_live_ids(case, live_ids)
    case.call_and_validate(additional_checks=[error_shape], timeout=REQUEST_TIMEOUT_S)
