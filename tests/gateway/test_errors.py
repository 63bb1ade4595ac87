"""The error mapping: an unexpected exception is one log line with a request id (issue 15.3);
every error carries a details object (issue 19)."""

from __future__ import annotations

import logging

import httpx
import pytest
from starlette.requests import Request
from starlette.routing import Route
from starlette.testclient import TestClient

from gateway import errors
from gateway.app import GatewayApp
from shared.errors import NotFound
from tests.stack import Proc


async def boom(request: Request) -> None:
    def recurse(n: int) -> int:
        return recurse(n + 1) + 1

    recurse(0)  # RecursionError: what deep input used to raise, with a 200 KB traceback


def test_unexpected_exception_logs_one_line_with_the_request_id_not_a_traceback(caplog: pytest.LogCaptureFixture) -> None:
    app = GatewayApp(routes=[Route("/boom", boom)], exception_handlers=errors.HANDLERS)  # type: ignore[arg-type]
    # raise_server_exceptions: whatever reaches the server would be logged by it, traceback and all
    with TestClient(app, raise_server_exceptions=True) as client, caplog.at_level(logging.INFO, "agentstream"):
        r = client.get("/boom", headers={"X-Request-Id": "abc-123"})
        other = client.get("/boom", headers={"X-Request-Id": "x" * 500})  # too long: not echoed back
    assert r.status_code == 500 and r.json()["error"]["code"] == "internal_error"
    assert r.json()["error"]["details"] == {"request_id": "abc-123"} and r.headers["x-request-id"] == "abc-123"
    assert other.headers["x-request-id"].startswith("req_")
    records = [rec for rec in caplog.records if rec.name == "agentstream.gateway"]
    assert len(records) == 2 and all(rec.exc_info is None for rec in records)
    assert "RecursionError" in records[0].getMessage() and "request_id=abc-123" in records[0].getMessage()
    assert all(len(rec.getMessage()) < 400 and "\n" not in rec.getMessage() for rec in records)


def test_an_error_without_details_still_carries_a_details_object() -> None:
    async def plain(request: Request) -> None:
        raise NotFound("Nothing here", code="session_not_found")

    app = GatewayApp(routes=[Route("/plain", plain)], exception_handlers=errors.HANDLERS)  # type: ignore[arg-type]
    with TestClient(app) as client:
        r = client.get("/plain")
        missing = client.get("/no-such-route")
    assert r.status_code == 404 and r.json()["error"]["details"] == {}
    assert missing.json()["error"]["code"] == "route_not_found" and missing.json()["error"]["details"] == {}


@pytest.mark.integration
def test_401_malformed_json_and_a_reused_idempotency_key_carry_details(gateway: Proc, api: httpx.Client) -> None:
    """The README once said errors always carry details; these three carried none (issue 19)."""
    anonymous = httpx.post(gateway.url + "/v1/agents/sessions", json={})
    wrong = httpx.post(gateway.url + "/v1/agents/sessions", json={}, headers={"Authorization": "Bearer sk_nope"})
    assert anonymous.status_code == 401 and anonymous.json()["error"]["details"] == {
        "header": "Authorization", "scheme": "Bearer"}
    assert wrong.status_code == 401 and wrong.json()["error"]["details"] == {"header": "Authorization"}

    malformed = api.post("/v1/agents/sessions", content=b'{"agent_config": ', headers={"Content-Type": "application/json"})
    assert malformed.status_code == 400 and malformed.json()["error"]["code"] == "malformed_json"
    assert malformed.json()["error"]["details"]["error"] in malformed.json()["error"]["message"]

    sid = api.post("/v1/agents/sessions", json={"agent_config": {}}).json()["session_id"]
    first = api.post(f"/v1/agents/sessions/{sid}/messages", json={"content": "hello", "stream": False},
                     headers={"Idempotency-Key": "k-1"})
    again = api.post(f"/v1/agents/sessions/{sid}/messages", json={"content": "other", "stream": False},
                     headers={"Idempotency-Key": "k-1"})
    assert first.status_code == 200
    assert again.status_code == 409 and again.json()["error"]["code"] == "idempotency_key_reused"
    assert again.json()["error"]["details"] == {"session_id": sid, "header": "Idempotency-Key"}
