"""The dashboard (API.md E): a page at ``GET /dashboard`` and its own script and style sheet,
served from the files beside this module (nothing from another site: it works with no internet).

The page is public, as ``/docs`` is; the data it shows comes from the API, which the page calls
with the key its user types in (or none, in open mode). It is not an API operation, so it is not
in the route table nor in the OpenAPI document. Its answers carry a Content-Security-Policy that
lets the page load and connect to its own origin only, run no inline script and no inline style.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, Response
from starlette.routing import Route as StarletteRoute

DASHBOARD_PATH = "/dashboard"
FILES = Path(__file__).resolve().parent
#: The page's own files, by name, with their media types (a module script must be JavaScript).
ASSETS = {
    "dashboard.css": "text/css",
    "dashboard.js": "text/javascript",
    "api.js": "text/javascript",
    "render.js": "text/javascript",
    "retry.js": "text/javascript",
}
#: Self only: the page's own scripts, styles and API calls; no inline code, frames or plugins.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
HEADERS = {"Content-Security-Policy": CONTENT_SECURITY_POLICY, "Referrer-Policy": "no-referrer"}
ROOT = "{{root}}"


def dashboard_routes() -> list[StarletteRoute]:
    """``GET /dashboard`` and its files under ``/dashboard/``, public."""
    page = (FILES / "index.html").read_text(encoding="utf-8")

    async def serve_page(request: Request) -> Response:
        # Under a sub-path mount (``root_path``) the page names its files below it.
        root = request.scope.get("root_path", "")
        return HTMLResponse(page.replace(ROOT, root), headers=HEADERS)

    return [
        StarletteRoute(DASHBOARD_PATH, serve_page, methods=["GET"], include_in_schema=False),
        *(
            StarletteRoute(
                f"{DASHBOARD_PATH}/{name}", _asset(name, media_type), methods=["GET"], include_in_schema=False
            )
            for name, media_type in ASSETS.items()
        ),
    ]


def _asset(name: str, media_type: str) -> Callable[[Request], Awaitable[Response]]:
    path = FILES / name

    async def serve(_request: Request) -> Response:
        return FileResponse(path, media_type=media_type, headers=HEADERS)

    return serve
