"""Priors for revisits (issue 22): `expected_z_um` with `expected_sigma_um` in `guided`."""

from __future__ import annotations

import pytest
from autofocus_drivers.sim import SimConfig, SimulatedMicroscope

from autofocus.search.focus import focus


def _sim(seed: int, focus_z_um: float, **preset) -> SimulatedMicroscope:
    config = SimConfig.preset("beads", focus_z_um=focus_z_um, noise_model="gaussian", **preset)
    return SimulatedMicroscope(config, seed=seed)


def _run(mic: SimulatedMicroscope, prior_z_um: float | None, sigma_um: float | None):
    dof = mic.config.optics.depth_of_field_um
    return focus(mic, center_z_um=0.0, range_um=50.0, tolerance_um=dof / 4, timeout_s=None,
                 expected_z_um=prior_z_um, expected_sigma_um=sigma_um)


@pytest.mark.parametrize("seed,offset_dof", [(1, 0.0), (2, 0.8), (3, -1.2), (4, 1.9)])
def test_a_prior_near_focus_finds_it_in_a_few_frames(seed, offset_dof):
    mic = _sim(seed, 6.0)
    dof = mic.config.optics.depth_of_field_um
    truth = mic.true_focus_z_um()
    result = _run(mic, truth + offset_dof * dof, dof)
    assert result.success, result.reason
    assert abs(mic.physical_z_um - mic.true_focus_z_um()) <= dof / 4
    assert result.details["path"] == "prior"
    assert result.frames <= 10  # a blind search of the same range takes about 28
    lo, hi = result.details["prior"]["rival_check_um"]
    assert lo < truth < hi and hi - lo < 10 * dof  # confined, and says where
    assert "confined" in result.details["prior"]["rival_check"]
    # Every frame lies inside the confined check: nothing else of the range was visited.
    assert all(lo - 1e-9 <= m.z_um <= hi + 1e-9 for m in result.curve)


def test_a_prior_with_nothing_near_falls_back_to_the_full_search():
    mic = _sim(5, -8.0)
    dof = mic.config.optics.depth_of_field_um
    result = _run(mic, mic.true_focus_z_um() + 20.0, dof)
    assert result.success, result.reason
    assert abs(mic.physical_z_um - mic.true_focus_z_um()) <= dof / 4
    assert "prior_fallback" in result.details
    assert result.details["path"] != "prior"


def test_a_second_plane_within_the_priors_reach_is_not_waved_through():
    # Debris 6 µm above the specimen, inside a wide prior's reach: the prior path must
    # not succeed on its own; the full search then names both planes.
    mic = _sim(6, 2.0, debris_dz_um=6.0)
    result = _run(mic, mic.true_focus_z_um(), 2.0)
    assert "prior_fallback" in result.details
    assert not result.success and result.reason_code == "rival_peak", result.reason


def test_without_sigma_nothing_changes():
    a = _run(_sim(7, 3.0), 3.0, None)
    b = _run(_sim(7, 3.0), None, None)
    assert a.frames == b.frames and a.best_z_um == pytest.approx(b.best_z_um)
    assert "prior" not in a.details


def test_sigma_needs_a_centre_and_must_be_positive():
    mic = _sim(8, 0.0)
    with pytest.raises(ValueError, match="expected_z_um"):
        _run(mic, None, 1.0)
    with pytest.raises(ValueError, match="expected_sigma_um"):
        _run(mic, 0.0, -1.0)
    assert not mic.commanded_z_um  # refused before any move
