"""What the SDK compatibility tests share: the SDK client, SSE as the SDK hands it over, the
reference's event catalogue and small call helpers. The fixtures are in ``conftest.py``."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import mixpeek
from mixpeek import (
    AgentConfig,
    ApiException,
    CreateSessionRequest,
    CreateSessionResponse,
    ErrorResponse,
    SendMessageRequest,
)

from cli.demo_data import seed_demo
from dataplane.service import DataPlane
from shared import connect
from tests.stack import ROOT, Stack

SSE_TIMEOUT_S = 30.0
TERMINAL = {"done", "error"}
# the generated methods' response map for errors (identical for all 11 operations)
ERROR_TYPES = {str(status): "ErrorResponse" for status in (400, 401, 403, 404, 422, 429, 500, 503)}
HAS_CONFIRMATIONS = (ROOT / "gateway" / "routes" / "confirmations.py").exists()


# The SDK client


@contextmanager
def sdk_client(url: str, key: str | None, namespace: str | None) -> Iterator[mixpeek.AgentSessionsApi]:
    cfg = mixpeek.Configuration(host=url, access_token=key,
                                api_key={"NamespaceHeader": namespace} if namespace else {})
    client = mixpeek.ApiClient(cfg)
    try:
        yield mixpeek.AgentSessionsApi(client)
    finally:
        # urllib3 keeps sockets pooled; close them here rather than in a finaliser (ResourceWarning)
        client.rest_client.pool_manager.clear()


def seed(stack: Stack, ns_id: str) -> None:
    async def go() -> None:
        redis = connect.client(stack.redis_url)
        try:
            await seed_demo(DataPlane(redis), ns_id)
        finally:
            await redis.aclose()

    asyncio.run(go())


def raw_call(api: mixpeek.AgentSessionsApi, method: str, path: str, body: Any = None,
             content_type: str | None = "application/json",
             types: dict[str, str] | None = None) -> mixpeek.ApiResponse:
    """A request the typed methods would refuse to build (client-side validation), sent through
    the SDK's own transport, auth and error mapping."""
    client = api.api_client
    headers = {"Accept": "application/json"}
    if content_type:
        headers["Content-Type"] = content_type
    params = client.param_serialize(method=method, resource_path=path, header_params=headers, body=body,
                                    auth_settings=["NamespaceHeader", "BearerAuth"])
    response = client.call_api(*params, _request_timeout=SSE_TIMEOUT_S)
    response.read()
    return client.response_deserialize(response, {**ERROR_TYPES, **(types or {})})


def header(resp: mixpeek.ApiResponse, name: str) -> str | None:
    """ApiResponse.headers is a plain dict (not case-insensitive): look the name up in any case."""
    assert resp.headers is not None
    return next((str(v) for k, v in resp.headers.items() if k.lower() == name.lower()), None)


def content_type(resp: mixpeek.ApiResponse) -> str:
    return (header(resp, "Content-Type") or "").split(";")[0].strip()


def new_session(api: mixpeek.AgentSessionsApi, **kw: Any) -> CreateSessionResponse:
    return api.create_session_agents(CreateSessionRequest(agent_config=kw.pop("agent_config", AgentConfig()), **kw))


# SSE as the SDK hands it over: one str


@dataclass(frozen=True)
class Sse:
    id: str | None
    event: str
    data: dict[str, Any]


def parse_sse(text: str) -> list[Sse]:
    out: list[Sse] = []
    for block in re.split(r"\r\n\r\n|\n\n|\r\r", text):
        eid, event, data = None, "message", []
        for line in re.split(r"\r\n|\r|\n", block):
            if not line or line.startswith(":"):
                continue
            name, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if name == "id":
                eid = value
            elif name == "event":
                event = value
            elif name == "data":
                data.append(value)
        if data:
            out.append(Sse(eid, event, json.loads("\n".join(data))))
    return out


def id_tuple(eid: str | None) -> tuple[int, int]:
    assert eid is not None and re.fullmatch(r"\d+-\d+", eid), eid
    ms, seq = eid.split("-")
    return int(ms), int(seq)


# the payload keys the reference's SSE catalogue names (§4); extra keys are allowed
EVENT_KEYS = {
    "intent": {"intent", "confidence", "category", "reasoning", "context_scope"},
    "thinking": {"step", "message"},
    "tool_call": {"tool_name", "tool_call_id", "inputs"},
    "tool_result": {"tool_name", "tool_call_id", "success", "output", "latency_ms"},
    "token": {"content"},
    "message": {"content", "message_id", "is_final"},
    "session_name": {"session_name"},
    "done": {"latency_ms", "tool_calls_made", "message_id", "retriever_summary", "data_accessed_via_retriever"},
    "error": {"message", "recoverable"},
    "retriever_execution": {"tool_name", "execution_id", "retriever_id", "is_adhoc", "documents_returned",
                            "latency_ms", "message"},
    "pipeline_config": {"tool_name", "config", "message"},
    "confirmation_required": {"confirmation_id"},
}


def check_stream(events: list[Sse]) -> dict[str, Sse]:
    """The invariants every completed message stream holds. Returns the last event of each type."""
    for e in events:
        assert e.event in EVENT_KEYS, e
        assert EVENT_KEYS[e.event] <= set(e.data), e
    ids = [id_tuple(e.id) for e in events]
    assert all(a < b for a, b in zip(ids, ids[1:], strict=False)), f"ids not strictly increasing: {ids}"
    terminals = [i for i, e in enumerate(events) if e.event in TERMINAL]
    assert terminals == [len(events) - 1], [e.event for e in events]
    assert events[-1].event == "done", events[-1]
    by_type = {e.event: e for e in events}
    tokens = "".join(e.data["content"] for e in events if e.event == "token")
    assert by_type["message"].data["content"] == tokens
    assert by_type["message"].data["is_final"] is True
    assert by_type["message"].data["message_id"] == by_type["done"].data["message_id"]
    assert events[0].event == "intent"
    return by_type


def stream(api: mixpeek.AgentSessionsApi, ses_id: str, content: str) -> tuple[mixpeek.ApiResponse, list[Sse]]:
    resp = api.send_message_agents_sessions_with_http_info(
        ses_id, SendMessageRequest(content=content, metadata={"client": "sdk-compat"}),
        _request_timeout=SSE_TIMEOUT_S)
    assert resp.status_code == 200
    assert content_type(resp) == "text/event-stream"
    assert isinstance(resp.data, str)
    return resp, parse_sse(resp.data)


def error_of(exc: ApiException, status: int) -> ErrorResponse:
    assert exc.status == status, (exc.status, exc.body)
    assert isinstance(exc.data, ErrorResponse), exc.body
    assert exc.data.status == status and exc.data.success is False
    assert exc.data.error.message and exc.data.error.type
    return exc.data
