"""Configuration mistakes end in one line naming the file, line and key, exit code 2,
and a daemon that lacks the Z limits its driver needs refuses to start (real CLI
subprocesses)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from autofocus.settings import ConfigError, load_settings

REPO = Path(__file__).resolve().parents[1]


def _refused(*args: str) -> str:
    """`python -m autofocus ARGS` must exit 2 with one line on stderr and no traceback;
    returns that line."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "200"}
    env.pop("AUTOFOCUS_CONFIG", None)
    proc = subprocess.run(
        [sys.executable, "-m", "autofocus", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    return lines[0]


def _config(tmp_path: Path, text: str) -> Path:
    cfg = tmp_path / "af.toml"
    cfg.write_text(text)
    return cfg


def test_malformed_toml_is_one_line_exit_2(tmp_path):
    cfg = _config(tmp_path, "port = 8765\n[focus]\nrange_um = = 5\n")
    line = _refused("serve", "--config", str(cfg))
    assert str(cfg) in line and "line 3" in line


@pytest.mark.parametrize(
    ("text", "key", "line", "suggestion"),
    [
        ("[focus]\nrnage_um = 5\n", "rnage_um", 2, "range_um"),
        ("prot = 9000\n", "prot", 1, "port"),
        ("[sim]\nseed = 1\n\n[sim]\n", None, None, None),  # duplicate table: TOML error
        ("[focus]\nrange_um = 5\n[mm]\ntimeout = 3\n", "timeout", 4, "timeout_s"),
    ],
)
def test_unknown_keys_name_file_line_and_nearest_key(tmp_path, text, key, line, suggestion):
    cfg = _config(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_settings(cfg)
    msg = str(info.value)
    assert "\n" not in msg and str(cfg) in msg
    if key is not None:
        assert f"line {line}" in msg and key in msg and f"did you mean {suggestion!r}" in msg


def test_bad_values_name_the_line(tmp_path):
    cfg = _config(tmp_path, '[focus]\nrange_um = 5\ntolerance_um = "fine"\n')
    with pytest.raises(ConfigError) as info:
        load_settings(cfg)
    assert "line 3" in str(info.value) and "focus.tolerance_um" in str(info.value)
    assert "line 3" in _refused("focus", "--config", str(cfg))


def test_cli_line_keeps_the_table_name(tmp_path):
    cfg = _config(tmp_path, "[focus]\nrnage_um = 5\n")
    line = _refused("serve", "--config", str(cfg))
    assert "line 2: unknown key 'rnage_um' in [focus] (did you mean 'range_um'?)" in line


def test_micromanager_without_limits_refuses_to_start(tmp_path):
    line = _refused(
        "serve",
        "--driver",
        "micromanager",
        "--mm-port",
        "4827",
        "--database",
        str(tmp_path / "x.db"),
        "--port",
        "1",
    )
    assert "z_min_um" in line and "z_max_um" in line
