"""Issue 23, item 8: the smaller holes, each against a real uvicorn / SQLite file.

Before: interrupted jobs carried `error_code: null`; a malformed body without a token got
422 before 401; PUT on a GET-only path got 415, not 405; a 1-character API token was
accepted.
"""

from __future__ import annotations

import httpx
import pytest
from sim_server import sim_server

from autofocus.service.jobs.store import JobStore
from autofocus.settings import ConfigError, load_settings

TOKEN = "small-items-token-0123456789"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with sim_server(tmp_path_factory.mktemp("small") / "jobs.db", api_token=TOKEN) as srv:
        yield srv


def test_interrupted_jobs_carry_a_reason_code(tmp_path):
    db = tmp_path / "jobs.db"
    store = JobStore(db)
    store.create("a", {"range_um": 10}, progress={"start_z_um": 1.0})
    store.create("b", {"range_um": 10}, progress={})
    store.mark_running("a", {"start_z_um": 1.0, "last_z_um": 2.0})
    store.close()
    again = JobStore(db)  # what a restart after a crash does
    running = again.recover_after_crash()
    queued = again.interrupt_queued()
    for job, event in running + queued:
        assert job.state.value == "interrupted" and job.error_code == "interrupted"
        assert event.data["error_code"] == "interrupted"
    assert again.get("a").to_dict()["error_code"] == "interrupted"
    again.close()


def test_no_token_is_401_before_the_body_is_judged(server):
    with httpx.Client(base_url=server.url) as http:
        for body in (b"{not json", b'{"range_um": "wide"}'):
            r = http.post("/v1/focus", content=body,
                          headers={"Content-Type": "application/json"})
            assert r.status_code == 401, (body, r.status_code, r.text)
        r = http.post("/v1/focus", content=b"{not json",
                      headers={"Content-Type": "application/json",
                               "Authorization": f"Bearer {TOKEN}"})
        assert r.status_code == 422


def test_a_method_the_path_does_not_take_is_405(server):
    auth = {"Authorization": f"Bearer {TOKEN}"}
    with httpx.Client(base_url=server.url, headers=auth) as http:
        for method, path in (("PUT", "/v1/status"), ("PATCH", "/v1/microscope"),
                             ("POST", "/v1/status"), ("PUT", "/v1/focus")):
            r = http.request(method, path, content=b"x", headers={"Content-Type": "text/plain"})
            assert r.status_code == 405, (method, path, r.status_code, r.text)
        r = http.post("/v1/focus", content=b"x", headers={"Content-Type": "text/plain"})
        assert r.status_code == 415


@pytest.mark.parametrize("token", ["x", "short-token"])
def test_a_short_api_token_is_refused(tmp_path, token):
    with pytest.raises(ConfigError, match="api_token"):
        load_settings(None, database_path=tmp_path / "x.db", api_token=token)
