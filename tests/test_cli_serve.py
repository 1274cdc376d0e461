"""`autofocus serve` says where it is: URL, driver, Z limits and database path, at start."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx

from autofocus.service.api.server import free_port
from autofocus.settings import default_database_path, load_settings

REPO = Path(__file__).resolve().parents[1]


def test_serve_banner_names_url_driver_limits_and_database(tmp_path):
    port = free_port()
    db = tmp_path / "jobs.db"
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTOFOCUS_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "autofocus", "serve", "--port", str(port), "--database", str(db),
         "--z-min-um", "-40", "--z-max-um", "60", "--log-format", "json"],
        cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    try:
        lines = []
        deadline = time.monotonic() + 60
        while len(lines) < 5 and time.monotonic() < deadline:
            line = proc.stderr.readline()  # type: ignore[union-attr]
            if not line:
                break
            lines.append(line.rstrip("\n"))
        text = "\n".join(lines)
        assert f"serving http://127.0.0.1:{port}" in lines[0], text
        assert "driver:   simulated microscope" in text
        assert "Z limits: [-40, 60] µm" in text
        assert f"database: {db.resolve()}" in text
        for _ in range(100):  # and it really serves there
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        else:
            raise AssertionError("the daemon never answered")
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_default_database_is_in_the_user_data_dir(monkeypatch, tmp_path):
    monkeypatch.delenv("AUTOFOCUS_DATABASE_PATH", raising=False)
    monkeypatch.delenv("AUTOFOCUS_CONFIG", raising=False)
    monkeypatch.chdir(tmp_path)
    path = load_settings(None).database_path
    assert path == default_database_path() and path.is_absolute()
    assert path.name == "autofocus.db" and path.parent.name == "autofocus"
    assert tmp_path not in path.parents
