"""Browser safety: a web page on the acquisition PC must not be able to move the stage.

Real uvicorn on 127.0.0.1. State-changing endpoints accept only JSON (415
otherwise; the multipart upload is the exception and must be same-origin or
token-authenticated); the Host header must be an allowed name (DNS rebinding);
cross-origin requests are refused unless their origin is configured.
"""

from __future__ import annotations

import httpx
import numpy as np
import pytest
from sim_server import sim_server

from autofocus.settings import load_settings

PROBLEM = "application/problem+json"
EVIL = "https://evil.example"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """The defaults (loopback Host names), plus one configured CORS origin."""
    db = tmp_path_factory.mktemp("browser") / "jobs.db"
    with sim_server(db, cors_origins=["https://lab.example"]) as srv:
        yield srv


@pytest.fixture()
def http(server):
    with httpx.Client(base_url=server.url, timeout=30) as client:
        yield client


@pytest.fixture(scope="module")
def named(tmp_path_factory):
    """A daemon configured to answer to one more name than the loopback ones."""
    db = tmp_path_factory.mktemp("browser-named") / "jobs.db"
    hosts = ["127.0.0.1", "localhost", "scope-pc.lab"]
    with (
        sim_server(db, allowed_hosts=hosts) as srv,
        httpx.Client(base_url=srv.url, timeout=30) as c,
    ):
        yield c


def _jobs(http) -> int:
    return len(http.get("/v1/jobs").json()["items"])


def _npy() -> bytes:
    import io

    buf = io.BytesIO()
    np.save(buf, np.random.default_rng(0).integers(0, 4000, (64, 64), dtype=np.uint16))
    return buf.getvalue()


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": EVIL, "Content-Type": "application/x-www-form-urlencoded"},
        {"Origin": EVIL, "Content-Type": "text/plain"},
        {"Origin": EVIL, "Content-Type": "application/json"},
        {"Origin": "null", "Content-Type": "application/json"},
        {"Sec-Fetch-Site": "cross-site", "Content-Type": "application/json"},
    ],
)
def test_cross_origin_posts_are_refused(http, server, headers):
    before = _jobs(http)
    r = http.post("/v1/focus", content=b"{}", headers=headers)
    assert r.status_code in (403, 415), r.text
    assert r.headers["content-type"] == PROBLEM
    assert _jobs(http) == before
    assert server.manager.current_job_id is None


@pytest.mark.parametrize(
    "content_type", ["application/x-www-form-urlencoded", "text/plain", "multipart/form-data"]
)
def test_state_changing_endpoints_need_json(http, content_type):
    before = _jobs(http)
    r = http.post("/v1/focus", content=b"", headers={"Content-Type": content_type})
    assert r.status_code == 415, r.text
    assert r.headers["content-type"] == PROBLEM
    assert "application/json" in r.json()["detail"]
    assert _jobs(http) == before
    # No Content-Type at all (a form-less browser POST) is refused too.
    assert http.post("/v1/focus", content=b"").status_code == 415


def test_json_from_a_plain_client_and_the_same_origin_passes(http, server):
    r = http.post("/v1/focus", json={"range_um": 40}, params={"wait": 30})
    assert r.status_code == 200
    r = http.post(
        "/v1/focus", json={"range_um": 40}, params={"wait": 30}, headers={"Origin": server.url}
    )
    assert r.status_code == 200
    assert (
        http.post(
            "/v1/focus",
            json={},
            params={"wait": 30},
            headers={"Content-Type": "application/json; charset=utf-8"},
        ).status_code
        == 200
    )


def test_configured_origin_passes_and_gets_cors_headers(http):
    r = http.post(
        "/v1/focus",
        json={"range_um": 40},
        params={"wait": 30},
        headers={"Origin": "https://lab.example"},
    )
    assert r.status_code == 200
    assert r.headers["access-control-allow-origin"] == "https://lab.example"


@pytest.mark.parametrize("host", ["attacker.example", "attacker.example:8765", "10.0.0.5"])
def test_unknown_host_headers_are_refused(http, host):
    r = http.get("/v1/status", headers={"Host": host})
    assert r.status_code == 421, r.text
    assert r.headers["content-type"] == PROBLEM
    assert "allowed_hosts" in r.json()["detail"]
    r = http.post("/v1/focus", json={}, headers={"Host": host})
    assert r.status_code == 421


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1", "[::1]:8765", "LOCALHOST:8765"])
def test_loopback_host_names_pass_by_default(http, host):
    assert http.get("/v1/status", headers={"Host": host}).status_code == 200


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1", "scope-pc.lab", "SCOPE-PC.lab:8765"])
def test_configured_host_names_pass(named, host):
    assert named.get("/v1/status", headers={"Host": host}).status_code == 200
    assert named.get("/v1/status", headers={"Host": "other.lab"}).status_code == 421


def test_cross_site_upload_is_refused_same_origin_passes(http, server):
    files = {"files": ("a.npy", _npy(), "application/octet-stream")}
    r = http.post("/v1/score", files=files, headers={"Origin": EVIL})
    assert r.status_code == 403, r.text
    r = http.post("/v1/score", files=files, headers={"Sec-Fetch-Site": "cross-site"})
    assert r.status_code == 403, r.text
    r = http.post("/v1/score", files=files, headers={"Origin": server.url})
    assert r.status_code == 200, r.text
    # A JSON body is not an upload.
    r = http.post("/v1/score", content=b"{}", headers={"Content-Type": "application/json"})
    assert r.status_code in (415, 422)


def test_cross_origin_delete_is_refused(http):
    job = http.post("/v1/focus", json={"range_um": 40}).json()
    r = http.delete(f"/v1/jobs/{job['id']}", headers={"Origin": EVIL})
    assert r.status_code == 403
    http.get(f"/v1/jobs/{job['id']}", params={"wait": 30})


def test_loopback_defaults(tmp_path):
    from autofocus.service.api.guards import allowed_host_names

    s = load_settings(None, database_path=tmp_path / "x.db")
    names = allowed_host_names(s)
    assert {"localhost", "127.0.0.1", "::1"} <= names
    s = load_settings(None, database_path=tmp_path / "x.db", host="10.1.2.3", api_token="t" * 20)
    assert "10.1.2.3" in allowed_host_names(s)
