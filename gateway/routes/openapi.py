"""``GET /openapi.json``: the document of the routes this app serves (no authentication)."""

from __future__ import annotations

from importlib import metadata

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway import openapi

PATH = "/openapi.json"


async def openapi_json(request: Request) -> Response:
    # Built on the first request, once the app's route list is final, then served as bytes.
    cached: bytes | None = getattr(request.app.state, "openapi_json", None)
    if cached is None:
        served = {(method, route.path) for route in request.app.routes if isinstance(route, Route)
                  for method in route.methods or ()}
        cached = msgspec.json.encode(openapi.build(version=_version(), served=served))
        request.app.state.openapi_json = cached
    return Response(cached, media_type="application/json")


def _version() -> str:
    try:
        return metadata.version("agentstream")
    except metadata.PackageNotFoundError:
        return "0.0.0"


ROUTES = [Route(PATH, openapi_json, methods=["GET"])]
