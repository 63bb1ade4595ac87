"""Who is calling and in which namespace: Bearer key, then ``X-Namespace`` or ``?namespace=``."""

from __future__ import annotations

from dataclasses import dataclass

from starlette.requests import Request

from gateway.context import services
from gateway.limits import check_rate
from shared import logs
from shared.stores.tenancy import Principal


@dataclass(frozen=True, slots=True)
class Caller:
    principal: Principal
    namespace_id: str


async def authenticate(request: Request) -> Caller:
    svc = services(request)
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    key = token.strip() if scheme.lower() == "bearer" else None
    if key is None and request.method == "GET" and request.url.path.endswith("/events"):
        # A browser EventSource cannot set headers; event streams alone also take the key as
        # ?access_token= (the access log is off so it is not written down).
        key = request.query_params.get("access_token")
    principal = await svc.tenants.authenticate(key)
    await check_rate(svc.redis, svc.settings, principal.key_hash)
    given = request.headers.get("x-namespace") or request.query_params.get("namespace")
    ns_id = await svc.tenants.resolve_namespace(principal, given)
    request.state.key_hash = principal.key_hash
    logs.bind(namespace_id=ns_id)
    return Caller(principal, ns_id)
