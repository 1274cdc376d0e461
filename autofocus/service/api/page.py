"""The web page at `/` (issue 24), served from the files of `autofocus.service.web`.

The page itself holds no data, so like `/docs` it is served without the API
token; everything it shows comes from the `/v1` API, which asks for the token
when one is set (the page asks the user once and keeps it in the tab's
`sessionStorage`, never in a URL). The browser guard (Host and Origin checks)
covers these paths like every other. A strict Content-Security-Policy lets the
page load from and connect to its own origin only: no CDN, no inline script,
no frames.
"""

from __future__ import annotations

from fastapi import FastAPI, HTTPException
from fastapi.responses import Response

from autofocus.service.web import ASSETS, read_asset

PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
    "X-Frame-Options": "DENY",
}


def _asset_response(name: str) -> Response:
    return Response(read_asset(name), media_type=ASSETS[name], headers=PAGE_HEADERS)


def install_web_page(app: FastAPI) -> None:
    """Serve the page at `/` and its script and style at `/ui/app.js`, `/ui/app.css`."""

    @app.get("/", include_in_schema=False)
    async def index() -> Response:
        return _asset_response("index.html")

    @app.get("/ui/{name}", include_in_schema=False)
    async def asset(name: str) -> Response:
        if name not in ASSETS or name == "index.html":
            raise HTTPException(404, f"no page asset {name!r}")
        return _asset_response(name)
