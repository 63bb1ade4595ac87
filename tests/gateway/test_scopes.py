"""Every route declares the scope it needs, and a read-only key is refused on every route that
sends, writes or deletes. The test walks the app's own route table, so a new route that forgets
to declare its scope fails here (and is refused to read-only keys meanwhile: undeclared = full)."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from starlette.routing import Mount, Route

from gateway.access import PUBLIC, ROUTE_SCOPES
from gateway.app import create_app
from shared.settings import Settings
from shared.stores.apikeys import KeyStore
from shared.stores.tenancy import FULL, READ

_PARAM = re.compile(r"{([^}:]+)(?::[^}]*)?}")


def walk(routes: list[Any], prefix: str = "") -> Iterator[tuple[str, str]]:
    for route in routes:
        if isinstance(route, Mount):
            yield from walk(route.routes, prefix + route.path)
        elif isinstance(route, Route):
            for method in sorted(route.methods or ()):
                if method != "HEAD":
                    yield method, prefix + route.path
        else:
            raise AssertionError(f"a route of an unknown kind cannot declare its scope: {route!r}")


@pytest.fixture(scope="module")
def served() -> list[tuple[str, str]]:
    return list(walk(create_app(Settings(), "unix:///nonexistent").routes))


def test_every_route_declares_its_scope(served):
    assert [r for r in served if r not in ROUTE_SCOPES] == [], "add these to gateway/access.py ROUTE_SCOPES"
    assert set(ROUTE_SCOPES) - set(served) == set(), "ROUTE_SCOPES names routes the app does not serve"
    assert set(ROUTE_SCOPES.values()) <= {PUBLIC, READ, FULL}


def test_read_scope_is_for_reading_only(served):
    """No route that deletes or edits is read-only; the POSTs that are read-only only ask."""
    for method, path in served:
        if ROUTE_SCOPES[(method, path)] == READ and method != "GET":
            assert method == "POST" and path.endswith(("/list", "/execute", "/detect", "/stream-token")), path
        if method in ("PATCH", "DELETE", "PUT"):
            assert ROUTE_SCOPES[(method, path)] == FULL, path


def _fill(path: str, ids: dict[str, str]) -> str:
    return _PARAM.sub(lambda m: ids.get(m.group(1), "x"), path)


def test_read_key_is_refused_on_every_writing_route_and_served_on_reading_ones(stack, gateway, api, tenant, served):
    key, ns, _ = tenant
    read_key, _ = stack.redis_call(lambda r: KeyStore(r).create(ns, scope=READ, name=f"ro-{time.time_ns()}"))
    sid = api.post("/v1/agents/sessions", json={"agent_config": {}}).json()["session_id"]
    r = api.post(f"/v1/agents/sessions/{sid}/messages", json={"content": "hello", "stream": False})
    ids = {"session_id": sid, "message_id": r.json()["message_id"], "collection_identifier": "col_none",
           "document_id": "doc_none", "retriever_id": "ret_none", "confirmation_id": "conf_none", "file": "app.js"}
    refused, served_ok = [], []
    with httpx.Client(base_url=gateway.url, timeout=30,
                      headers={"Authorization": f"Bearer {read_key}", "X-Namespace": ns}) as ro:
        for method, path in served:
            scope = ROUTE_SCOPES[(method, path)]
            if scope == PUBLIC:
                continue
            body = {} if method in ("POST", "PATCH") else None
            resp = ro.request(method, _fill(path, ids), json=body, headers={"Accept": "application/json"})
            is_scope_error = resp.status_code == 403 and resp.json()["error"]["code"] == "insufficient_scope"
            if scope == FULL:
                assert is_scope_error, (method, path, resp.status_code, resp.text[:200])
                assert resp.json()["error"]["details"] == {"key_scope": "read", "required_scope": "full"}
                refused.append((method, path))
            else:
                assert not is_scope_error and resp.status_code < 500, (method, path, resp.status_code)
                served_ok.append((method, path))
    assert refused and served_ok
    # the session is untouched: nothing the read key tried went through
    assert api.get(f"/v1/agents/sessions/{sid}").json()["status"] == "active"
