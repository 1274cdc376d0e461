"""The web page at `/`, in a real headless Chromium against a real daemon (`autofocus serve`).

The browser is Debian's `chromium`, driven over the DevTools protocol on a pipe
(tests/browser.py). `.ci/run` installs it when missing; where it cannot be
installed the browser tests skip and say so (the HTTP checks of the page still
run). The daemon runs the simulated microscope in real time (`--real-time`), so
a job lasts seconds and can be watched live and cancelled from the page.
"""

from __future__ import annotations

import os
from pathlib import Path

import httpx
import pytest
from browser import Browser, find_chromium
from daemon_proc import Daemon, wait_frames, wait_state
from page_screenshots import VIEWS, map_points, seed_jobs_and_map, take

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = find_chromium()
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None,
    reason="no Chromium on this machine: the page's browser tests need it "
    "(`apt-get install chromium`; .ci/run installs it when it can)",
)
SLOW_ENV = {
    # ~0.25 s a frame: a job runs for several seconds, long enough to watch and cancel.
    "AUTOFOCUS_FOCUS__SETTLE_S": "0.25",
    # Out-of-plane debris 12 µm from focus: a second plane, so a default job fails with two
    # candidate planes to draw, and `rival: nearest` succeeds.
    "AUTOFOCUS_SIM__DEBRIS_DZ_UM": "12",
    "AUTOFOCUS_SIM__SEED": "1",
}


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("web")
    with Daemon(tmp / "jobs.db", tmp / "daemon.log", env=SLOW_ENV) as d:
        yield d


@pytest.fixture(scope="module")
def browser():
    if CHROMIUM is None:
        pytest.skip("no Chromium (see needs_chromium)")
    with Browser(CHROMIUM) as b:
        yield b


def _outside(urls: list[str], base: str) -> list[str]:
    return [u for u in urls if not (u.startswith(base + "/") or u.startswith("data:"))]


def test_page_is_served_from_the_package_with_a_same_origin_policy(daemon):
    r = daemon.http.get("/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    csp = r.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "connect-src 'self'" in csp
    assert "script-src 'self'" in csp  # no inline or remote script
    assert "http" not in r.text.replace("http-equiv", "")  # names no other host
    js = daemon.http.get("/ui/app.js")
    assert js.status_code == 200 and "javascript" in js.headers["content-type"]
    assert "EventSource" not in js.text.replace("(EventSource cannot", "")
    assert daemon.http.get("/ui/nothing.js").status_code == 404
    assert daemon.http.get("/ui/..%2Fapp.py").status_code == 404


def test_page_keeps_the_apis_origin_and_host_rules(daemon):
    assert daemon.http.get("/", headers={"Host": "evil.example"}).status_code == 421
    r = daemon.http.get("/ui/app.js", headers={"Origin": "https://evil.example"})
    assert r.status_code == 403


@needs_chromium
def test_page_draws_the_live_curve_of_a_job_started_through_the_api(daemon, browser):
    browser.requested_urls.clear()
    browser.goto(daemon.url + "/")
    browser.wait_for("document.body.dataset.view === 'now'")
    job = daemon.http.post("/v1/focus", json={"range_um": 40, "rival": "nearest"}).json()
    # Live: points appear while the job still runs (from the events stream).
    live = browser.wait_for(
        f"(() => {{ const c = document.getElementById('now-curve'); return c.dataset.job === "
        f"'{job['id']}' && c.dataset.state === 'running' && +c.dataset.points >= 3 ? "
        "+c.dataset.points : 0; })()"
    )
    assert live >= 3
    assert daemon.http.get(f"/v1/jobs/{job['id']}").json()["state"] == "running"
    done = wait_state(daemon.http, job["id"], {"succeeded", "failed"}, timeout_s=120)
    assert done["state"] == "succeeded", done
    browser.wait_for("document.getElementById('now-curve').dataset.state === 'succeeded' && "
                     "document.getElementById('now-curve').dataset.final === '1'")
    drawn = int(browser.eval("document.getElementById('now-curve').dataset.points"))
    assert drawn == len(done["result"]["curve"])
    # The picture holds the blue points and the green chosen-z line, not only axes.
    colours = browser.eval(
        "(() => { const c = document.getElementById('now-curve'); const d = c.getContext('2d')"
        ".getImageData(0, 0, c.width, c.height).data; let blue = 0, green = 0; "
        "for (let i = 0; i < d.length; i += 4) { if (d[i+2] - d[i] > 100 && d[i+2] > 200) "
        "blue++; if (d[i+1] - d[i] > 50 && d[i+1] - d[i+2] > 40) green++; } "
        "return [blue, green]; })()"
    )
    assert colours[0] > 50 and colours[1] > 50, colours
    verdict = browser.eval("document.getElementById('job-verdict').textContent")
    assert f"{done['result']['best_z_um']:.2f}" in verdict
    # The events stream was read with fetch (it shows up as a request of the page).
    assert any(u.endswith(f"/v1/jobs/{job['id']}/events") for u in browser.requested_urls)
    assert _outside(browser.requested_urls, daemon.url) == []


@needs_chromium
def test_page_cancels_a_running_job_and_starts_one(daemon, browser):
    job = daemon.http.post("/v1/focus", json={"range_um": 40}).json()
    wait_frames(daemon.http, job["id"], 2, timeout_s=60)
    browser.goto(daemon.url + "/#act")
    browser.wait_for(f"document.getElementById('act-cancel').dataset.job === '{job['id']}' && "
                     "!document.getElementById('act-cancel').disabled")
    browser.click("#act-cancel")
    done = wait_state(daemon.http, job["id"], {"cancelled", "succeeded", "failed"}, timeout_s=60)
    assert done["state"] == "cancelled", done
    assert abs(done["result"]["final_z_um"] - done["progress"]["start_z_um"]) < 1e-6
    # Start one from the page, with the range and tolerance typed in.
    browser.eval("document.getElementById('f-range').value = '30'; "
                 "document.getElementById('f-tol').value = '0.8'")
    browser.click("#start-focus")
    browser.wait_for("document.body.dataset.view === 'now'")
    latest = daemon.http.get("/v1/jobs", params={"limit": 1}).json()["items"][0]
    assert latest["id"] != job["id"]
    assert latest["request"]["range_um"] == 30 and latest["request"]["tolerance_um"] == 0.8
    daemon.http.delete(f"/v1/jobs/{latest['id']}", params={"wait": 60})


@needs_chromium
def test_history_job_page_and_focus_map_views(daemon, browser):
    ids = seed_jobs_and_map(daemon.http)
    browser.requested_urls.clear()
    browser.requested_methods.clear()
    browser.goto(daemon.url + "/#history")
    browser.wait_for(f"!!document.querySelector('#history-table tr[data-job=\"{ids['failed']}\"]')")
    row = browser.eval(f"document.querySelector('#history-table tr[data-job=\"{ids['failed']}\"]')"
                       ".textContent")
    assert "failed" in row and "rival_peak" in row
    browser.click(f"#history-table tr[data-job=\"{ids['failed']}\"]")
    browser.wait_for("+document.getElementById('jv-curve').dataset.points > 0")
    job = daemon.http.get(f"/v1/jobs/{ids['failed']}").json()
    frames = browser.eval("document.querySelectorAll('#jv-frames tbody tr').length")
    assert frames == len(job["result"]["curve"])
    assert "rival_peak" in browser.eval("document.getElementById('jv-verdict').textContent")
    browser.goto(daemon.url + "/#maps")  # the list (GET /v1/focus-maps), newest first
    browser.wait_for(f"!!document.querySelector('#maps-list li[data-map=\"{ids['map']}\"]')")
    browser.click(f"#maps-list li[data-map=\"{ids['map']}\"]")
    browser.wait_for(f"location.hash === '#map/{ids['map']}' && "
                     "+document.getElementById('map-canvas').dataset.points > 0")
    assert int(browser.eval("document.getElementById('map-canvas').dataset.points")) == len(
        map_points()
    )
    box = browser.eval("(() => { const r = document.getElementById('map-canvas')"
                       ".getBoundingClientRect(); return [r.left, r.top, r.width, r.height]; })()")
    browser.click_at(box[0] + box[2] * 0.5, box[1] + box[3] * 0.5)
    text = browser.wait_for("(() => { const t = document.getElementById('map-predict')"
                            ".textContent; return t.includes('z =') ? t : ''; })()")
    x = float(text.split("x = ")[1].split(" ")[0])
    y = float(text.split("y = ")[1].split(" ")[0])
    z = float(text.split("z = ")[1].split(" ")[0])
    want = daemon.http.get(f"/v1/focus-maps/{ids['map']}/z", params={"x_um": x, "y_um": y}).json()
    assert abs(want["z_um"] - z) < 0.01
    assert _outside(browser.requested_urls, daemon.url) == []
    # Looking changes nothing: every request of these views was a GET.
    assert set(browser.requested_methods) == {"GET"}, browser.requested_methods


def test_z_grid_of_a_focus_map(daemon):
    fmap = daemon.http.post("/v1/focus-maps", json={"points": map_points()}).json()
    g = daemon.http.get(f"/v1/focus-maps/{fmap['id']}/z-grid", params={"nx": 5, "ny": 4}).json()
    assert len(g["x_um"]) == 5 and len(g["y_um"]) == 4 and len(g["z_um"]) == 4
    assert g["x_um"][0] < 0 < 9000 < g["x_um"][-1]  # the points' box plus a margin
    one = daemon.http.get(f"/v1/focus-maps/{fmap['id']}/z",
                          params={"x_um": g["x_um"][2], "y_um": g["y_um"][1]}).json()
    assert g["z_um"][1][2] == pytest.approx(one["z_um"], abs=1e-9)
    # Beyond the Z limits (±100 µm on the simulator) the grid holds no focus z, as /z refuses.
    steep = [{"x_um": x, "y_um": y, "z_um": 0.011 * x} for x in (0, 9000) for y in (0, 9000)]
    steep_id = daemon.http.post("/v1/focus-maps", json={"points": steep}).json()["id"]
    g = daemon.http.get(f"/v1/focus-maps/{steep_id}/z-grid", params={"nx": 5, "ny": 3}).json()
    assert g["x_um"][-1] * 0.011 > 100 and all(row[-1] is None for row in g["z_um"])
    assert all(row[0] is not None for row in g["z_um"])
    assert daemon.http.get(f"/v1/focus-maps/{steep_id}/z",
                           params={"x_um": g["x_um"][-1], "y_um": 0}).status_code == 422
    assert daemon.http.get("/v1/focus-maps/nope/z-grid").status_code == 404
    assert daemon.http.get(f"/v1/focus-maps/{fmap['id']}/z-grid", params={"nx": 1}).status_code \
        == 422


@needs_chromium
def test_screenshots_of_the_three_views(daemon, browser, tmp_path):
    """`make screenshots` (AUTOFOCUS_PAGE_SCREENSHOTS=docs) refreshes the ones in docs/."""
    target = os.environ.get("AUTOFOCUS_PAGE_SCREENSHOTS")
    out = (REPO / target) if target else tmp_path
    browser.requested_urls.clear()
    paths = take(browser, daemon.url, out, seed_jobs_and_map(daemon.http))
    assert {p.stem.removeprefix("page-") for p in paths} >= set(VIEWS)
    for p in paths:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 10_000
    assert _outside(browser.requested_urls, daemon.url) == []


@needs_chromium
def test_with_a_token_the_page_asks_once_and_keeps_it_out_of_urls(tmp_path):
    token = "s3cret-token-for-the-page"
    env = {**SLOW_ENV, "AUTOFOCUS_API_TOKEN": token}
    with Daemon(tmp_path / "jobs.db", tmp_path / "d.log", env=env) as d, Browser(CHROMIUM) as b:
        auth = {"Authorization": f"Bearer {token}"}
        b.goto(d.url + "/")
        b.wait_for("!document.getElementById('token-view').hidden")
        b.eval(f"document.getElementById('token-input').value = '{token}'")
        b.click("#token-form button")
        job = httpx.post(d.url + "/v1/focus", json={"range_um": 40, "rival": "nearest"},
                         headers=auth).json()
        b.wait_for(f"document.getElementById('now-curve').dataset.job === '{job['id']}' && "
                   "+document.getElementById('now-curve').dataset.points >= 2", timeout_s=60)
        assert b.eval(f"sessionStorage.getItem('autofocus.token') === '{token}'")
        assert b.eval("localStorage.length") == 0
        assert not [u for u in b.requested_urls if token in u]
        assert _outside(b.requested_urls, d.url) == []
        httpx.delete(d.url + f"/v1/jobs/{job['id']}", params={"wait": 60}, headers=auth)


def test_every_page_file_is_installed_and_served():
    """The static files are package data (pyproject globs), and each is in `ASSETS`."""
    import fnmatch

    import tomllib

    from autofocus.service.web import ASSETS

    data = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    globs = data["package-data"]["autofocus.service.web"]
    static = REPO / "autofocus" / "service" / "web" / "static"
    files = sorted(p.name for p in static.iterdir())
    assert files == sorted(ASSETS)
    for name in files:
        assert any(fnmatch.fnmatch(f"static/{name}", g) for g in globs), name
