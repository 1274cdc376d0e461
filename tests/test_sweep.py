"""Streamed Z sweeps (issue 22): the simulator's sweep physics and the engine's use of it."""

from __future__ import annotations

import numpy as np
import pytest
from autofocus_drivers.base import sweep_of
from autofocus_drivers.errors import LimitError
from autofocus_drivers.sim import SimConfig, SimulatedMicroscope

from autofocus.scoring.registry import get_scorer
from autofocus.search.focus import focus
from autofocus.service.jobs.hardware import GuardedMicroscope, HardwareWatch


def _sim(profile: str, seed: int = 1, **kw) -> SimulatedMicroscope:
    config = SimConfig.preset("beads", focus_z_um=0.0, hardware_profile=profile,
                              noise_model="none", **kw)
    return SimulatedMicroscope(config, seed=seed)


def _sweep(mic: SimulatedMicroscope, zs: list[float], smear_um: float | None):
    mic.move_z(mic.sweep_start_um(zs, max_smear_um=smear_um) - 5.0)
    mic.move_z(mic.sweep_start_um(zs, max_smear_um=smear_um))  # approached from below
    t = mic.clock.now_s()
    frames = mic.sweep_z(zs, max_smear_um=smear_um)
    return frames, mic.clock.now_s() - t


def test_a_moving_exposure_is_blurred_by_the_travel_and_a_sequenced_one_is_not():
    tenengrad = get_scorer("tenengrad")
    zs = [-0.5, 0.5, 1.5, 2.5]  # the carriage sits 0.5 µm below commanded: 0.5 is focus
    still = _sim("default")
    still_scores = []
    for z in zs:
        still.move_z(z - 5.0)
        still.move_z(z)
        still_scores.append(tenengrad.score([still.snap()])[0])
    slow, _ = _sweep(_sim("default"), zs, 0.1)
    fast, _ = _sweep(_sim("default"), zs, None)  # 1 µm per exposure at 100 fps
    piezo, _ = _sweep(_sim("piezo"), zs, None)
    at_focus = [tenengrad.score([f for _, f in frames])[1] for frames in (slow, fast, piezo)]
    assert [z for z, _ in fast] == zs
    assert at_focus[0] == pytest.approx(still_scores[1], rel=0.05)  # little travel
    assert at_focus[1] < 0.9 * still_scores[1]  # 1 µm of travel smears the focus frame
    piezo_still = _sim("piezo")
    piezo_still.move_z(0.5)
    ref = tenengrad.score([piezo_still.snap()])[0]
    assert at_focus[2] == pytest.approx(ref, rel=0.02)  # stepped, not smeared


def test_a_sweep_respects_the_frame_rate_and_the_smear_limit():
    zs = list(np.arange(0.0, 10.0, 0.2))  # 50 frames 0.2 µm apart
    _, took_s = _sweep(_sim("motorized"), zs, None)
    assert took_s >= (len(zs) - 1) / 30.0  # ≤ 30 fps
    _, took_s = _sweep(_sim("default"), zs, 0.1)  # 0.1 µm per 10 ms exposure: 10 µm/s
    assert took_s >= (zs[-1] - zs[0]) / 10.0


def test_a_sweep_outside_the_limits_is_refused_before_moving():
    mic = _sim("default")
    mic.move_z(90.0)
    before = list(mic.commanded_z_um)
    with pytest.raises(LimitError):
        mic.sweep_z([95.0, 99.0, 103.0])
    assert list(mic.commanded_z_um) == before and mic.z_um == 90.0
    with pytest.raises(ValueError, match="ascending"):
        mic.sweep_z([95.0, 94.0])


@pytest.mark.parametrize("stream", ["sequenced", "always"])
def test_the_engine_streams_long_batches_and_records_every_position(tmp_path, stream):
    profile = "piezo" if stream == "sequenced" else "default"
    mic = SimulatedMicroscope(SimConfig.preset("cells", focus_z_um=4.0, hardware_profile=profile,
                                               noise_model="gaussian"), seed=3)
    recorded: list[float] = []
    guarded = GuardedMicroscope(mic, HardwareWatch(5.0), on_command=recorded.append)
    assert sweep_of(guarded) is not None
    dof = mic.config.optics.depth_of_field_um
    result = focus(guarded, range_um=40, tolerance_um=dof / 4, stream=stream, timeout_s=None)
    assert result.success, result.reason
    assert abs(mic.physical_z_um - mic.true_focus_z_um()) <= dof / 4
    assert result.details["sweeps"] >= 1
    # Every position the stage went to was recorded durably first, and inside the limits.
    assert list(mic.commanded_z_um) == recorded == list(result.commanded_z_um)
    lim = mic.z_limits_um
    assert all(lim.min_um <= z <= lim.max_um for z in mic.commanded_z_um)


def test_the_default_profile_does_not_stream_unless_asked():
    mic = _sim("default")
    result = focus(mic, range_um=40, tolerance_um=0.34, timeout_s=None)
    assert "sweeps" not in result.details
    with pytest.raises(ValueError, match="stream"):
        focus(_sim("default"), range_um=40, stream="sometimes")
