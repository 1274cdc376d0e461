"""The daemon's web page for the person at the microscope, served at `/` from installed files.

Plain HTML, CSS and JavaScript in `static/` (package data): no CDN, no fonts
from elsewhere, works offline. The page itself holds no data, so like `/docs`
it is served without the API token; everything it shows comes from the `/v1`
API, which asks for the token when one is set (the page asks the user once and
keeps it in the tab's `sessionStorage`, never in a URL). A strict
Content-Security-Policy lets the page load and connect to its own origin only.
"""

from __future__ import annotations

from importlib import resources

from fastapi import FastAPI, HTTPException
from fastapi.responses import Response

PAGE_HEADERS = {
    # Only this origin: scripts, styles, fetches; no frames, no inline script.
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
    "X-Frame-Options": "DENY",
}
ASSETS: dict[str, str] = {
    "app.js": "text/javascript; charset=utf-8",
    "app.css": "text/css; charset=utf-8",
}
"""Files of `static/` served under `/ui/`, with their media types (nothing else is)."""


def read_asset(name: str) -> bytes:
    """The bytes of the installed file `static/<name>`; `FileNotFoundError` if absent."""
    return (resources.files(__package__) / "static" / name).read_bytes()


def install_web_page(app: FastAPI) -> None:
    """Serve the page at `/` and its script and style at `/ui/app.js`, `/ui/app.css`."""

    @app.get("/", include_in_schema=False)
    async def index() -> Response:
        return Response(read_asset("index.html"), media_type="text/html; charset=utf-8",
                        headers=PAGE_HEADERS)

    @app.get("/ui/{name}", include_in_schema=False)
    async def asset(name: str) -> Response:
        if name not in ASSETS:
            raise HTTPException(404, f"no page asset {name!r}")
        return Response(read_asset(name), media_type=ASSETS[name], headers=PAGE_HEADERS)
