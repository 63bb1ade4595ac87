"""What each route needs from an API key: ``public`` (no key), ``read`` or ``full``.

A ``read`` key may list, get and stream (and ask for stream tokens, and run searches, which
change nothing); anything that sends, writes or deletes needs ``full``. Every route the app
serves is named here: a route missing from the table needs ``full`` (fail closed), and
``tests/gateway/test_scopes.py`` walks the app's route table so a new route cannot go
undeclared.
"""

from __future__ import annotations

from starlette.requests import Request

from shared.stores.tenancy import FULL, READ

PUBLIC = "public"

_S = "/v1/agents/sessions"
_M = _S + "/{session_id}/messages/{message_id}"
_C = "/v1/collections/{collection_identifier}"

ROUTE_SCOPES: dict[tuple[str, str], str] = {
    ("GET", "/healthz"): PUBLIC,
    ("GET", "/readyz"): PUBLIC,
    ("GET", "/openapi.json"): PUBLIC,
    ("GET", "/"): PUBLIC,
    ("GET", "/console/"): PUBLIC,
    ("GET", "/console/{file}"): PUBLIC,
    # agent sessions
    ("POST", _S): FULL,
    ("POST", _S + "/list"): READ,
    ("GET", _S + "/tools"): READ,
    ("GET", "/v1/agents/tools"): READ,
    ("POST", _S + "/intent/detect"): READ,
    ("POST", "/v1/agents/intent/detect"): READ,
    ("GET", _S + "/{session_id}"): READ,
    ("PATCH", _S + "/{session_id}"): FULL,
    ("DELETE", _S + "/{session_id}"): FULL,
    ("GET", _S + "/{session_id}/history"): READ,
    ("POST", _S + "/{session_id}/feedback"): FULL,
    ("POST", _S + "/{session_id}/messages"): FULL,
    ("GET", _M + "/events"): READ,
    ("POST", _M + "/cancel"): FULL,
    ("POST", _M + "/stream-token"): READ,
    ("GET", _S + "/{session_id}/events"): READ,
    ("POST", _S + "/{session_id}/events/stream-token"): READ,
    ("POST", _S + "/{session_id}/confirmations/{confirmation_id}"): FULL,
    # data plane
    ("POST", "/v1/collections"): FULL,
    ("POST", "/v1/collections/list"): READ,
    ("GET", _C): READ,
    ("DELETE", _C): FULL,
    ("POST", _C + "/documents"): FULL,
    ("POST", _C + "/documents/batch"): FULL,
    ("GET", _C + "/documents/count"): READ,
    ("GET", _C + "/documents/{document_id}"): READ,
    ("DELETE", _C + "/documents/{document_id}"): FULL,
    ("POST", "/v1/retrievers"): FULL,
    ("POST", "/v1/retrievers/list"): READ,
    ("POST", "/v1/retrievers/execute"): READ,
    ("GET", "/v1/retrievers/{retriever_id}"): READ,
    ("DELETE", "/v1/retrievers/{retriever_id}"): FULL,
    ("POST", "/v1/retrievers/{retriever_id}/execute"): READ,
}


def required(request: Request) -> str:
    """The scope the matched route needs; ``full`` for anything not in the table."""
    route = request.scope.get("route")
    method = "GET" if request.method == "HEAD" else request.method
    return ROUTE_SCOPES.get((method, getattr(route, "path", "")), FULL)


def allows(key_scope: str, needed: str) -> bool:
    return needed == PUBLIC or key_scope == FULL or (key_scope == READ and needed == READ)
