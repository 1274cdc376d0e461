"""Connections: stalled headers and bodies are dropped after their read timeouts, the
number of connections is capped, and wrong tokens are slowed down per client.
Real uvicorn on 127.0.0.1 with real sockets."""

from __future__ import annotations

import socket
import time

import httpx
import pytest
from sim_server import sim_server

TOKEN = "s3cret-token-for-tests-0123456789"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with sim_server(
        tmp_path_factory.mktemp("conn") / "jobs.db",
        log_level="error",
        header_timeout_s=1.0,
        body_timeout_s=1.0,
        max_connections=40,
        api_token=TOKEN,
    ) as srv:
        yield srv


def _open(server, data: bytes) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    s.sendall(data)
    return s


def _closed_within(s: socket.socket, timeout_s: float) -> tuple[bool, bytes]:
    s.settimeout(timeout_s)
    got = b""
    try:
        while True:
            chunk = s.recv(4096)
            if not chunk:
                return True, got
            got += chunk
    except TimeoutError:
        return False, got
    except ConnectionResetError:
        return True, got


def _healthy(server) -> bool:
    try:
        return httpx.get(server.url + "/healthz", timeout=5).status_code == 200
    except httpx.TransportError:
        return False


def test_stalled_headers_and_bodies_are_dropped(server):
    partial = _open(server, b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
    body = _open(
        server,
        b"POST /v1/focus HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer "
        + TOKEN.encode()
        + b'\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"range',
    )
    silent = _open(server, b"")
    t0 = time.monotonic()
    for s in (partial, body, silent):
        closed, got = _closed_within(s, 5.0)
        assert closed, "the server held a stalled connection open"
        if got:
            assert got.startswith(b"HTTP/1.1 408"), got[:80]
        s.close()
    assert time.monotonic() - t0 < 5.0
    assert _healthy(server)


def test_connection_cap_then_recovery(server):
    limit = server.settings.max_connections
    head = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    socks = [_open(server, head) for _ in range(limit + 60)]
    try:
        time.sleep(0.3)
        # Beyond the cap new connections are turned away at once instead of piling up.
        refused = 0
        for s in socks[limit + 10 :]:
            closed, got = _closed_within(s, 0.5)
            refused += closed
        assert refused >= 40
    finally:
        for s in socks:
            s.close()
    deadline = time.monotonic() + 5
    while not _healthy(server):
        assert time.monotonic() < deadline, "the daemon did not recover"
        time.sleep(0.1)


def test_wrong_tokens_are_slowed_down_per_client(server):
    bad = {"Authorization": "Bearer wrong"}
    answers = [httpx.get(server.url + "/v1/status", headers=bad) for _ in range(40)]
    codes = [r.status_code for r in answers]
    assert codes[:10] == [401] * 10, codes
    assert 429 in codes, codes
    slowed = next(r for r in answers if r.status_code == 429)
    assert int(slowed.headers["retry-after"]) >= 1
    assert slowed.headers["content-type"] == "application/problem+json"
    # The probes stay open, and after the back-off the right token works again.
    assert _healthy(server)
    deadline = time.monotonic() + 40
    good = {"Authorization": f"Bearer {TOKEN}"}
    while httpx.get(server.url + "/v1/status", headers=good).status_code != 200:
        assert time.monotonic() < deadline
        time.sleep(0.5)
