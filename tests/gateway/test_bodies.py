"""Request bodies over real HTTP: nesting depth (issue 15.3) and media type (issue 15.9)."""

from __future__ import annotations

import json

import httpx

from shared.nesting import MAX_JSON_DEPTH


def nested(depth: int) -> object:
    value: object = 1
    for i in range(depth):
        value = [value] if i % 2 else {"k": value}
    return value


def test_deep_nesting_in_any_body_is_400_not_500(api: httpx.Client) -> None:
    # ~990 levels anywhere used to raise RecursionError: 500 and a long traceback per request
    raw = b'{"agent_config": {}, "metadata": ' + b"[" * 990 + b"1" + b"]" * 990 + b"}"
    r = api.post("/v1/agents/sessions", content=raw, headers={"Content-Type": "application/json"})
    assert r.status_code == 400, r.text
    assert r.json()["error"]["code"] == "json_too_deep" and r.json()["success"] is False
    raw = b"[" * 200_000 + b"]" * 200_000  # deeper than the decoder itself goes
    r = api.post("/v1/agents/sessions", content=raw, headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "json_too_deep"


def test_deep_session_metadata_is_400_and_metadata_within_the_limit_is_kept(api: httpx.Client) -> None:
    r = api.post("/v1/agents/sessions", json={"agent_config": {}, "metadata": nested(400)})
    assert r.status_code == 400 and r.json()["error"]["details"] == {"limit_depth": MAX_JSON_DEPTH}
    ok = {"m": nested(MAX_JSON_DEPTH - 2)}  # with the body itself: exactly the limit
    r = api.post("/v1/agents/sessions", json={"agent_config": {}, "metadata": ok})
    assert r.status_code == 200, r.text
    assert api.get(f"/v1/agents/sessions/{r.json()['session_id']}").json()["metadata"] == ok


def test_deep_filters_and_filter_stage_conditions_are_refused_in_the_error_shape(api: httpx.Client) -> None:
    col = api.post("/v1/collections", json={"collection_name": "deep"}).json()["collection_id"]
    assert api.post(f"/v1/collections/{col}/documents", json={"metadata": {"a": 1}}).status_code == 200
    tree: dict = {"field": "a", "operator": "eq", "value": 1}
    for _ in range(20):  # inside the body limit, beyond the filter limit
        tree = {"AND": [tree]}
    stages = [{"stage_name": "f", "config": {"stage_id": "filter", "parameters": {"conditions": tree}}}]
    r = api.post("/v1/retrievers/execute", json={"collection_identifiers": [col], "stages": stages})
    assert r.status_code == 422 and "deeper than" in r.text, r.text
    r = api.post("/v1/retrievers/execute", json={"collection_identifiers": [col], "filters": tree, "stages": [
        {"stage_name": "l", "config": {"stage_id": "limit", "parameters": {"n": 1}}}]})
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_filters", r.text
    for _ in range(430):  # 450 deep: refused as a body already
        tree = {"AND": [tree]}
    r = api.post("/v1/retrievers/execute", content=json.dumps(
        {"collection_identifiers": [col], "filters": tree, "stages": stages}).encode(),
        headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "json_too_deep"


def test_a_body_that_is_not_declared_json_is_415(api: httpx.Client) -> None:
    """Issue 15.9: bodies sent as text/plain (what a cross-site form or a bare fetch sends) were
    parsed as JSON."""
    body = json.dumps({"agent_config": {}}).encode()
    for ctype in ("text/plain", "text/plain;charset=UTF-8", "application/x-www-form-urlencoded",
                  "multipart/form-data; boundary=x", "application/jsonx"):
        r = api.post("/v1/agents/sessions", content=body, headers={"Content-Type": ctype})
        assert r.status_code == 415, (ctype, r.text)
        assert r.json()["error"]["code"] == "unsupported_media_type" and r.json()["success"] is False
    for ctype in ("application/json", "application/json; charset=utf-8", "Application/JSON",
                  "application/merge-patch+json"):
        assert api.post("/v1/agents/sessions", content=body, headers={"Content-Type": ctype}).status_code == 200
    # no Content-Type at all: read as JSON (documented); an empty body needs none
    bare = httpx.Request("POST", str(api.base_url) + "/v1/agents/sessions", headers=dict(api.headers), content=body)
    bare.headers.pop("content-type", None)
    assert api.send(bare).status_code == 200
    sid = api.post("/v1/agents/sessions", json={"agent_config": {}}).json()["session_id"]
    r = api.post(f"/v1/agents/sessions/{sid}/messages/msg_0000000000000000/cancel", headers={"Content-Type": "text/plain"})
    assert r.status_code == 404  # no body: the media type does not matter
