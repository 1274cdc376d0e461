"""`/docs` (Swagger UI) and `/redoc` (ReDoc) served from installed files, never a CDN.

A microscope PC is often offline; FastAPI's default pages load their scripts,
styles, favicon and fonts from public hosts and render blank there. The
assets come from the `fastapi-offline` package (MIT; Swagger UI and ReDoc
bundles in its `static/` folder), mounted at `/docs-assets`; the HTML names
no external host (no Google Fonts either). Like `/healthz`, these pages stay
open when an API token is configured: they show the schema, not data.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

ASSETS_URL = "/docs-assets"
"""Where the Swagger UI / ReDoc bundles are served."""


def assets_dir() -> Path:
    """The folder of the installed Swagger UI and ReDoc bundles (package `fastapi_offline`)."""
    return Path(str(resources.files("fastapi_offline") / "static"))


def install_offline_docs(app: FastAPI) -> None:
    """Add `/docs` and `/redoc` to `app` (built with `docs_url=None, redoc_url=None`).

    Raises `ModuleNotFoundError` when `fastapi-offline` is not installed (it is a
    runtime dependency of the package).
    """
    app.mount(ASSETS_URL, StaticFiles(directory=assets_dir()), name="docs-assets")
    openapi_url = app.openapi_url or "/openapi.json"

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_swagger_ui_html(
            openapi_url=f"{root}{openapi_url}",
            title=f"{app.title} — API (Swagger UI)",
            swagger_js_url=f"{root}{ASSETS_URL}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{ASSETS_URL}/swagger-ui.css",
            swagger_favicon_url=f"{root}{ASSETS_URL}/favicon.png",
            swagger_ui_parameters=app.swagger_ui_parameters,
        )

    @app.get("/redoc", include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_redoc_html(
            openapi_url=f"{root}{openapi_url}",
            title=f"{app.title} — API (ReDoc)",
            redoc_js_url=f"{root}{ASSETS_URL}/redoc.standalone.js",
            redoc_favicon_url=f"{root}{ASSETS_URL}/favicon.png",
            with_google_fonts=False,
        )


__all__ = ["ASSETS_URL", "assets_dir", "install_offline_docs"]
