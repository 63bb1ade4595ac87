"""The OpenAPI document: valid 3.1, and in step with the routes the app really serves."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
import schemathesis
from starlette.routing import Route
from starlette.testclient import TestClient

from gateway import openapi
from gateway.app import create_app
from gateway.routes.openapi import PATH
from shared.settings import Settings

# The SDK's operations (reference §2): operationId -> (method, path)
SDK_OPERATIONS = {
    "create_session_agents": ("POST", "/v1/agents/sessions"),
    "get_session_agents": ("GET", "/v1/agents/sessions/{session_id}"),
    "patch_session_agents": ("PATCH", "/v1/agents/sessions/{session_id}"),
    "terminate_session_agents": ("DELETE", "/v1/agents/sessions/{session_id}"),
    "list_sessions_agents": ("POST", "/v1/agents/sessions/list"),
    "send_message_agents_sessions": ("POST", "/v1/agents/sessions/{session_id}/messages"),
    "get_history_agents_sessions": ("GET", "/v1/agents/sessions/{session_id}/history"),
    "submit_feedback_agents_sessions": ("POST", "/v1/agents/sessions/{session_id}/feedback"),
    "respond_to_confirmation_agents_sessions": (
        "POST", "/v1/agents/sessions/{session_id}/confirmations/{confirmation_id}"),
    "detect_intent_agents_sessions": ("POST", "/v1/agents/sessions/intent/detect"),
    "list_tools_agents_sessions": ("GET", "/v1/agents/sessions/tools"),
}
METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}


@pytest.fixture(scope="module")
def app() -> Any:
    return create_app(Settings(), "unix:///nonexistent")


def served_routes(app: Any) -> set[tuple[str, str]]:
    """(method, path) of every route, without the HEAD Starlette adds to GET, nor the document itself."""
    return {(method, route.path) for route in app.routes if isinstance(route, Route) and route.path != PATH
            for method in route.methods or () if method != "HEAD"}


def documented(doc: dict[str, Any]) -> set[tuple[str, str]]:
    return {(method.upper(), path) for path, item in doc["paths"].items() for method in item if method in METHODS}


def operations(doc: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(method.upper(), path, op) for path, item in doc["paths"].items()
            for method, op in item.items() if method in METHODS]


def refs(node: Any) -> set[str]:
    if isinstance(node, dict):
        return {r for k, v in node.items() for r in ([v] if k == "$ref" else refs(v))}
    if isinstance(node, list):
        return {r for v in node for r in refs(v)}
    return set()


def test_document_is_valid_openapi_31() -> None:
    doc = openapi.build()
    assert doc["openapi"] == "3.1.0"
    # schemathesis validates against the official OpenAPI 3.1 meta-schema
    schemathesis.openapi.from_dict(doc).validate()


def test_every_reference_resolves() -> None:
    doc = openapi.build()
    for ref in refs(doc):
        node: Any = doc
        for part in ref.removeprefix("#/").split("/"):
            assert isinstance(node, dict) and part in node, ref
            node = node[part]


def test_every_route_is_documented_and_every_operation_is_served(app: Any) -> None:
    served = served_routes(app)
    doc = openapi.build()
    assert served - documented(doc) == set(), "routes missing from gateway/openapi.py OPERATIONS"
    assert documented(doc) - served == set(), "OPERATIONS rows no route serves"


def test_served_document_is_the_table_filtered_by_the_routes(app: Any) -> None:
    client = TestClient(app)  # no lifespan: the document needs no services
    first = client.get(PATH)
    assert first.status_code == 200
    assert first.headers["content-type"] == "application/json"
    assert client.get(PATH).content == first.content  # built once
    doc = msgspec.json.decode(first.content)
    assert documented(doc) == served_routes(app)
    assert doc["paths"] == msgspec.json.decode(msgspec.json.encode(openapi.build(served=served_routes(app))))["paths"]


def test_sdk_operations_keep_the_sdk_names() -> None:
    by_id = {op["operationId"]: (method, path) for method, path, op in operations(openapi.build())}
    assert {name: by_id.get(name) for name in SDK_OPERATIONS} == SDK_OPERATIONS


def test_operation_ids_are_unique() -> None:
    ids = [op["operationId"] for _, _, op in operations(openapi.build())]
    assert len(ids) == len(set(ids))


def test_every_operation_documents_the_error_shape() -> None:
    doc = openapi.build()
    error = {"$ref": "#/components/schemas/ErrorResponse"}
    for name, response in doc["components"]["responses"].items():
        assert response["content"]["application/json"]["schema"] == error, name
    for method, path, op in operations(doc):
        for status in openapi.ERROR_STATUSES:
            response = op["responses"][str(status)]
            if (method, path, status) == ("GET", "/readyz", 503):
                continue  # the probe answers with its readiness report
            assert response == {"$ref": f"#/components/responses/{openapi._ERROR_NAMES[status]}"}, (path, status)
    schema = doc["components"]["schemas"]["ErrorResponse"]
    assert set(schema["required"]) == {"status", "error"}
    assert set(doc["components"]["schemas"]["ErrorDetail"]["required"]) == {"message", "type"}


def test_security_schemes_match_the_sdk() -> None:
    doc = openapi.build()
    assert doc["components"]["securitySchemes"]["BearerAuth"] == {
        "type": "http", "scheme": "bearer", "description": "The API key"}
    namespace = doc["components"]["securitySchemes"]["NamespaceHeader"]
    assert (namespace["type"], namespace["in"], namespace["name"]) == ("apiKey", "header", "X-Namespace")
    assert doc["security"] == [{"BearerAuth": [], "NamespaceHeader": []}]
    public = {path for _, path, op in operations(doc) if op.get("security") == []}
    assert public == {"/healthz", "/readyz", "/"}  # "/" sends browsers to the console


def test_streaming_operations_document_their_media_types() -> None:
    paths = openapi.build()["paths"]
    send = paths["/v1/agents/sessions/{session_id}/messages"]["post"]
    assert set(send["responses"]["200"]["content"]) == {"text/event-stream", "application/json"}
    resume = paths["/v1/agents/sessions/{session_id}/messages/{message_id}/events"]["get"]
    assert set(resume["responses"]["200"]["content"]) == {"text/event-stream"}
    assert "204" in resume["responses"]
    assert {(p["name"], p["in"]) for p in resume["parameters"]} >= {("Last-Event-ID", "header")}
    session_log = paths["/v1/agents/sessions/{session_id}/events"]["get"]
    assert set(session_log["responses"]["200"]["content"]) == {"text/event-stream", "application/x-ndjson"}


def test_request_bodies_forbid_unknown_keys() -> None:
    doc = openapi.build()
    schemas = doc["components"]["schemas"]
    for _, path, op in operations(doc):
        if "requestBody" in op:
            name = op["requestBody"]["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
            assert schemas[name]["additionalProperties"] is False, path
