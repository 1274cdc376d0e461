"""Screenshots of the web page's three views (Now, History with a job page, Focus maps).

Used by `tests/test_web_page.py::test_screenshots_of_the_three_views` (into a
temporary folder, or `docs/` with `AUTOFOCUS_PAGE_SCREENSHOTS=docs`, which is
what `make screenshots` sets) and runnable alone against a running daemon:

    python tests/page_screenshots.py http://127.0.0.1:8765 docs/

`seed_jobs_and_map(http)` puts on the daemon what the pictures show: a
succeeded job, a failed one (two candidate planes: run the daemon with
`AUTOFOCUS_SIM__DEBRIS_DZ_UM=12`), and a focus map fitted through 13 points
(one an outlier).
"""

from __future__ import annotations

import sys
from pathlib import Path

import httpx
from browser import Browser, find_chromium

VIEWS = ("now", "history", "maps")


def map_points() -> list[dict[str, float]]:
    """A tilted, slightly bowed sample over a 9 × 6 mm area, plus one wrong plane."""
    pts = []
    for i, x in enumerate((0, 3000, 6000, 9000)):
        for j, y in enumerate((0, 3000, 6000)):
            z = 2.0 + 0.0004 * x - 0.0003 * y + 2e-8 * (x - 4500) ** 2 + 0.05 * ((i + j) % 3 - 1)
            pts.append({"x_um": x, "y_um": y, "z_um": round(z, 3)})
    pts.append({"x_um": 4500, "y_um": 1500, "z_um": 14.0})  # debris picked instead of cells
    return pts


def seed_jobs_and_map(http: httpx.Client) -> dict[str, str]:
    """A failed and a succeeded job (in that order, each waited for) and a focus map."""
    failed = http.post("/v1/focus?wait=120", json={"range_um": 40}).json()
    ok = http.post("/v1/focus?wait=120", json={"range_um": 40, "rival": "nearest"}).json()
    fmap = http.post("/v1/focus-maps", json={"points": map_points()}).json()
    return {"failed": failed["id"], "succeeded": ok["id"], "map": fmap["id"]}


def take(browser: Browser, url: str, out_dir: Path, ids: dict[str, str]) -> list[Path]:
    """Screenshots `page-now.png`, `page-history.png`, `page-job.png`, `page-maps.png`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    browser.goto(url + "/#now")
    browser.wait_for(f"document.getElementById('now-curve').dataset.job === '{ids['succeeded']}'"
                     " && document.getElementById('now-curve').dataset.final === '1'")
    paths.append(out_dir / "page-now.png")
    browser.screenshot(paths[-1])
    browser.goto(url + "/#history")
    browser.wait_for("[...document.querySelectorAll('#history-table canvas')].length > 0 && "
                     "[...document.querySelectorAll('#history-table canvas')]"
                     ".every(c => +c.dataset.points > 0)")
    paths.append(out_dir / "page-history.png")
    browser.screenshot(paths[-1])
    browser.goto(url + f"/#job/{ids['failed']}")
    browser.wait_for("+document.getElementById('jv-curve').dataset.points > 0")
    paths.append(out_dir / "page-job.png")
    browser.screenshot(paths[-1])
    browser.goto(url + f"/#map/{ids['map']}")
    browser.wait_for("+document.getElementById('map-canvas').dataset.points > 0")
    box = browser.eval("(() => { const r = document.getElementById('map-canvas')"
                       ".getBoundingClientRect(); return [r.left, r.top, r.width, r.height]; })()")
    browser.click_at(box[0] + box[2] * 0.45, box[1] + box[3] * 0.4)
    browser.wait_for("document.getElementById('map-predict').textContent.includes('z =')")
    paths.append(out_dir / "page-maps.png")
    browser.screenshot(paths[-1])
    return paths


def main() -> None:
    url, out = sys.argv[1].rstrip("/"), Path(sys.argv[2])
    exe = find_chromium()
    if exe is None:
        raise SystemExit("no Chromium found (apt-get install chromium)")
    with httpx.Client(base_url=url, timeout=150) as http, Browser(exe) as browser:
        for path in take(browser, url, out, seed_jobs_and_map(http)):
            print(path)


if __name__ == "__main__":
    main()
