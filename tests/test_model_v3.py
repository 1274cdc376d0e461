"""focusnet-v3: the defocus estimate API, the signed focus, and ONNX/training parity.

The runtime parts need onnxruntime only; the torch parity test is skipped
without the `train` extra.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from autofocus_models.pipeline.synth import make_stack

from autofocus.scoring.base import DefocusEstimate, DefocusEstimator, offers_estimate
from autofocus.scoring.defocus import (
    SPECTRUM_BANDS,
    PairHead,
    fit_focus,
    frame_spectrum,
    pair_context_features,
    spectrum_pair_features,
)
from autofocus.scoring.model import (
    OnnxDefocusScorer,
    model_input,
    shipped_models,
)
from autofocus.scoring.preprocess import RAW_PREPROCESS_VERSION
from autofocus.scoring.registry import get_scorer

V3 = shipped_models()[3]


@pytest.fixture(scope="module")
def v3() -> OnnxDefocusScorer:
    scorer = get_scorer("focusnet-v3", provider="cpu")
    assert isinstance(scorer, OnnxDefocusScorer)
    return scorer


def test_only_models_with_a_distance_head_offer_the_estimate(v3):
    assert isinstance(v3, DefocusEstimator) and offers_estimate(v3)
    for name in ("focusnet-v1", "focusnet-v2", "tenengrad", "vol", "brenner"):
        assert not offers_estimate(get_scorer(name)), name
    assert get_scorer("focusnet", provider="cpu").model_path == V3


def test_estimate_has_one_entry_per_frame_in_range(v3):
    st = make_stack(3_100_000, "train", shape=(128, 160), n_planes=7)
    est = v3.estimate(list(st.frames), st.dz_um + 40.0, dof_um=st.dof_um)
    assert isinstance(est, DefocusEstimate)
    for arr in (est.distance_dof, est.sigma_dof, est.no_specimen_p):
        assert arr.shape == (7,) and arr.dtype == np.float64 and np.all(np.isfinite(arr))
    assert np.all(est.distance_dof >= 0) and np.all(est.sigma_dof > 0)
    assert np.all((est.no_specimen_p >= 0) & (est.no_specimen_p <= 1))
    assert est.dof_um == st.dof_um and est.distance_um is not None
    assert est.focus_z_um is not None and est.focus_sigma_um > 0
    assert 0.5 <= est.side_p <= 1.0 and isinstance(est.side_settled, bool)
    # Seven planes around focus: the fused focus lands near it.
    assert abs(est.focus_z_um - 40.0) < 3 * st.dof_um
    # Without optics no µm figure, only DOF units.
    bare = v3.estimate(list(st.frames), st.dz_um)
    assert bare.dof_um is None and bare.focus_z_um is None and bare.distance_um is None
    np.testing.assert_allclose(bare.distance_dof, est.distance_dof)


def test_estimate_rejects_mismatched_z(v3):
    frames = [np.zeros((64, 64), np.uint16)] * 2
    with pytest.raises(ValueError, match="2 frames but 3"):
        v3.estimate(frames, [0.0, 1.0, 2.0])
    with pytest.raises(ValueError, match="finite"):
        v3.estimate(frames, [0.0, float("nan")])
    with pytest.raises(ValueError, match="dof_um"):
        v3.estimate(frames, [0.0, 1.0], dof_um=-1.0)


def test_two_frames_a_known_step_apart_give_the_side_of_focus(v3):
    """Frame pairs 1 DOF apart, 2–4 DOF from focus on either side (simulator physics)."""
    wrong = []
    for seed in range(4):
        st = make_stack(3_200_000 + seed, "train", shape=(192, 192),
                        dz_dof=[-4, -3, -2, 2, 3, 4])
        z = st.dz_um + 100.0
        for a, b in ((0, 1), (1, 2), (3, 4), (4, 5)):
            est = v3.estimate([st.frames[a], st.frames[b]], [z[a], z[b]], dof_um=st.dof_um)
            mid = 0.5 * (z[a] + z[b])
            if np.sign(est.focus_z_um - mid) != np.sign(100.0 - mid):
                wrong.append((seed, a, b))
    assert len(wrong) <= 2, wrong  # 16 pairs; the held-out benchmark reports the rate


def test_blank_and_saturated_frames_are_flagged_and_a_specimen_is_not(v3):
    from autofocus_models.pipeline.v3.data import no_specimen_frame

    rng = np.random.default_rng(1)
    blanks = [no_specimen_frame(rng, (192, 192), kind)[0] for kind in ("dark", "saturated")]
    st = make_stack(3_300_000, "train", shape=(192, 192), n_planes=3, dz_dof=[0.0, 0.5, 1.0])
    p = v3.estimate([*blanks, *st.frames], np.arange(5.0)).no_specimen_p
    assert np.all(p[:2] > 0.5) and np.all(p[2:] < 0.5), p


def test_fit_focus_is_exact_on_a_clean_v_and_pairs_settle_the_side():
    z = np.array([0.0, 1.0, 2.0, 5.0])
    focus = 2.7
    d = np.abs(z - focus)
    fit = fit_focus(z, d, np.full(4, 0.1))
    assert fit.focus_z_um == pytest.approx(focus, abs=1e-9)
    # Two frames: the distances alone cannot tell 3 − 1 from 4 + 1... mirrored; a pair says.
    two = fit_focus(np.array([0.0, 1.0]), np.array([3.0, 2.0]), np.array([1.5, 1.5]))
    assert two.focus_z_um == pytest.approx(3.0, abs=0.6)
    up = fit_focus(np.array([0.0, 1.0]), np.array([2.0, 2.0]), np.array([1.0, 1.0]),
                   pairs=[(0, 1, 6.0)])
    down = fit_focus(np.array([0.0, 1.0]), np.array([2.0, 2.0]), np.array([1.0, 1.0]),
                     pairs=[(0, 1, -6.0)])
    assert up.focus_z_um > 0.5 > down.focus_z_um
    assert fit_focus(np.array([1.0, 1.0]), np.ones(2), np.ones(2)).focus_z_um is None


def test_pair_head_is_antisymmetric():
    rng = np.random.default_rng(0)
    head = PairHead(rng.normal(size=37), np.abs(rng.normal(size=37)) + 0.1)
    a, b = rng.normal(size=12), rng.normal(size=12)
    fwd = head.logodds(a, -1.0, 0.5, b, -2.0, 1.5)
    back = head.logodds(b, -2.0, 1.5, a, -1.0, 0.5)
    assert fwd == pytest.approx(-back)


def test_version_2_pair_head_is_antisymmetric_and_needs_spectra():
    rng = np.random.default_rng(2)
    n = 4 * SPECTRUM_BANDS + 37
    head = PairHead(rng.normal(size=n), np.abs(rng.normal(size=n)) + 0.1, version=2)
    fwd_args, back_args = _pair_inputs(rng)
    fwd = head.logodds(*fwd_args)
    back = head.logodds(*back_args)
    assert fwd == pytest.approx(-back)
    with pytest.raises(ValueError, match="frame_spectrum"):
        head.logodds(*fwd_args[:6])


def test_frame_spectrum_ratio_cancels_the_specimen_and_sees_blur():
    """Band-power change between two blurs of one field: same for two different specimens,
    and the sharper frame has more high-frequency power (the version-2 pair feature)."""
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(3)
    changes = []
    for seed in (0, 1):
        field = gaussian_filter(np.random.default_rng(seed).normal(size=(384, 384)), 1.0)
        far = 1000 + 50 * gaussian_filter(field, 4.0)
        near = 1000 + 50 * gaussian_filter(field, 2.0)
        sf, sn = frame_spectrum(far), frame_spectrum(near)
        assert sf.shape == (SPECTRUM_BANDS + 1,) and sf[-1] == pytest.approx(1000, rel=1e-3)
        changes.append(spectrum_pair_features(sf, sn)[:SPECTRUM_BANDS])
    assert np.all(changes[0][4:12] > 0)  # mid/high bands gain power towards focus
    np.testing.assert_allclose(changes[0][2:12], changes[1][2:12], atol=0.5)
    with pytest.raises(ValueError, match="2-D"):
        frame_spectrum(rng.normal(size=(4, 4)))


def test_fit_reports_whether_the_side_is_settled():
    z, d, s = np.array([0.0, 1.0]), np.array([2.0, 2.0]), np.array([1.0, 1.0])
    sure = fit_focus(z, d, s, pairs=[(0, 1, 6.0)])
    guess = fit_focus(z, d, s, pairs=[(0, 1, 0.2)])
    assert sure.side_settled and sure.side_p > 0.99
    assert sure.pair_support == pytest.approx(6.0)  # the pair backs the chosen side
    assert not guess.side_settled and 0.5 <= guess.side_p < 0.88
    # Pair evidence of log-odds ≥ 2 settles the side even where the V-fit is torn.
    torn = fit_focus(z, np.array([2.0, 2.4]), np.array([0.5, 0.5]), pairs=[(0, 1, 2.5)])
    assert torn.rival_chi2 - torn.chi2 < 4.0
    assert torn.pair_support == pytest.approx(2.5) and torn.side_settled
    # An unsettled side widens the uncertainty to span the mirror solution.
    assert guess.focus_sigma_um >= abs(guess.rival_z_um - guess.focus_z_um) / 2 - 1e-9
    none = fit_focus(np.array([1.0, 1.0]), np.ones(2), np.ones(2))
    assert none.side_p is None and none.side_settled is None


def _v3_head(rng: np.random.Generator, hidden: int = 8) -> PairHead:
    n_x, n_c = 4 * SPECTRUM_BANDS + 37, 2 * SPECTRUM_BANDS + 16
    return PairHead(rng.normal(size=hidden), np.abs(rng.normal(size=n_x)) + 0.1, version=3,
                    hidden_weights=0.3 * rng.normal(size=(hidden, n_x + n_c)),
                    hidden_bias=rng.normal(size=hidden), context_mean=rng.normal(size=n_c),
                    context_scale=np.abs(rng.normal(size=n_c)) + 0.5)


def _pair_inputs(rng: np.random.Generator) -> tuple:
    a, b = rng.normal(size=12), rng.normal(size=12)
    sa = np.concatenate([np.abs(rng.normal(size=SPECTRUM_BANDS)) + 0.01, [100.0]])
    sb = np.concatenate([np.abs(rng.normal(size=SPECTRUM_BANDS)) + 0.01, [120.0]])
    return (a, -1.0, 0.5, b, -2.0, 1.5, sa, sb), (b, -2.0, 1.5, a, -1.0, 0.5, sb, sa)


def test_version_3_pair_head_is_antisymmetric_with_a_symmetric_context():
    rng = np.random.default_rng(5)
    head = _v3_head(rng)
    for _ in range(5):
        fwd_args, back_args = _pair_inputs(rng)
        np.testing.assert_array_equal(pair_context_features(*fwd_args),
                                      pair_context_features(*back_args))
        fwd, back = head.logodds(*fwd_args), head.logodds(*back_args)
        assert fwd != 0.0 and fwd == pytest.approx(-back, rel=1e-9, abs=1e-12)
    with pytest.raises(ValueError, match="frame_spectrum"):
        head.logodds(*fwd_args[:6])
    assert head.needs_spectra


def test_pair_head_sections_of_every_version_load():
    """Versions 1 and 2 (logistic) stay loadable beside version 3 (MLP); broken sections
    give a clear error."""
    rng = np.random.default_rng(6)
    fwd_args, _ = _pair_inputs(rng)
    v1 = PairHead.from_card({"weights": rng.normal(size=37).tolist(),
                             "scale": np.ones(37).tolist()})
    assert v1.version == 1 and not v1.needs_spectra
    x1 = PairHead.features(*fwd_args[:6])
    assert v1.logodds(*fwd_args[:6]) == pytest.approx(float(x1 @ v1.weights))
    n = 4 * SPECTRUM_BANDS + 37
    v2 = PairHead.from_card({"version": 2, "weights": rng.normal(size=n).tolist(),
                             "scale": np.ones(n).tolist(), "max_gap_dof": 2.5})
    assert v2.version == 2 and v2.max_gap_dof == 2.5
    assert v2.logodds(*fwd_args) == pytest.approx(float(v2.pair_features(*fwd_args)
                                                        @ v2.weights))
    head = _v3_head(rng)
    section = {"version": 3, "weights": head.weights.tolist(), "scale": head.scale.tolist(),
               **{k: getattr(head, k).tolist() for k in
                  ("hidden_weights", "hidden_bias", "context_mean", "context_scale")}}
    v3 = PairHead.from_card(json.loads(json.dumps(section)))
    assert v3.version == 3 and v3.logodds(*fwd_args) == pytest.approx(head.logodds(*fwd_args))
    with pytest.raises(ValueError, match="lacks 'hidden_bias'"):
        PairHead.from_card({k: v for k, v in section.items() if k != "hidden_bias"})
    with pytest.raises(ValueError, match="shapes disagree"):
        PairHead.from_card({**section, "hidden_bias": [0.0]})
    with pytest.raises(ValueError, match="unknown pair head version"):
        PairHead.from_card({**section, "version": 4})
    assert PairHead.from_card(None) is None


def test_shipped_card_has_the_mlp_pair_head(v3):
    head = v3.pair_head
    assert head is not None and head.version == 3 and head.needs_spectra
    assert head.scale.size == 4 * SPECTRUM_BANDS + 37
    assert head.hidden_weights.shape == (head.weights.size, head.scale.size
                                         + head.context_mean.size)
    section = v3.card["pair_head"]
    assert section["train_stacks"] >= 2000 and 0.85 < section["train_accuracy"] < 0.95


def test_pair_training_features_are_the_served_ones(v3):
    """`pair_v3`'s training features (through `pair_v2.stack_outputs`) give the served
    scorer's pair log-odds (`estimate`'s `_pairs`) for the same frames."""
    from autofocus_models.pipeline.v3.pair_v2 import stack_outputs
    from autofocus_models.pipeline.v3.pair_v3 import stack_pairs

    dz = np.array([-4.0, -3.0, -2.0, -1.0, 1.5, 2.5, 3.5])
    st = make_stack(3_400_000, "debris", shape=(192, 192), dz_dof=dz)
    frames = list(st.frames)
    x, c, y, ab = stack_pairs(stack_outputs(v3, frames, st.dz_um / st.dof_um))
    assert x.shape[0] == c.shape[0] == y.size == len(ab) > 0
    ours = dict(zip(map(tuple, ab.tolist()), v3.pair_head.logodds_of(x, c), strict=True))
    z = st.dz_um + 20.0
    served = v3._pairs(frames, z, v3._frame_outputs(frames, reuse=False), st.dof_um)
    common = [(i, j, lo) for i, j, lo in served if (i, j) in ours]
    assert len(common) >= 8
    for i, j, lo in common:
        assert lo == pytest.approx(ours[(i, j)], rel=1e-5, abs=1e-5)
        assert ours[(j, i)] == pytest.approx(-ours[(i, j)], rel=1e-9, abs=1e-9)
    # Labels: b closer than a.
    for (a, b), label in zip(ab.tolist(), y, strict=True):
        assert label == float(abs(dz[b]) < abs(dz[a]))


def test_pair_v3_trains_a_servable_head_on_a_tiny_set(tmp_path):
    """The script's training on a few stacks writes a version-3 section that serves."""
    pytest.importorskip("torch")
    from autofocus_models.pipeline.v3.pair_v3 import card_section, pair_dataset_v3, train_head

    x, c, y = pair_dataset_v3(V3, 6)
    head = train_head(x, c, y, hidden=4, epochs=2)
    again = train_head(x, c, y, hidden=4, epochs=2)
    np.testing.assert_array_equal(head.hidden_weights, again.hidden_weights)  # seeded
    section = json.loads(json.dumps(card_section(head, x, c, y, 6, 0.0, 2)))
    loaded = PairHead.from_card(section)
    np.testing.assert_allclose(loaded.logodds_of(x[:50], c[:50]), head.logodds_of(x[:50], c[:50]))
    assert section["version"] == 3 and section["train_accuracy"] > 0.6


def test_training_and_serving_share_the_preprocessing(v3):
    """The training pipeline's inputs are the serving scorer's inputs, pixel for pixel."""
    from autofocus_models.pipeline.v3.data import model_images

    rng = np.random.default_rng(4)
    frames = [rng.integers(0, 4095, (200, 130), dtype=np.uint16),
              rng.integers(0, 255, (96, 300, 3), dtype=np.uint8)]
    for frame, ours in zip(frames, model_images(frames), strict=True):
        np.testing.assert_array_equal(ours, v3.prepare(frame))
        np.testing.assert_array_equal(ours, model_input(frame, RAW_PREPROCESS_VERSION, 64))
        assert ours.dtype == np.float32 and ours.shape[0] % 64 == 0 and ours.shape[1] % 64 == 0
    assert v3.preprocess_version == RAW_PREPROCESS_VERSION


def test_served_graph_equals_the_numpy_head_on_its_hidden_layer(v3):
    """Calibration's numpy maths (pooling, output layer) reproduce the graph's logits."""
    from autofocus.scoring.calibration import frame_outputs, patch_hidden, read_output_layer

    st = make_stack(3_400_000, "sparse", shape=(256, 320), n_planes=4)
    out = v3.run_outputs(list(st.frames), ("hidden", "logit", "log_distance"))
    layer = read_output_layer(v3)
    for h, logit, m in zip(out["hidden"], out["logit"], out["log_distance"], strict=True):
        got = frame_outputs(patch_hidden(h), layer)
        assert got[0] == pytest.approx(logit, abs=1e-4)
        assert got[1] == pytest.approx(m, abs=1e-4)


def test_onnx_graph_matches_the_torch_head_it_was_trained_as(v3):
    pytest.importorskip("torch")
    onnx = pytest.importorskip("onnx")
    import torch
    from autofocus_models.pipeline.v3.data import FrontEnd, model_images
    from autofocus_models.pipeline.v3.train import HeadV3, predict
    from onnx import numpy_helper

    w = {t.name: numpy_helper.to_array(t) for t in onnx.load(str(V3)).graph.initializer}
    head = HeadV3(hidden=w["l1.weight"].shape[0])
    # The graph folds the standardisation into l1: identity standardisation reproduces it.
    state = {"feature_mean": np.zeros(26), "feature_std": np.ones(26),
             "l1.weight": w["l1.weight"][:, :, 0, 0], "l1.bias": w["l1.bias"],
             "l2.weight": w["l2.weight"][:, :, 0, 0], "l2.bias": w["l2.bias"],
             "out.weight": w["head_out.weight"][:, :, 0, 0], "out.bias": w["head_out.bias"]}
    head.load_state_dict({k: torch.from_numpy(np.array(v, np.float32)) for k, v in state.items()})
    head.eval()
    st = make_stack(3_500_000, "bf_phase", shape=(192, 256), n_planes=4)
    feats = FrontEnd()(model_images(list(st.frames)))
    ref = predict(head, feats)
    served = v3.run_outputs(list(st.frames), ("logit", "log_distance", "log_distance_var"))
    np.testing.assert_allclose(served["logit"], ref["logit"], atol=1e-4)
    np.testing.assert_allclose(served["log_distance"], ref["m"], atol=1e-4)
    np.testing.assert_allclose(served["log_distance_var"], ref["lv"], atol=1e-4)
    card = json.loads(V3.with_suffix(".json").read_text())
    assert card["parity"]["max_abs_diff"]["logit"] < 1e-3


def test_a_model_file_is_a_scorer_name(tmp_path):
    from autofocus.errors import UnknownNameError
    from autofocus.scoring.registry import canonical_scorer_name

    assert canonical_scorer_name(str(V3)) == str(V3)
    assert get_scorer(str(V3), provider="cpu").model_path == V3
    with pytest.raises(UnknownNameError, match="does not exist"):
        get_scorer(str(tmp_path / "nope.onnx"))


def test_build_pipeline_end_to_end_on_a_tiny_set(tmp_path):
    """Render → train → pair head → export with parity → the file serves as a v3 scorer."""
    pytest.importorskip("torch")
    pytest.importorskip("onnx")
    from autofocus_models.pipeline.v3.build import main

    assert main(["--stacks", "8", "--blank", "40", "--epochs", "2", "--no-eval",
                 "--pair-stacks", "6", "--out", str(tmp_path)]) == 0
    path = tmp_path / "focusnet-v3.onnx"
    card = json.loads(path.with_suffix(".json").read_text())
    assert card["parity"]["max_abs_diff"]["logit"] < 1e-3
    assert card["pair_head"]["train_pairs"] > 0 and card["pair_head"]["version"] == 2
    scorer = get_scorer(str(path), provider="cpu")
    assert isinstance(scorer, OnnxDefocusScorer)
    est = scorer.estimate([np.full((64, 64), 100, np.uint16)] * 2, [0.0, 1.0], dof_um=1.0)
    assert est.focus_z_um is not None


def test_a_search_runs_the_graph_once_per_frame(v3):
    """The engine scores each frame, then asks for the batch's estimate: the graph's
    outputs from the scoring pass are reused (`FrameOutputCache`), not recomputed."""
    from autofocus_drivers.sim import SimConfig, SimulatedMicroscope

    from autofocus.search.focus import focus

    mic = SimulatedMicroscope(SimConfig.preset("cells", "fluorescence", focus_z_um=6.0), seed=2)
    before = v3.timing["frames"]
    result = focus(mic, scorer=v3, center_z_um=0.0, range_um=30.0, tolerance_um=0.34,
                   max_frames=200, timeout_s=None)
    assert result.frames > 5
    assert v3.timing["frames"] - before == result.frames


def test_cached_outputs_follow_a_buffer_refilled_in_place(v3):
    st = make_stack(seed=11, shape=(128, 128), n_planes=5)
    buf = np.array(st.frames[0], copy=True)
    first = v3.estimate([buf], [0.0]).distance_dof[0]
    assert v3.estimate([buf], [0.0]).distance_dof[0] == first  # cached: same value
    buf[...] = st.frames[2]  # a driver reusing its frame buffer
    refilled = v3.estimate([buf], [0.0]).distance_dof[0]
    fresh = v3.estimate([np.array(st.frames[2], copy=True)], [0.0]).distance_dof[0]
    assert refilled == pytest.approx(fresh)
    assert refilled != first


def test_job_scorer_estimates_on_its_roi_and_runs_the_graph_once(v3):
    """The service's JobScorer crops to the ROI for the estimate as for the score (the
    estimate used to see the whole frame), and the two share one inference per frame."""
    from autofocus.service.jobs.worker import JobScorer
    from autofocus.service.metrics import Metrics

    assert not offers_estimate(JobScorer(get_scorer("tenengrad"), Metrics(), source="t"))
    roi = (32, 16, 128, 128)
    job = JobScorer(v3, Metrics(), source="t", roi=roi)
    assert offers_estimate(job)
    st = make_stack(seed=12, shape=(256, 256), n_planes=4)
    frames = [np.array(f, copy=True) for f in st.frames]
    z = list(st.dz_um)
    before = v3.timing["frames"]
    job.score_for_estimate(frames)
    est = job.estimate(frames, z, dof_um=st.dof_um)
    assert v3.timing["frames"] - before == len(frames)
    x, y, w, h = roi
    direct = v3.estimate([np.array(f[y:y + h, x:x + w]) for f in frames], z, dof_um=st.dof_um)
    np.testing.assert_allclose(est.distance_dof, direct.distance_dof, rtol=1e-6)
    whole = v3.estimate([np.array(f, copy=True) for f in frames], z, dof_um=st.dof_um)
    assert not np.allclose(est.distance_dof, whole.distance_dof, rtol=1e-3)


def test_a_peak_the_model_puts_far_from_focus_is_cross_checked(v3):
    """Bench trial 1010 (dim beads): the learned score has a bump 1.6 DOF from focus on
    its tail, which the capture path brackets as a peak; the model's own distance there
    (≈ 2.7 DOF) triggers a look on both sides, and the search parks on the plane (it used
    to report a success 1.6 DOF off, with confidence 0.99)."""
    from autofocus_drivers.sim import SimulatedMicroscope

    from autofocus.bench.search import Trial, trial_config
    from autofocus.search.focus import focus

    trial = Trial(1010, "beads", "fluorescence", 10.0, 14.213409935468949)
    config = trial_config(trial)
    mic = SimulatedMicroscope(config, seed=trial.seed)
    dof = config.optics.depth_of_field_um
    result = focus(mic, scorer=v3, center_z_um=0.0, range_um=50.0, tolerance_um=dof / 4,
                   max_frames=400, timeout_s=None)
    assert result.details.get("model_distance_at_peak_dof", 0.0) > 1.5
    # The bump is dropped for the sharper plane found next to it, which is the focus.
    assert result.details.get("model_check_dropped_um") is not None
    off = abs(mic.physical_z_um - mic.true_focus_z_um())
    assert result.success and off <= dof / 4


def test_unusable_frames_are_not_estimated(v3, monkeypatch):
    """A corrupted transfer gets no defocus estimate (NaN for its position): the model's
    reading of uniform noise must not feed the signed V-fit."""
    from autofocus_drivers.sim import FaultConfig, SimConfig, SimulatedMicroscope

    from autofocus.search.focus import focus

    seen: list[int] = []
    original = type(v3).estimate

    def recording(self, frames, z_um, **kw):
        seen.append(len(frames))
        return original(self, frames, z_um, **kw)

    monkeypatch.setattr(type(v3), "estimate", recording)
    config = SimConfig.preset("cells", "fluorescence", focus_z_um=5.0)
    config = dataclasses.replace(config, faults=FaultConfig(garbage_frame=frozenset({1, 2, 5})))
    mic = SimulatedMicroscope(config, seed=4)
    result = focus(mic, scorer=v3, center_z_um=0.0, range_um=30.0, tolerance_um=0.34,
                   max_frames=200, timeout_s=None)
    assert result.details.get("unusable_frames", 0) >= 2
    # (before: every frame, corrupted ones included, was estimated)
    assert 0 < sum(seen) <= result.frames - result.details["unusable_frames"]


def test_the_output_cache_keeps_no_frame_alive(v3):
    """Entries are numbers only: a daemon scoring 2048² frames must not accumulate them."""
    import gc
    import weakref

    frame = np.array(make_stack(seed=13, shape=(128, 128), n_planes=3).frames[1], copy=True)
    ref = weakref.ref(frame)
    v3.score_for_estimate([frame])
    assert v3._cache.get(frame) is not None
    del frame
    gc.collect()
    assert ref() is None


def test_real_sign_report_judges_neighbouring_planes_and_renders(v3, real_data_dir):
    from autofocus_models.pipeline.v3.card_md import _real_sign_lines
    from autofocus_models.pipeline.v3.evaluate import real_sign

    rows = real_sign(v3, real_data_dir)
    assert rows and "all" in rows
    per_stack = [v for k, v in rows.items() if k != "all"]
    assert rows["all"]["pairs"] == sum(v["pairs"] for v in per_stack) > 0
    for v in rows.values():
        for key in ("accuracy", "decided", "sharper_frame_accuracy", "tenengrad_accuracy"):
            assert 0.0 <= v[key] <= 1.0
    text = "\n".join(_real_sign_lines(rows))
    assert "Signed estimate on the real stacks" in text and f"| {rows['all']['pairs']} |" in text
    assert _real_sign_lines(None) == []
