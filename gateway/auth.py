"""Who is calling and in which namespace.

An API key in ``Authorization: Bearer``, then ``X-Namespace`` or ``?namespace=``. The event-stream
GETs also take a stream token (``gateway/stream_tokens.py``) in ``?access_token=`` (a browser's
``EventSource`` cannot set headers) or as the bearer; the token names its namespace. An API key
in the URL is refused unless ``AGENTSTREAM_ALLOW_KEY_IN_URL`` (old browser apps) allows it.
Every route's scope (``gateway/access.py``) is checked here.
"""

from __future__ import annotations

from dataclasses import dataclass

from starlette.requests import Request

from gateway import access, stream_tokens
from gateway.context import services
from gateway.limits import check_rate
from shared import logs
from shared.errors import Forbidden, Unauthorized
from shared.stores.tenancy import Principal


@dataclass(frozen=True, slots=True)
class Caller:
    principal: Principal
    namespace_id: str


def _is_event_stream(request: Request) -> bool:
    return request.method == "GET" and request.url.path.endswith("/events")


async def authenticate(request: Request) -> Caller:
    svc = services(request)
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    key = value.strip() if scheme.lower() == "bearer" else None
    if _is_event_stream(request):
        if key is None and "access_token" in request.query_params:
            key = request.query_params["access_token"]
            if not stream_tokens.looks_like(key) and not svc.settings.allow_key_in_url:
                raise Unauthorized(
                    "API keys are not accepted in URLs: pass a stream token as ?access_token= (from the "
                    "X-Stream-Token header of the send, or POST .../stream-token), or send the key in "
                    "the Authorization header", code="api_key_in_url", details={"parameter": "access_token"})
        if key is not None and stream_tokens.looks_like(key):
            return await _token_caller(request, key)
    given = request.headers.get("x-namespace") or request.query_params.get("namespace")
    principal = await svc.tenants.authenticate(key, given)
    needed = access.required(request)
    if not access.allows(principal.scope, needed):
        raise Forbidden(f"This API key's scope is {principal.scope!r}; this operation needs {needed!r}",
                        code="insufficient_scope", details={"key_scope": principal.scope, "required_scope": needed})
    await check_rate(svc.redis, svc.settings, principal.key_hash)
    ns_id = await svc.tenants.resolve_namespace(principal, given)
    request.state.key_hash = principal.key_hash
    request.state.principal = principal
    logs.bind(namespace_id=ns_id)
    return Caller(principal, ns_id)


async def _token_caller(request: Request, token: str) -> Caller:
    """A stream token opens exactly the stream it names, while the key that asked for it is valid."""
    svc = services(request)
    try:
        claims = stream_tokens.verify(await svc.stream_token_secret(), token)
    except stream_tokens.TokenError as exc:
        raise Unauthorized(str(exc), code=exc.code, details={"parameter": "access_token"}) from None
    params = request.path_params
    if claims.ses != params.get("session_id") or claims.msg != params.get("message_id"):
        raise Unauthorized("This stream token is for another event stream", code="stream_token_mismatch",
                           details={"parameter": "access_token"})
    principal = await svc.tenants.authenticate_id(claims.kid)
    given = request.headers.get("x-namespace") or request.query_params.get("namespace")
    if claims.ns not in principal.namespaces or (
            given and await svc.tenants.resolve_namespace(principal, given) != claims.ns):
        raise Unauthorized("This stream token is for another namespace", code="stream_token_mismatch",
                           details={"parameter": "access_token"})
    await check_rate(svc.redis, svc.settings, principal.key_hash)
    request.state.key_hash = principal.key_hash
    request.state.principal = principal
    logs.bind(namespace_id=claims.ns)
    return Caller(principal, claims.ns)
