"""The web console: static files from ``gateway/console/`` at ``/console/``, and ``/`` sends
browsers there. No build step and no CDN: plain ES modules, one stylesheet, and the JavaScript
client (``clients/js/agentstream.js``) at ``/console/agentstream.js``.

Every answer carries a strict Content-Security-Policy: scripts and styles from this origin only
(no inline script or style), requests to this origin only, no frames, no plugins; with the
console rendering every payload as text, a document titled ``<img src=x onerror=...>`` stays text.
"""

from __future__ import annotations

from pathlib import Path

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Mount, Route

from shared.errors import NotFound

CONSOLE_DIR = Path(__file__).resolve().parent.parent / "console"
# The client lives with the other clients; in a checkout (and the image) it is two levels up.
CLIENT_JS = Path(__file__).resolve().parents[2] / "clients" / "js" / "agentstream.js"

CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-cache",
}
_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
          ".css": "text/css; charset=utf-8", ".svg": "image/svg+xml", ".png": "image/png"}


def _file(name: str) -> Path:
    """Only plain file names of known types in the console directory (no paths, no dotfiles)."""
    if name == "agentstream.js":
        return CLIENT_JS
    if "/" in name or "\\" in name or name.startswith(".") or Path(name).suffix not in _TYPES:
        raise NotFound("No such console file", code="route_not_found")
    return CONSOLE_DIR / name


async def console_file(request: Request) -> Response:
    name = request.path_params.get("file") or "index.html"
    path = _file(name)
    try:
        body = path.read_bytes()
    except (FileNotFoundError, IsADirectoryError):
        raise NotFound("No such console file", code="route_not_found") from None
    return Response(body, media_type=_TYPES[path.suffix], headers=HEADERS)


async def home(request: Request) -> Response:
    return RedirectResponse("/console/", status_code=307)


ROUTES = [
    Route("/", home, methods=["GET"]),
    Mount("/console", routes=[
        Route("/", console_file, methods=["GET"]),
        Route("/{file}", console_file, methods=["GET"]),
    ]),
]
