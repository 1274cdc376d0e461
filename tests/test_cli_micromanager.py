"""The documented Micro-Manager commands, run as a user runs them (a subprocess, any folder).

Real MMCore (pycromanager headless, Python backend) with the DemoCamera/DStage adapters
of `mm-test-adapters`; settings from a real TOML file and real environment variables.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from autofocus_drivers.errors import ConfigurationError

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.mm


@pytest.fixture(scope="module")
def adapter_dir() -> Path:
    try:
        from autofocus_drivers.micromanager import demo_adapter_dir

        return demo_adapter_dir()
    except Exception as exc:  # noqa: BLE001
        pytest.skip(f"mm-test-adapters not installed ({exc})")


def run_cli(*args: str, cwd: Path, env: dict[str, str] | None = None, timeout_s: float = 180):
    """`python -m autofocus ARGS` in `cwd` with a clean AUTOFOCUS_* environment."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("AUTOFOCUS_")}
    base["PYTHONPATH"] = str(ROOT) + os.pathsep + base.get("PYTHONPATH", "")
    base.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "autofocus", *args],
        cwd=cwd, env=base, capture_output=True, text=True, timeout=timeout_s,
    )


def test_documented_headless_command_works_from_any_folder(adapter_dir, tmp_path):
    """The README/docs command, with the config named relative to the adapter folder."""
    proc = run_cli(
        "focus", "--driver", "micromanager", "--mm-headless", str(adapter_dir),
        "--mm-config", "MMConfig_demo.cfg", "--z-min-um", "-100", "--z-max-um", "100",
        "--start-z-um", "30", "--range-um", "100", "--json",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["driver"] == "micromanager" and report["success"] is True
    # DemoCamera's image is sharpest (brightest) at Z = 0.
    assert abs(report["best_z_um"]) < 1.0
    assert report["start_z_um"] == pytest.approx(30.0)


def test_driver_from_environment_is_used_when_no_flag_is_given(tmp_path):
    """AUTOFOCUS_DRIVER=micromanager must not silently run the simulator."""
    proc = run_cli("focus", "--json", cwd=tmp_path, env={"AUTOFOCUS_DRIVER": "micromanager"})
    assert proc.returncode == 2, proc.stdout
    message = " ".join(proc.stderr.split())
    assert "could not open the micromanager microscope" in message
    # The limits error names the flags that fix it.
    assert "--z-min-um" in message and "--z-max-um" in message


def test_driver_and_headless_options_from_toml(adapter_dir, tmp_path):
    config = tmp_path / "autofocus.toml"
    config.write_text(
        'driver = "micromanager"\n'
        "z_min_um = -100.0\n"
        "z_max_um = 100.0\n"
        "[mm]\n"
        f'headless_adapter_dir = "{adapter_dir}"\n'
        'config_file = "MMConfig_demo.cfg"\n'
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    proc = run_cli(
        "focus", "--config", str(config), "--start-z-um", "20", "--range-um", "80", "--json",
        cwd=elsewhere,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["driver"] == "micromanager"
    # --driver on the command line still wins over the file.
    proc = run_cli("focus", "--config", str(config), "--driver", "sim", "--json", cwd=elsewhere)
    assert proc.returncode in (0, 1), proc.stderr
    assert json.loads(proc.stdout)["driver"] == "sim"


# ------------------------------------------------------------------ settings (in-process)
def test_micromanager_settings_from_environment(monkeypatch, tmp_path):
    from autofocus.settings import load_settings

    monkeypatch.setenv("AUTOFOCUS_DRIVER", "micromanager")
    monkeypatch.setenv("AUTOFOCUS_MM__CONTINUOUS_FOCUS", "pause")
    monkeypatch.setenv("AUTOFOCUS_MM__XY_STAGE", "XY")
    monkeypatch.setenv("AUTOFOCUS_MM__CONFIG_FILE", "MMConfig_demo.cfg")
    settings = load_settings(None)
    assert settings.driver == "micromanager"
    assert settings.mm.continuous_focus == "pause"
    assert settings.mm.xy_stage == "XY"
    assert settings.mm.config_file == Path("MMConfig_demo.cfg")
    assert load_settings(None, driver="sim").driver == "sim"


def test_bad_continuous_focus_setting_is_refused(monkeypatch):
    from autofocus.settings import ConfigError, load_settings

    monkeypatch.setenv("AUTOFOCUS_MM__CONTINUOUS_FOCUS", "ignore")
    with pytest.raises(ConfigError, match="continuous_focus"):
        load_settings(None)


def test_limits_error_names_the_command_line_flags():
    from autofocus.service.microscopes import configured_limits
    from autofocus.settings import load_settings

    with pytest.raises(ConfigurationError, match=r"--z-min-um and --z-max-um"):
        configured_limits(load_settings(None, driver="micromanager"), None)


def test_resolve_config_file_prefers_the_adapter_folder(adapter_dir, tmp_path, monkeypatch):
    from autofocus_drivers.micromanager import resolve_config_file

    monkeypatch.chdir(tmp_path)
    (tmp_path / "MMConfig_demo.cfg").write_text("# a different file in the current folder\n")
    assert resolve_config_file(adapter_dir, "MMConfig_demo.cfg") == (
        adapter_dir / "MMConfig_demo.cfg"
    ).resolve()
    absolute = tmp_path / "MMConfig_demo.cfg"
    assert resolve_config_file(adapter_dir, absolute) == absolute.resolve()
    (tmp_path / "beads.cfg").write_text("# only in the current folder\n")
    assert resolve_config_file(adapter_dir, "beads.cfg") == (tmp_path / "beads.cfg").resolve()


def test_missing_relative_config_names_every_place_looked(adapter_dir, tmp_path, monkeypatch):
    from autofocus_drivers.micromanager import resolve_config_file

    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigurationError) as err:
        resolve_config_file(adapter_dir, "NoSuch.cfg")
    message = str(err.value)
    assert "NoSuch.cfg not found" in message
    assert str(adapter_dir / "NoSuch.cfg") in message and str(tmp_path / "NoSuch.cfg") in message
