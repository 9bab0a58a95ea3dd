"""The dashboard pages and their static files: plain HTML, CSS and JavaScript, no build step.

The page holds no data of its own: it signs in through /api/session and reads the API with its
cookie. Every file goes out with a Content-Security-Policy that allows only this origin's
scripts and styles (nothing inline), and may not be framed.
"""

from pathlib import Path
from typing import Final

from aiohttp import web

from service.errors import NotFound
from service.openapi import Auth, Media, describe

routes = web.RouteTableDef()

STATIC_DIR: Final = Path(__file__).resolve().parent.parent / "static"
_TYPES: Final = {
    ".html": "text/html",
    ".css": "text/css",
    ".js": "text/javascript",
    ".svg": "image/svg+xml",
}
CSP: Final = "; ".join(
    (
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self'",
        "connect-src 'self'",
        "form-action 'self'",
        "base-uri 'none'",
        "frame-ancestors 'none'",
    )
)
SECURITY_HEADERS: Final = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
}


def _load_static() -> dict[str, tuple[bytes, str]]:
    """The files that may be served, read once: only those of a known type, directly in static/."""
    return {
        path.name: (path.read_bytes(), _TYPES[path.suffix])
        for path in sorted(STATIC_DIR.iterdir())
        if path.is_file() and path.suffix in _TYPES
    }


_FILES: Final = _load_static()


def _file_response(name: str, cache: str) -> web.Response:
    found = _FILES.get(name)
    if found is None:
        raise NotFound("no such file", code="not_found")
    body, content_type = found
    headers = {**SECURITY_HEADERS, "Cache-Control": cache}
    return web.Response(body=body, content_type=content_type, charset="utf-8", headers=headers)


@routes.get("/variables")
@describe(
    "The Variables page (Backend Secrets and Frontend (Build) tabs)",
    auth=Auth.PUBLIC,
    responses={200: Media("text/html")},
)
async def variables_page(request: web.Request) -> web.Response:
    return _file_response("variables.html", "no-store")


@routes.get("/credentials")
@describe(
    "The Credentials page (Build → Credentials): typed provider keys, write-only",
    auth=Auth.PUBLIC,
    responses={200: Media("text/html")},
)
async def credentials_page(request: web.Request) -> web.Response:
    return _file_response("credentials.html", "no-store")


@routes.get("/static/{file}")
@describe("A static file of the dashboard pages", auth=Auth.PUBLIC, responses={200: Media("*/*")})
async def static_file(request: web.Request) -> web.Response:
    return _file_response(request.match_info["file"], "no-cache")
