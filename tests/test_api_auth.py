"""Authentication on and off, CORS off unless configured, loopback-only without a token."""

from __future__ import annotations

import httpx
import pytest
from sim_server import sim_server

from autofocus.service.api.security import InsecureBindError, check_bind_allowed, is_loopback_host
from autofocus.settings import load_settings

TOKEN = "s3cret-token-for-tests"


@pytest.fixture(scope="module")
def secured(tmp_path_factory):
    db = tmp_path_factory.mktemp("auth") / "jobs.db"
    with sim_server(db, api_token=TOKEN, cors_origins=["https://lab.example"]) as srv:
        yield srv


@pytest.fixture(scope="module")
def open_server(tmp_path_factory):
    with sim_server(tmp_path_factory.mktemp("noauth") / "jobs.db") as srv:
        yield srv


PROTECTED = [
    ("GET", "/v1/status"),
    ("GET", "/v1/microscope"),
    ("GET", "/v1/jobs"),
    ("GET", "/v1/jobs/abc"),
    ("DELETE", "/v1/jobs/abc"),
    ("GET", "/v1/jobs/abc/events"),
    ("POST", "/v1/focus"),
    ("POST", "/v1/score"),
    ("GET", "/metrics"),
]


def _assert_401(secured, method, path, authorization):
    headers = {"Authorization": authorization} if authorization else {}
    mic = secured.manager.microscope
    before = len(mic.commanded_z_um)
    if path == "/v1/score":  # the upload is multipart (anything else is 415 before auth)
        r = httpx.post(secured.url + path, headers=headers, files={"files": ("a.npy", b"x")})
    else:
        r = httpx.request(
            method, secured.url + path, headers=headers, json={} if method == "POST" else None
        )
    assert r.status_code == 401
    assert r.headers["content-type"] == "application/problem+json"
    assert r.headers["www-authenticate"].startswith("Bearer")
    assert TOKEN not in r.text
    assert len(mic.commanded_z_um) == before


@pytest.mark.parametrize(("method", "path"), PROTECTED)
def test_every_endpoint_needs_the_token(secured, method, path):
    _assert_401(secured, method, path, None)


@pytest.mark.parametrize(
    "authorization",
    ["Bearer wrong-token", f"Basic {TOKEN}", "Bearer", f"Bearer {TOKEN}x", f"Bearer {TOKEN[:-1]}"],
)
def test_wrong_credentials_are_refused(secured, authorization):
    _assert_401(secured, "POST", "/v1/focus", authorization)


def test_right_token_passes(secured):
    headers = {"Authorization": f"Bearer {TOKEN}"}
    assert httpx.get(secured.url + "/v1/status", headers=headers).status_code == 200
    assert httpx.get(secured.url + "/metrics", headers=headers).status_code == 200
    r = httpx.post(
        secured.url + "/v1/focus",
        params={"wait": 30},
        json={"range_um": 40},
        headers=headers,
        timeout=40,
    )
    assert r.status_code == 200 and r.json()["state"] in ("succeeded", "failed")
    assert httpx.get(secured.url + "/v1/jobs/unknown", headers=headers).status_code == 404


def test_probes_and_docs_stay_open(secured):
    assert httpx.get(secured.url + "/healthz").status_code == 200
    assert httpx.get(secured.url + "/readyz").status_code == 200
    schema = httpx.get(secured.url + "/openapi.json").json()
    assert "HTTPBearer" in schema["components"]["securitySchemes"]


def test_no_token_configured_means_open(open_server):
    assert httpx.get(open_server.url + "/v1/status").status_code == 200
    # A stray Authorization header does no harm when no token is configured.
    r = httpx.get(open_server.url + "/v1/status", headers={"Authorization": "Bearer anything"})
    assert r.status_code == 200


def test_cors_off_unless_configured(open_server, secured):
    origin = {"Origin": "https://lab.example"}
    r = httpx.get(open_server.url + "/healthz", headers=origin)
    assert "access-control-allow-origin" not in r.headers
    r = httpx.get(secured.url + "/healthz", headers=origin)
    assert r.headers["access-control-allow-origin"] == "https://lab.example"
    r = httpx.get(secured.url + "/healthz", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in r.headers


def test_request_id_is_echoed(open_server):
    r = httpx.get(open_server.url + "/v1/status", headers={"X-Request-ID": "acq-42"})
    assert r.headers["x-request-id"] == "acq-42"
    r = httpx.get(open_server.url + "/v1/jobs/nope")
    assert r.json()["request_id"] == r.headers["x-request-id"]


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.3.2.1", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("::", False),
        ("192.168.1.20", False),
        ("scope-pc.lab", False),
    ],
)
def test_loopback_detection(host, loopback):
    assert is_loopback_host(host) is loopback


def test_refuses_public_bind_without_token():
    with pytest.raises(InsecureBindError, match="api_token"):
        check_bind_allowed(load_settings(None, host="0.0.0.0"))
    check_bind_allowed(load_settings(None, host="0.0.0.0", api_token="x" * 24))
    check_bind_allowed(load_settings(None, host="127.0.0.1"))
