"""Pure-ASGI middleware: request ids, body size limit, request metrics and the access log.

Pure ASGI (not `BaseHTTPMiddleware`) so server-sent event streams pass
through untouched and the per-request cost stays small under polling load.
"""

from __future__ import annotations

import re
import time
import uuid
from typing import Any

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from autofocus.logging import get_logger
from autofocus.service.api.guards import UPLOAD_PATHS
from autofocus.service.api.problems import PayloadTooLarge, send_problem
from autofocus.service.metrics import Metrics

log = get_logger("autofocus.http")

_REQUEST_ID_OK = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
# An oversized body announced by Content-Length is read and discarded up to this many
# extra bytes before answering 413, so an ordinary client sees the answer instead of a
# reset connection; anything bigger is answered at once.
_DRAIN_LIMIT_BYTES = 64 * 1024 * 1024


class RequestContextMiddleware:
    """Assign `X-Request-ID`, enforce the body limits, count and log every request.

    Uploads (`UPLOAD_PATHS`) may carry up to `max_upload_bytes`; every other
    request (JSON) at most `max_json_bytes`, so a huge JSON document is refused
    before it is parsed (memory, event-loop time).
    """

    def __init__(
        self, app: ASGIApp, *, max_upload_bytes: int, max_json_bytes: int, metrics: Metrics
    ) -> None:
        self.app = app
        self.max_upload_bytes = max_upload_bytes
        self.max_json_bytes = max_json_bytes
        self.metrics = metrics

    def _limit(self, scope: Scope) -> tuple[int, str]:
        if scope.get("path", "") in UPLOAD_PATHS:
            return self.max_upload_bytes, "max_upload_mb"
        return self.max_json_bytes, "max_json_kb"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        given = headers.get("x-request-id", "")
        request_id = given if _REQUEST_ID_OK.match(given) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        status_holder: dict[str, Any] = {"status": 500}

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                status_holder["status"] = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [
                    *message["headers"],
                    (b"x-request-id", request_id.encode()),
                ]
            await send(message)

        structlog.contextvars.bind_contextvars(request_id=request_id)
        try:
            limit, setting = self._limit(scope)
            length = _content_length(headers)
            if length is not None and length > limit:
                await self._reject_too_large(scope, receive, send_wrapper, length, limit, setting)
                return
            await self.app(scope, self._limited(receive, limit, setting), send_wrapper)
        finally:
            status = status_holder["status"]
            elapsed_ms = (time.perf_counter() - t0) * 1000.0
            method = scope.get("method", "")
            self.metrics.http_requests.inc(labels={"method": method, "status": str(status)})
            level = log.debug if method == "GET" and status < 400 else log.info
            level(
                "http.request",
                method=method,
                path=scope.get("path", ""),
                status=status,
                elapsed_ms=round(elapsed_ms, 2),
            )
            structlog.contextvars.unbind_contextvars("request_id")

    def _limited(self, receive: Receive, limit: int, setting: str) -> Receive:
        seen = 0

        async def wrapped() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise PayloadTooLarge(_too_large_text(limit, setting))
            return message

        return wrapped

    async def _reject_too_large(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        length: int,
        limit: int,
        setting: str,
    ) -> None:
        if length <= limit + _DRAIN_LIMIT_BYTES:
            more = True
            while more:
                message = await receive()
                if message["type"] != "http.request":
                    break
                more = message.get("more_body", False)
        await send_problem(
            scope, send, 413, "http-413", "Request body too large", _too_large_text(limit, setting)
        )


def _content_length(headers: dict[str, str]) -> int | None:
    try:
        return int(headers["content-length"])
    except (KeyError, ValueError):
        return None


def _too_large_text(limit: int, setting: str) -> str:
    return f"the request body exceeds the limit of {format_bytes(limit)} ({setting})"


def format_bytes(n: int) -> str:
    """`n` bytes in binary units as people write them: 512 B, 64 KiB, 1.5 MiB, 64 MiB."""
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.4g} {unit}"
        value /= 1024
    raise AssertionError("unreachable")
