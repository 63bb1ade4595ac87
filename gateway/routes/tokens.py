"""Stream tokens for browsers: ``POST .../messages/{mid}/stream-token`` and
``POST .../events/stream-token`` (authenticated with the API key as usual; renew the same way).
The send answer carries one for its message in ``X-Stream-Token``."""

from __future__ import annotations

import time

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway import stream_tokens
from gateway.auth import Caller, authenticate
from gateway.context import Services, services
from gateway.routes.sessions import json
from shared.errors import NotFound
from shared.ids import iso


async def mint(svc: Services, caller: Caller, ses_id: str, msg_id: str | None) -> tuple[str, int]:
    """(token, expiry in unix seconds): the configured lifetime, or less if the key expires sooner."""
    exp = int(time.time()) + svc.settings.stream_token_ttl_s
    if caller.principal.expires_ms:
        exp = min(exp, caller.principal.expires_ms // 1000)
    claims = stream_tokens.Claims(kid=caller.principal.key_id, ns=caller.namespace_id, ses=ses_id,
                                  msg=msg_id, exp=exp)
    return stream_tokens.issue(await svc.stream_token_secret(), claims), exp


def _answer(token: str, exp: int) -> Response:
    return json({"token": token, "expires_at": iso(exp * 1000), "expires_in": max(0, exp - int(time.time()))},
                headers={"Cache-Control": "no-store"})


async def message_stream_token(request: Request) -> Response:
    caller = await authenticate(request)
    svc = services(request)
    ses_id, msg_id = request.path_params["session_id"], request.path_params["message_id"]
    await svc.sessions.load(caller.namespace_id, ses_id)
    if not msg_id.startswith("msg_") or await svc.messages.record(ses_id, msg_id) is None:
        raise NotFound("Message not found", code="message_not_found", details={"message_id": msg_id})
    return _answer(*await mint(svc, caller, ses_id, msg_id))


async def session_stream_token(request: Request) -> Response:
    caller = await authenticate(request)
    svc = services(request)
    ses_id = request.path_params["session_id"]
    await svc.sessions.load(caller.namespace_id, ses_id)
    return _answer(*await mint(svc, caller, ses_id, None))


ROUTES = [
    Route("/v1/agents/sessions/{session_id}/messages/{message_id}/stream-token", message_stream_token,
          methods=["POST"]),
    Route("/v1/agents/sessions/{session_id}/events/stream-token", session_stream_token, methods=["POST"]),
]
