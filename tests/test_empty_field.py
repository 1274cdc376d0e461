"""The classical empty-field test and its part in focusnet-v3's `no_specimen_p`.

Frames are made here (Poisson light through a vignetted field, Gaussian
spots) or by the model pipeline's own no-specimen and sparse-stack
generators, at seeds the model's evaluation does not use.
"""

from __future__ import annotations

import numpy as np
import pytest

from autofocus.scoring.empty_field import (
    P_EMPTY,
    combine_no_specimen,
    empty_field_p,
    empty_field_test,
)

SIDE = 256


def vignetted(rng: np.random.Generator, photons: float = 2000.0, falloff: float = 0.5,
              side: int = SIDE) -> np.ndarray:
    """An empty field under uneven light (brightest off-centre), with shot and read noise."""
    yy, xx = np.mgrid[0:side, 0:side].astype(np.float64)
    r2 = ((yy - 0.3 * side) ** 2 + (xx - 0.65 * side) ** 2) / side**2
    light = photons * (1.0 - falloff * r2)
    return (rng.poisson(light) + rng.normal(100.0, 3.0, light.shape)).astype(np.float32)


def with_spot(frame: np.ndarray, y: float, x: float, peak_sigmas: float,
              sigma_px: float = 1.5) -> np.ndarray:
    """`frame` plus a Gaussian spot whose peak is `peak_sigmas` times the local noise σ."""
    yy, xx = np.mgrid[0:frame.shape[0], 0:frame.shape[1]].astype(np.float64)
    noise = np.sqrt(float(np.median(frame)))  # shot noise dominates at these levels
    spot = np.exp(-((yy - y) ** 2 + (xx - x) ** 2) / (2 * sigma_px**2))
    return (frame + peak_sigmas * noise * spot).astype(np.float32)


def test_an_empty_field_under_uneven_light_is_empty():
    rng = np.random.default_rng(5)
    for falloff in (0.0, 0.3, 0.6):
        t = empty_field_test(vignetted(rng, falloff=falloff))
        assert t.empty and t.p_empty > 0.5 * P_EMPTY, (falloff, t)


@pytest.mark.parametrize(("y", "x"), [(128.0, 100.0), (1.0, 140.0), (254.0, 254.0)])
def test_one_visible_bead_anywhere_is_not_empty(y, x):
    # 5 noise σ at its peak: the "visible" bar of the model's evaluation; also at the
    # border and in a corner, where a band-pass sees only half its surroundings.
    frame = with_spot(vignetted(np.random.default_rng(6)), y, x, 5.0)
    t = empty_field_test(frame)
    assert not t.empty and t.p_empty == 0.0, t


def test_a_large_faint_blob_is_not_empty():
    # A defocused bead: 1.5 noise σ per pixel at its centre, 12 px σ (no spot-sized detail).
    frame = with_spot(vignetted(np.random.default_rng(7)), 150.0, 90.0, 1.5, sigma_px=12.0)
    t = empty_field_test(frame)
    assert not t.empty, t


def test_generated_blank_frames_are_mostly_empty():
    from autofocus_models.pipeline.v3.data import no_specimen_frame

    rng = np.random.default_rng(11)
    for kind in ("flat", "dark", "noise", "saturated"):
        empty = [empty_field_test(no_specimen_frame(rng, (192, 192), kind)[0]).empty
                 for _ in range(30)]
        # JPEG-compressed 8-bit frames (their block artefacts read as structure) are the
        # usual exceptions.
        assert np.mean(empty) >= 0.85, (kind, np.mean(empty))


def test_in_focus_visible_sparse_specimens_are_not_empty():
    from autofocus_models.pipeline.synth import make_stack
    from autofocus_models.pipeline.v3.evaluate import matched_filter_snr

    checked = 0
    for seed in range(3_400_000, 3_400_012):
        st = make_stack(seed, "sparse", shape=(192, 192), n_planes=5, dz_dof=[0.0, 0.5, 1.0])
        for frame in st.frames:
            if matched_filter_snr(frame) >= 12.0:  # a spot well above any blank frame's
                checked += 1
                assert not empty_field_test(frame).empty, (seed, st.meta.get("kind"))
    assert checked >= 10


def test_limits_grow_with_the_frame_so_large_noise_frames_stay_empty():
    rng = np.random.default_rng(0)
    small = empty_field_test(rng.normal(100.0, 5.0, (192, 192)).astype(np.float32))
    large = empty_field_test(rng.normal(100.0, 5.0, (1024, 1024)).astype(np.float32))
    assert large.spot_limit > small.spot_limit
    assert small.empty and large.empty, (small, large)


def test_frames_it_cannot_judge():
    assert empty_field_test(np.zeros((20, 300), np.uint16)).p_empty == 0.0
    nan = np.full((64, 64), 10.0, np.float32)
    nan[3, 3] = np.nan
    assert empty_field_test(nan).p_empty == 0.0
    with pytest.raises(ValueError, match="2-D"):
        empty_field_test(np.zeros((64, 64, 3), np.uint8))
    assert empty_field_p([]).shape == (0,)


def test_combination_is_the_larger_probability():
    p = combine_no_specimen(np.array([0.1, 0.8, 0.0]), np.array([0.99, 0.0, 0.0]))
    assert p.tolist() == [0.99, 0.8, 0.0]


def test_estimate_raises_the_models_probability_where_the_field_is_empty():
    from autofocus.scoring.preprocess import prepare_raw
    from autofocus.scoring.registry import get_scorer

    v3 = get_scorer("focusnet-v3", provider="cpu")
    rng = np.random.default_rng(5)
    frames = [vignetted(rng, falloff=f) for f in (0.3, 0.6)]
    frames.append(with_spot(vignetted(rng), 128.0, 128.0, 8.0))
    model_p = np.clip(v3.run_outputs(frames, ("no_specimen_p",))["no_specimen_p"], 0, 1)
    est = v3.estimate(frames, np.arange(3.0))
    classical = empty_field_p([prepare_raw(f) for f in frames])
    np.testing.assert_allclose(est.no_specimen_p, np.maximum(model_p, classical))
    assert np.all(est.no_specimen_p[:2] >= 0.97)  # the guided search's bar for both probes
    assert est.no_specimen_p[2] == pytest.approx(model_p[2])  # a bead: the model decides


def test_guided_search_on_a_blank_simulated_field_fails_with_no_specimen():
    """A dark field (read noise only) ends with `no_specimen`, not a "rival" between noise
    bumps (what it reported before). It is decided after the sweep, not from the two probe
    frames: those cannot tell an empty field from dim beads 20 µm out of focus, which look
    the same to the classical test (bench trials of such beads stopped early when it did)."""
    import json

    from typer.testing import CliRunner

    from autofocus.cli import _load_commands
    from autofocus.cli.app import app
    from autofocus.logging import configure_logging

    configure_logging("console", "warning")
    _load_commands()
    runner = CliRunner()
    res = runner.invoke(app, ["focus", "--seed", "1", "--scorer", "focusnet-v3",
                              "--photons", "1e-9", "--json"])
    report = json.loads(res.stdout)
    assert res.exit_code == 1 and report["reason_code"] == "no_specimen", res.output
    empty, judged = report["details"]["empty_frames"]
    assert empty >= 0.85 * judged
    # The same beads with light: found as before.
    res = runner.invoke(app, ["focus", "--seed", "1", "--scorer", "focusnet-v3", "--json"])
    report = json.loads(res.stdout)
    assert res.exit_code == 0 and report["success"] is True, res.output


def test_dim_beads_far_out_of_focus_are_searched_not_called_empty():
    """The probes of a search that starts 10-22 µm from dim beads look empty to the
    classical test; the search must go on (the field-level probability is the graph's)."""
    from autofocus_drivers.sim import SimulatedMicroscope

    from autofocus.bench.search import make_trials, trial_config
    from autofocus.scoring.registry import get_scorer
    from autofocus.search.focus import focus

    scorer = get_scorer("focusnet-v3")
    trials = [t for t in make_trials(10, specimens=("beads",), photon_levels=(10.0,))
              if abs(t.offset_um) > 9.0]
    assert len(trials) >= 5
    for t in trials:
        config = trial_config(t)
        mic = SimulatedMicroscope(config, seed=t.seed)
        dof = config.optics.depth_of_field_um
        result = focus(mic, scorer=scorer, center_z_um=0.0, range_um=50.0,
                       tolerance_um=dof / 4, max_frames=400, timeout_s=None)
        assert result.reason_code != "no_specimen", (t, result.reason)
