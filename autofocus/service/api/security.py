"""Bearer-token authentication, its per-client back-off, and the rule that a daemon off
loopback needs a token."""

from __future__ import annotations

import hmac
import ipaddress
import math
import threading
import time
from collections import OrderedDict

from fastapi import Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from autofocus.service.api.problems import TooManyAuthFailures, Unauthorized
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


class AuthThrottle:
    """Per-client back-off on authentication failures (guessing the token).

    A failure is a wrong bearer token (a missing header is not a guess). A
    client (by address) may fail `free_failures` times within `window_s`;
    every further failure locks it out for twice as long as the one before
    (1 s, 2 s, 4 s, … at most `max_lock_s`), during which it is answered 429
    with `Retry-After`, even with the right token. A success clears its record.
    At most `max_clients` addresses are remembered (the oldest are forgotten).
    """

    def __init__(
        self,
        *,
        free_failures: int = 10,
        window_s: float = 60.0,
        max_lock_s: float = 60.0,
        max_clients: int = 10_000,
    ) -> None:
        self.free_failures = free_failures
        self.window_s = window_s
        self.max_lock_s = max_lock_s
        self.max_clients = max_clients
        self._clients: OrderedDict[str, list[float]] = OrderedDict()  # [failures, first, until]
        self._lock = threading.Lock()

    def locked_for_s(self, client: str, now_s: float | None = None) -> float:
        """Seconds `client` must still wait (0 when it may try)."""
        now = time.monotonic() if now_s is None else now_s
        with self._lock:
            entry = self._clients.get(client)
            return max(0.0, entry[2] - now) if entry else 0.0

    def failure(self, client: str, now_s: float | None = None) -> None:
        """Count a failed attempt of `client` (and lock it out past the free ones)."""
        now = time.monotonic() if now_s is None else now_s
        with self._lock:
            entry = self._clients.pop(client, None)
            if entry is None or now - entry[1] > self.window_s and entry[2] <= now:
                entry = [0.0, now, 0.0]
            entry[0] += 1
            excess = entry[0] - self.free_failures
            if excess > 0:
                entry[2] = now + min(2.0 ** (excess - 1), self.max_lock_s)
            self._clients[client] = entry
            while len(self._clients) > self.max_clients:
                self._clients.popitem(last=False)

    def success(self, client: str) -> None:
        """Forget the failures of `client`."""
        with self._lock:
            self._clients.pop(client, None)


def _lockout(throttle: AuthThrottle, client: str) -> TooManyAuthFailures | None:
    """The 429 for `client` while it is locked out after too many failed tokens, or None."""
    wait_s = throttle.locked_for_s(client)
    if wait_s <= 0:
        return None
    return TooManyAuthFailures(
        f"too many failed authentication attempts from {client}; try again in "
        f"{math.ceil(wait_s)} s",
        retry_after_s=wait_s,
    )


def token_refusal(request: Request) -> Exception | None:
    """The error `require_token` would raise for `request` (read from its Authorization
    header), or None. Used where FastAPI refused the body before the dependency ran: an
    unauthenticated client learns nothing about the body's validation (401 before 422)."""
    expected: str | None = request.app.state.settings.api_token
    if not expected or not request.url.path.startswith("/v1/"):
        return None
    throttle: AuthThrottle = request.app.state.auth_throttle
    client = request.client.host if request.client else "unknown"
    locked = _lockout(throttle, client)
    if locked is not None:
        return locked
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return Unauthorized("this endpoint needs an `Authorization: Bearer <token>` header")
    if not token_matches(expected, token.strip()):
        throttle.failure(client)
        return Unauthorized("the bearer token is not valid")
    return None


async def require_token(
    request: Request,
    credentials: HTTPAuthorizationCredentials | None = Security(_bearer),
) -> None:
    """FastAPI dependency: pass when no token is configured or the bearer token matches."""
    expected: str | None = request.app.state.settings.api_token
    if not expected:
        return
    throttle: AuthThrottle = request.app.state.auth_throttle
    client = request.client.host if request.client else "unknown"
    locked = _lockout(throttle, client)
    if locked is not None:
        raise locked
    if credentials is None or credentials.scheme.lower() != "bearer":
        # No token at all is not a guess: it does not count towards the back-off.
        raise Unauthorized("this endpoint needs an `Authorization: Bearer <token>` header")
    if not token_matches(expected, credentials.credentials):
        throttle.failure(client)
        raise Unauthorized("the bearer token is not valid")
    throttle.success(client)
