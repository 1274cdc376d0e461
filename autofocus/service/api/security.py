"""Bearer-token authentication and the rule that a daemon off loopback needs a token."""

from __future__ import annotations

import hmac
import ipaddress

from fastapi import Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from autofocus.service.api.problems import Unauthorized
from autofocus.settings import Settings

_bearer = HTTPBearer(auto_error=False, description="`Authorization: Bearer <api_token>`")


class InsecureBindError(ValueError):
    """Refusing to listen on a non-loopback address without an API token."""


def is_loopback_host(host: str) -> bool:
    """True for `localhost` and loopback IP addresses (127.0.0.0/8, ::1)."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name or wildcard other than localhost may be reachable


def check_bind_allowed(settings: Settings) -> None:
    """Raise `InsecureBindError` when `settings.host` is not loopback and no token is set."""
    if not is_loopback_host(settings.host) and not settings.api_token:
        raise InsecureBindError(
            f"refusing to listen on {settings.host}: it is reachable from other machines and "
            "no api_token is configured (set AUTOFOCUS_API_TOKEN or api_token in the "
            "config file, or listen on 127.0.0.1)"
        )


def token_matches(expected: str, given: str) -> bool:
    """Constant-time comparison of two tokens."""
    return hmac.compare_digest(expected.encode("utf-8"), given.encode("utf-8"))


async def require_token(
    request: Request,
    credentials: HTTPAuthorizationCredentials | None = Security(_bearer),
) -> None:
    """FastAPI dependency: pass when no token is configured or the bearer token matches."""
    expected: str | None = request.app.state.settings.api_token
    if not expected:
        return
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise Unauthorized("this endpoint needs an `Authorization: Bearer <token>` header")
    if not token_matches(expected, credentials.credentials):
        raise Unauthorized("the bearer token is not valid")
