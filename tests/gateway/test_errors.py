"""The error mapping: an unexpected exception is one log line with a request id (issue 15.3)."""

from __future__ import annotations

import logging

import pytest
from starlette.requests import Request
from starlette.routing import Route
from starlette.testclient import TestClient

from gateway import errors
from gateway.app import GatewayApp


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
