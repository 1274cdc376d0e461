"""`autofocus serve` refuses, before it listens, a configuration it cannot serve with: exit 2
and one line (issue 23, item 6). Real CLI subprocesses, real SQLite files.

Before: a missing AUTOFOCUS_CONFIG ran on the defaults (exit 0); nan/inf limits, an unknown
strategy or scorer, or a 1e-9 µm tolerance started a daemon that refused every request; an
unusable database path exited 3 with a 60-line traceback.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from autofocus.service.api.server import free_port

REPO = Path(__file__).resolve().parents[1]


def _serve(tmp_path: Path, *args: str, env: dict[str, str] | None = None,
           config: str | None = None) -> subprocess.CompletedProcess:
    full = {**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "200"}
    full.pop("AUTOFOCUS_CONFIG", None)
    full.update(env or {})
    extra: list[str] = []
    if config is not None:
        cfg = tmp_path / "af.toml"
        cfg.write_text(config)
        extra = ["--config", str(cfg)]
    if "--database" not in args:
        extra += ["--database", str(tmp_path / "jobs.db")]
    return subprocess.run(
        [sys.executable, "-m", "autofocus", "serve", "--port", str(free_port()), *extra, *args],
        cwd=REPO, env=full, capture_output=True, text=True, timeout=60,
    )


def _one_line(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    return lines[0]


def test_missing_autofocus_config_file_is_refused(tmp_path):
    line = _one_line(_serve(tmp_path, env={"AUTOFOCUS_CONFIG": str(tmp_path / "missing.toml")}))
    assert "missing.toml" in line and "does not exist" in line


@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_non_finite_limits_are_refused(tmp_path, value):
    line = _one_line(_serve(tmp_path, env={"AUTOFOCUS_Z_MIN_UM": value}))
    assert "z_min_um" in line
    line = _one_line(_serve(tmp_path, config=f"z_max_um = {value}\n"))
    assert "z_max_um" in line


@pytest.mark.parametrize(
    ("config", "word"),
    [
        ('[focus]\nstrategy = "nope"\n', "strategy"),
        ('[focus]\nscorer = "nope"\n', "scorer"),
        ('[focus]\nscorer = "/no/such/model.onnx"\n', "model.onnx"),
        ("[focus]\ntolerance_um = 1e-9\n", "tolerance_um"),
        ("[focus]\nrange_um = nan\n", "range_um"),
    ],
)
def test_unusable_focus_defaults_are_refused(tmp_path, config, word):
    assert word in _one_line(_serve(tmp_path, config=config))


def test_unusable_database_paths_are_refused(tmp_path):
    folder = tmp_path / "a-folder"
    folder.mkdir()
    not_sqlite = tmp_path / "notes.db"
    not_sqlite.write_text("this is not a database\n" * 100)
    for path in (folder, not_sqlite, Path("/sys/autofocus/jobs.db")):
        line = _one_line(_serve(tmp_path, "--database", str(path)))
        assert str(path) in line and "database_path" in line


def test_a_scorer_may_be_a_model_file_path(tmp_path):
    from autofocus.service.preflight import check_service_settings
    from autofocus.settings import load_settings

    model = next((REPO / "models").rglob("*.onnx"))
    settings = load_settings(None, database_path=tmp_path / "jobs.db",
                             focus={"scorer": str(model)})
    check_service_settings(settings)  # no error
    assert (tmp_path / "jobs.db").is_file()
