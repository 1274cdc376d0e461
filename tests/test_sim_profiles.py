"""Simulated hardware profiles (issue 22): stage and camera speeds as stated assumptions."""

from __future__ import annotations

import json

import pytest
from autofocus_drivers.sim import SimConfig, SimConfigError, SimulatedMicroscope
from autofocus_drivers.sim.camera import CameraConfig
from autofocus_drivers.sim.stage import StageConfig
from typer.testing import CliRunner

from autofocus.cli import _load_commands
from autofocus.cli.app import app
from autofocus.logging import configure_logging


def setup_module() -> None:
    configure_logging("console", "warning")  # stdout carries only the JSON
    _load_commands()


def _hardware_s(profile: str, **kw) -> tuple[float, float]:
    """(seconds for one 10 µm move, seconds for one snap) on `profile`."""
    mic = SimulatedMicroscope(SimConfig.preset("beads", hardware_profile=profile, **kw), seed=0)
    t = mic.clock.now_s()
    mic.move_z(10.0)
    t_move = mic.clock.now_s() - t
    t = mic.clock.now_s()
    mic.snap()
    return t_move, mic.clock.now_s() - t


def test_default_profile_is_the_simulator_as_it_was():
    config = SimConfig.preset("beads")
    assert config.stage == StageConfig()  # same speed, settle, backlash as before profiles
    assert (config.camera.exposure_ms, config.camera.readout_ms) == (10.0, 0.0)
    assert config.camera.max_fps is None and not config.stage.sequenceable


def test_profiles_have_their_stated_speeds():
    move, snap = _hardware_s("default")
    assert move == pytest.approx(10 / 500 + 0.020, abs=1e-3)
    assert snap == pytest.approx(0.010)
    move, snap = _hardware_s("motorized")
    assert move == pytest.approx(10 / 300 + 0.040, abs=1e-3)
    assert snap == pytest.approx(0.030)  # 20 ms exposure + 10 ms readout
    move, snap = _hardware_s("piezo")
    assert move == pytest.approx(10 / 2000 + 0.005, abs=1e-3)
    assert snap == pytest.approx(0.012)  # a snap cannot overlap its own readout
    piezo = SimConfig.preset("beads", hardware_profile="piezo")
    assert piezo.stage.sequenceable
    assert piezo.camera.frame_interval_s(10.0) == pytest.approx(0.010)  # readout overlapped
    motorized = SimConfig.preset("beads", hardware_profile="motorized")
    assert motorized.camera.frame_interval_s(20.0) == pytest.approx(1 / 30)  # ≤ 30 fps


def test_explicit_exposure_wins_over_the_profile():
    _, snap = _hardware_s("motorized", exposure_ms=5.0)
    assert snap == pytest.approx(0.015)


def test_unknown_profile_is_refused():
    with pytest.raises(SimConfigError, match="hardware_profile"):
        SimConfig.preset("beads", hardware_profile="warp")
    with pytest.raises(SimConfigError, match="max_fps"):
        CameraConfig(max_fps=0.0)


def test_cli_focus_takes_the_profile_and_exposure_overrides_it():
    runner = CliRunner()

    def run(*args: str) -> dict:
        res = runner.invoke(app, ["focus", "--driver", "sim", "--seed", "1", "--json", *args])
        assert res.exit_code == 0, res.output
        return json.loads(res.stdout)

    default, motorized = run(), run("--hardware-profile", "motorized")
    # 20 ms exposure + 10 ms readout against 10 ms: three times the exposure time per frame.
    assert motorized["timing"]["exposure_s"] / motorized["frames"] == pytest.approx(0.030)
    assert default["timing"]["exposure_s"] / default["frames"] == pytest.approx(0.010)
    short = run("--hardware-profile", "motorized", "--exposure-ms", "5")
    assert short["timing"]["exposure_s"] / short["frames"] == pytest.approx(0.015)
    res = runner.invoke(app, ["focus", "--driver", "sim", "--hardware-profile", "warp"])
    assert res.exit_code == 2
