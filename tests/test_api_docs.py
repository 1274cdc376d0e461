"""`/docs` and `/redoc` work offline: the HTML names no external host, every asset is served.

Against a real uvicorn on 127.0.0.1 with an API token set (the pages stay open,
like `/healthz`, while `/v1` needs the token).
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

import httpx
import pytest
from sim_server import sim_server

TOKEN = "docs-test-token-0123"


@pytest.fixture(scope="module")
def http(tmp_path_factory):
    db = tmp_path_factory.mktemp("docs") / "jobs.db"
    with (
        sim_server(db, api_token=TOKEN) as srv,
        httpx.Client(base_url=srv.url, timeout=30) as client,
    ):
        yield client


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_docs_pages_reference_no_external_host(http, page):
    r = http.get(page)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    html = r.text
    hosts = {urlsplit(u).netloc for u in re.findall(r"(?:https?:)?//[\w.-]+[^\s'\"<>]*", html)}
    assert hosts == set(), f"{page} references external hosts: {hosts}"
    assets = re.findall(r"""(?:src|href)\s*=\s*["']([^"']+)["']""", html)
    assert any(a.endswith(".js") for a in assets), assets
    for asset in assets:
        assert asset.startswith("/"), asset
        got = http.get(asset)
        assert got.status_code == 200 and len(got.content) > 1000, asset
    spec = re.search(r"""["'](/openapi\.json)["']""", html)
    assert spec and http.get(spec.group(1)).json()["info"]["title"] == "autofocus"


def test_token_still_guards_the_api(http):
    assert http.get("/v1/status").status_code == 401
    assert http.get("/v1/status", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200


def test_documented_statuses_for_undecodable_bodies_are_what_the_service_answers(http):
    from pathlib import Path

    api_md = (Path(__file__).resolve().parents[1] / "docs" / "api.md").read_text("utf-8")

    def documented(phrase: str) -> int:
        row = next(line for line in api_md.splitlines() if phrase in line)
        return int(row.split("|")[1])

    auth = {"Authorization": f"Bearer {TOKEN}"}
    json_type = {**auth, "Content-Type": "application/json"}
    for body, headers, phrase in (
        (b"{not json", json_type, "body not decodable as JSON"),
        (b"[1, 2", json_type, "body not decodable as JSON"),
        (b"{}", {**auth, "Content-Type": "text/plain"}, "not `application/json`"),
        (b'{"range_um": "\xff"}', json_type, "not UTF-8 text"),
        (b"\xff\xfe\x00", json_type, "not UTF-8 text"),
    ):
        r = http.post("/v1/focus", content=body, headers=headers)
        assert r.status_code == documented(phrase), (body, r.status_code, r.text)
        assert r.headers["content-type"].startswith("application/problem+json")
