"""The HTTP API (v1) of the autofocus daemon: `create_app(settings) -> FastAPI`."""

from autofocus.service.api.app import create_app

__all__ = ["create_app"]
