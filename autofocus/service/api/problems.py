"""RFC 9457 problem details: one exception handler maps every typed error to a response.

Errors raised anywhere below a route (the job manager, the focus validation,
image decoding, authentication) are turned into `application/problem+json`
with `type`, `title`, `status`, `detail` and `instance`, plus `error_type`
and `request_id` extensions. Unknown exceptions become a 500 that says
nothing about internals (the traceback goes to the log).
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from autofocus.errors import (
    AutofocusError,
    ImageError,
    LimitError,
    MicroscopeError,
    ModelError,
    UnknownNameError,
)
from autofocus.logging import get_logger
from autofocus.service.api.images import (
    ByteBudgetExceeded,
    DecodeOutOfMemory,
    PixelBudgetExceeded,
    ScoreMemoryBusy,
)
from autofocus.service.jobs.manager import (
    IdempotencyConflict,
    InvalidRequest,
    JobNotFound,
    NotReady,
    QueueFull,
)
from autofocus.service.jobs.models import to_jsonable

log = get_logger("autofocus.service.api")

PROBLEM_MEDIA_TYPE = "application/problem+json"
_TYPE_BASE = "urn:autofocus:problem:"


class ProblemResponse(JSONResponse):
    """A JSON response with the problem+json media type."""

    media_type = PROBLEM_MEDIA_TYPE


class Unauthorized(Exception):
    """Missing or wrong bearer token (HTTP 401)."""


class TooManyAuthFailures(Exception):
    """A client failed authentication too often; it must wait `retry_after_s` (HTTP 429)."""

    def __init__(self, message: str, *, retry_after_s: float) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class PayloadTooLarge(StarletteHTTPException):
    """The request body exceeds `max_upload_mb` (HTTP 413)."""

    def __init__(self, detail: str) -> None:
        super().__init__(413, detail)


# (exception type, status, problem slug, title). Checked in order: put subclasses first.
ERROR_MAP: tuple[tuple[type[BaseException], int, str, str], ...] = (
    (Unauthorized, 401, "unauthorized", "Authentication required"),
    (TooManyAuthFailures, 429, "too-many-auth-failures", "Too many authentication failures"),
    (JobNotFound, 404, "job-not-found", "Job not found"),
    (QueueFull, 429, "queue-full", "Job queue full"),
    (IdempotencyConflict, 422, "idempotency-key-reused", "Idempotency key reused"),
    (NotReady, 503, "not-ready", "Microscope not ready"),
    (ByteBudgetExceeded, 413, "too-much-memory", "Uploads too large to decode"),
    (PixelBudgetExceeded, 413, "too-many-pixels", "Too many pixels"),
    (ScoreMemoryBusy, 503, "score-memory-busy", "Scoring memory busy"),
    (DecodeOutOfMemory, 503, "out-of-memory", "Out of memory"),
    (LimitError, 422, "outside-z-limits", "Outside the Z limits"),
    (UnknownNameError, 422, "unknown-name", "Unknown name"),
    (ImageError, 422, "unusable-image", "Unusable image"),
    (InvalidRequest, 422, "invalid-request", "Invalid request"),
    (ModelError, 503, "model-error", "Focus model unavailable"),
    (MicroscopeError, 503, "microscope-error", "Microscope error"),
    (AutofocusError, 422, "autofocus-error", "Autofocus error"),
)

_HTTP_TITLES = {
    400: "Bad request",
    401: "Authentication required",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    406: "Not acceptable",
    413: "Request body too large",
    415: "Unsupported media type",
    421: "Host not allowed",
    422: "Invalid request",
    429: "Too many requests",
    500: "Internal server error",
    503: "Service unavailable",
}


def problem_body(
    status: int,
    slug: str,
    title: str,
    detail: str | None,
    *,
    instance: str | None = None,
    request_id: str | None = None,
) -> dict[str, Any]:
    """The RFC 9457 body: `type` (from `slug`), `title`, `status`, `detail`, then `instance`
    when given and `request_id` when known."""
    body: dict[str, Any] = {
        "type": _TYPE_BASE + slug,
        "title": title,
        "status": status,
        "detail": detail,
    }
    if instance is not None:
        body["instance"] = instance
    if request_id:
        body["request_id"] = request_id
    return body


async def send_problem(
    scope: Any,
    send: Any,
    status: int,
    slug: str,
    title: str,
    detail: str,
    headers: list[tuple[bytes, bytes]] | None = None,
) -> None:
    """Send a problem+json answer straight from ASGI middleware (no route involved)."""
    body = problem_body(
        status, slug, title, detail,
        instance=scope.get("path", ""), request_id=scope.get("state", {}).get("request_id"),
    )
    data = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", PROBLEM_MEDIA_TYPE.encode()),
                (b"content-length", str(len(data)).encode()),
                *(headers or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": data})


def problem_response(
    request: Request,
    status: int,
    slug: str,
    title: str,
    detail: str | None,
    *,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> ProblemResponse:
    """Build a problem+json response for `request`."""
    body = problem_body(
        status, slug, title, detail,
        instance=request.url.path, request_id=getattr(request.state, "request_id", None),
    )
    body.update(extra)
    return ProblemResponse(to_jsonable(body), status_code=status, headers=headers)


async def handle_exception(request: Request, exc: Exception) -> ProblemResponse:
    """The one exception handler: typed errors, validation errors, HTTP errors, the rest."""
    if isinstance(exc, RequestValidationError):
        # security.token_refusal, set by create_app (security imports this module).
        check = getattr(request.app.state, "token_refusal", None)
        refusal = check(request) if check is not None else None
        if refusal is not None:  # the body was refused before the token was checked
            return await handle_exception(request, refusal)
        errors = [
            {
                "loc": list(e.get("loc", ())),
                "msg": e.get("msg", ""),
                "type": e.get("type", ""),
            }
            for e in exc.errors()
        ]
        detail = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in errors[:5])
        return problem_response(
            request, 422, "validation-error", "Invalid request", detail, errors=errors
        )
    for exc_type, status, slug, title in ERROR_MAP:
        if isinstance(exc, exc_type):
            headers: dict[str, str] = {}
            if status == 401:
                headers["WWW-Authenticate"] = 'Bearer realm="autofocus"'
            if status in (429, 503):
                retry_s = getattr(exc, "retry_after_s", 1.0)
                headers["Retry-After"] = str(max(1, math.ceil(retry_s)))
            return problem_response(
                request,
                status,
                slug,
                title,
                str(exc) or title,
                headers=headers,
                error_type=type(exc).__name__,
            )
    if isinstance(exc, StarletteHTTPException):
        slug = "http-" + str(exc.status_code)
        title = _HTTP_TITLES.get(exc.status_code, "HTTP error")
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            # Starlette names only the first route that matched the path; a path served by
            # several routes (GET and DELETE /v1/jobs/{id}) allows all their methods.
            headers["Allow"] = ", ".join(_allowed_methods(request)) or headers.get("Allow", "")
        return problem_response(
            request,
            exc.status_code,
            slug,
            title,
            str(exc.detail) if exc.detail is not None else title,
            headers=headers,
        )
    log.error("http.internal_error", error=str(exc), error_type=type(exc).__name__, exc_info=exc)
    return problem_response(
        request,
        500,
        "internal-error",
        "Internal server error",
        "the autofocus service hit an unexpected error; the log has the details",
    )


def _allowed_methods(request: Request) -> list[str]:
    """Every method some route serves at the request's path, read from the OpenAPI paths
    (stable across FastAPI versions, unlike its internal route objects)."""
    path = request.url.path
    methods: set[str] = set()
    for template, item in request.app.openapi().get("paths", {}).items():
        pattern = "^" + re.sub(r"\\{[^/]+?\\}", "[^/]+", re.escape(template)) + "$"
        if re.match(pattern, path):
            methods |= {m.upper() for m in item if m.upper() in _METHOD_ORDER}
    if "GET" in methods:
        methods.add("HEAD")
    return sorted(methods, key=_METHOD_ORDER.index)


_METHOD_ORDER = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


def install_problem_handlers(app: FastAPI) -> None:
    """Route every mapped exception type, validation and HTTP errors, and the rest to
    `handle_exception`."""
    for exc_type, *_ in ERROR_MAP:
        app.add_exception_handler(exc_type, handle_exception)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, handle_exception)  # type: ignore[arg-type]
    app.add_exception_handler(StarletteHTTPException, handle_exception)  # type: ignore[arg-type]
    app.add_exception_handler(Exception, handle_exception)
