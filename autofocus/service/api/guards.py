"""Browser safety: a web page open on the acquisition PC must not be able to move the stage.

Browsers let any page send "simple" requests (form posts, `text/plain`,
multipart) to `http://127.0.0.1:8765`, and a page whose DNS name is re-bound to
127.0.0.1 even reads the answers. `BrowserGuardMiddleware` (pure ASGI) refuses,
before any route runs:

- a `Host` header that is not an allowed name (`allowed_hosts`; default the
  loopback names and the configured `host`): 421, the DNS-rebinding guard;
- a cross-origin request — an `Origin` other than the daemon's own or one in
  `cors_origins`, or `Sec-Fetch-Site: cross-site/same-site` without an
  `Origin` — : 403 (curl, scripts and the Python client send neither header);
- a state-changing request (POST, PUT, PATCH) whose body is not
  `application/json` — except the upload `POST /v1/score`, which must be
  `multipart/form-data` and, like everything else, same-origin or from a
  non-browser client (with `api_token` set it also needs the token): 415 — when a
  route takes that method at that path (otherwise the router answers 405 or 404).

A page can send JSON cross-origin only after a CORS preflight, which the daemon
answers only for `cors_origins`.
"""

from __future__ import annotations

from starlette.routing import Match
from starlette.types import ASGIApp, Receive, Scope, Send

from autofocus.service.api.problems import send_problem
from autofocus.settings import Settings

LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
WILDCARD_HOSTS = frozenset({"", "0.0.0.0", "::", "*"})
UPLOAD_PATHS = frozenset({"/v1/score"})
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
_DEFAULT_PORTS = {"http": "80", "https": "443"}


def allowed_host_names(settings: Settings) -> frozenset[str]:
    """Host names (lower case, no port) the daemon answers to; `*` in the set means any.

    `settings.allowed_hosts` when given; otherwise the loopback names plus the
    listening address when it is a specific one.
    """
    if settings.allowed_hosts:
        return frozenset(_strip_brackets(h.strip().lower()) for h in settings.allowed_hosts)
    names = set(LOOPBACK_NAMES)
    host = _strip_brackets(settings.host.strip().lower())
    if host not in WILDCARD_HOSTS:
        names.add(host)
    return frozenset(names)


def host_name(header: str) -> str:
    """The name part of a `Host` header value, lower case: `[::1]:8765` → `::1`."""
    value = header.strip().lower()
    if value.startswith("["):
        end = value.find("]")
        return value[1:end] if end > 0 else value
    if value.count(":") == 1:
        return value.split(":", 1)[0]
    return value  # no port, or a bare IPv6 address (colons but no port)


def _strip_brackets(name: str) -> str:
    return name[1:-1] if name.startswith("[") and name.endswith("]") else name


def _origin_key(origin: str) -> str:
    """`scheme://host[:port]` lower case with the default port dropped."""
    value = origin.strip().lower().rstrip("/")
    scheme, sep, rest = value.partition("://")
    if not sep:
        return value
    name, colon, port = rest.rpartition(":")
    if colon and not name.endswith("]") and "]" not in port and port.isdigit():
        if _DEFAULT_PORTS.get(scheme) == port:
            rest = name
    return f"{scheme}://{rest}"


class BrowserGuardMiddleware:
    """Refuse disallowed hosts (421), cross-origin requests (403) and non-JSON state changes
    (415) with problem+json; see the module docstring."""

    def __init__(
        self, app: ASGIApp, *, allowed_hosts: frozenset[str], cors_origins: list[str]
    ) -> None:
        self.app = app
        self.allowed_hosts = allowed_hosts
        self.any_host = "*" in allowed_hosts
        self.origins = frozenset(_origin_key(o) for o in cors_origins)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        host = headers.get("host", "")
        if not self.any_host and host_name(host) not in self.allowed_hosts:
            await send_problem(
                scope,
                send,
                421,
                "host-not-allowed",
                "Host not allowed",
                f"the Host header {host!r} is not a name this daemon answers to; add it to "
                "allowed_hosts (AUTOFOCUS_ALLOWED_HOSTS) if clients really use it",
            )
            return
        method = scope.get("method", "GET")
        if method != "OPTIONS" and self._cross_origin(headers, scope, host):
            origin = headers.get("origin") or f"a {headers.get('sec-fetch-site')} page"
            await send_problem(
                scope,
                send,
                403,
                "cross-origin-refused",
                "Cross-origin request refused",
                f"requests from {origin} are refused: browser pages may call the daemon only "
                "from its own origin or an origin listed in cors_origins",
            )
            return
        if method in _BODY_METHODS and _route_takes(scope):
            media = headers.get("content-type", "").split(";", 1)[0].strip().lower()
            path = scope.get("path", "")
            if path in UPLOAD_PATHS:
                ok, wanted = media == "multipart/form-data", "multipart/form-data"
            else:
                ok = media == "application/json" or (
                    media.startswith("application/") and media.endswith("+json")
                )
                wanted = "application/json"
            if not ok:
                await send_problem(
                    scope,
                    send,
                    415,
                    "unsupported-media-type",
                    "Unsupported media type",
                    f"{method} {path} needs a {wanted} body (Content-Type: {wanted}), "
                    f"got {media or 'no Content-Type'}",
                )
                return
        await self.app(scope, receive, send)

    def _cross_origin(self, headers: dict[str, str], scope: Scope, host: str) -> bool:
        origin = headers.get("origin")
        if origin is not None:
            key = _origin_key(origin)
            if key in self.origins:
                return False
            own = _origin_key(f"{scope.get('scheme', 'http')}://{host}")
            return key != own
        return headers.get("sec-fetch-site", "").lower() in ("cross-site", "same-site")


def _route_takes(scope: Scope) -> bool:
    """True when a route answers this method at this path: a method the path does not take
    is the router's 405 (and an unknown path its 404), not a media-type problem."""
    router = getattr(scope.get("app"), "router", None)
    routes = getattr(router, "routes", None)
    if routes is None:
        return True
    return any(route.matches(scope)[0] is Match.FULL for route in routes)
