"""The training pipeline (`autofocus_models.pipeline`): labels, synthetic stacks, training,
export parity.

Needs torch (the `train` extra); skipped cleanly without it. Export tests also
need the `onnx` package.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from autofocus_models.pipeline import spec  # noqa: E402
from autofocus_models.pipeline.labels import focus_label, ranking_pairs  # noqa: E402
from autofocus_models.pipeline.synth import make_stack  # noqa: E402


def test_label_peaks_at_focus_and_falls_monotonically():
    dz = np.linspace(-10, 10, 201)
    y = focus_label(dz, 2.0)
    assert y.max() == 1.0 and dz[np.argmax(y)] == 0.0
    assert focus_label(np.array([2.0]), 2.0)[0] == pytest.approx(0.5)
    right = y[dz >= 0]
    assert np.all(np.diff(right) < 0)
    np.testing.assert_allclose(y, y[::-1])
    with pytest.raises(ValueError):
        focus_label(dz, 0.0)


def test_ranking_pairs_put_the_closer_plane_first_and_skip_ties():
    dz = np.array([-3.0, -1.0, 0.0, 1.05, 4.0])
    closer, farther = ranking_pairs(dz, min_gap_um=0.2)
    pairs = set(zip(closer.tolist(), farther.tolist(), strict=True))
    assert (2, 0) in pairs and (1, 4) in pairs
    assert (1, 3) not in pairs and (3, 1) not in pairs  # |dz| 1.0 vs 1.05: within the gap
    assert all(abs(dz[c]) < abs(dz[f]) for c, f in pairs)


def test_synthetic_stacks_are_deterministic_and_labelled():
    a = make_stack(7, shape=(128, 128), n_planes=9)
    b = make_stack(7, shape=(128, 128), n_planes=9)
    np.testing.assert_array_equal(a.frames, b.frames)
    np.testing.assert_array_equal(a.dz_um, b.dz_um)
    assert a.frames.shape == (9, 128, 128) and a.frames.dtype in (np.uint8, np.uint16)
    assert np.all(np.diff(a.dz_um) > 0) and a.dof_um > 0
    c = make_stack(8, shape=(128, 128), n_planes=9)
    assert not np.array_equal(a.frames, c.frames)


@pytest.mark.parametrize("condition", ["low_light", "sparse", "debris", "bf_phase"])
def test_robustness_conditions_are_what_they_claim(condition):
    st = make_stack(1, condition, shape=(128, 128), n_planes=7)
    meta = st.meta
    assert meta["condition"] == condition
    if condition == "low_light":
        assert meta["signal_photons"] <= 4.0
    elif condition == "debris":
        assert meta["debris_dz_um"] is not None and abs(meta["debris_dz_um"]) >= 6 * st.dof_um
    elif condition == "bf_phase":
        assert meta["modality"] == "brightfield"
    with pytest.raises(ValueError):
        make_stack(1, "nonsense")


def test_head_training_learns_to_rank_planes():
    from autofocus_models.pipeline.data import FeatureStack, front_features, model_inputs
    from autofocus_models.pipeline.evaluate import curve_metrics
    from autofocus_models.pipeline.train import TrainConfig, fit_head, predict_logits

    stacks = []
    for seed in range(6):
        st = make_stack(seed, shape=(128, 128), n_planes=11)
        feats = front_features(model_inputs(list(st.frames)))
        stacks.append(FeatureStack(st.name, feats, st.dz_um, st.dof_um, st.meta))
    head, history = fit_head(stacks, TrainConfig(epochs=40, batch_stacks=6))
    assert history["epoch_loss"][-1] < history["epoch_loss"][0]
    rho = np.mean([curve_metrics(predict_logits(head, s.features), s.dz_um, s.dof_um)["spearman"]
                   for s in stacks])
    assert rho > 0.5


def test_export_matches_torch_and_writes_a_card(tmp_path: Path):
    pytest.importorskip("onnx")
    from autofocus_models.pipeline.export import export_model
    from autofocus_models.pipeline.net import FocusNet, Head, merge_heads

    from autofocus.scoring.model import OnnxFocusScorer

    torch.manual_seed(0)
    net = FocusNet(8, 3)
    net.head = merge_heads([Head(8, 1) for _ in range(3)])
    path, card = export_model(net, tmp_path, "focusnet-vtest", {"note": "test"})
    assert max(card["parity"]["max_abs_logit_diff"].values()) < 1e-4
    saved = json.loads(path.with_suffix(".json").read_text())
    assert saved["sha256"] == card["sha256"] and saved["note"] == "test"
    scorer = OnnxFocusScorer(path, provider="cpu")
    x = spec.reference_inputs()["structured"]
    with torch.no_grad():
        expected = net(torch.from_numpy(x))[0].numpy()
    got = scorer._session.run(["score"], {"image": x})[0]
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_shipped_onnx_weights_reproduce_in_torch():
    """Rebuild the torch model from the shipped file's weights; both must agree."""
    onnx = pytest.importorskip("onnx")
    from autofocus_models.pipeline.export import run_onnx
    from autofocus_models.pipeline.net import FocusNet
    from onnx import numpy_helper

    from autofocus.scoring.model import shipped_models

    model = onnx.load(str(shipped_models()[2]))  # the v1/v2 architecture (v3: test_model_v3)
    weights = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    members = weights["conv3.weight"].shape[0]
    hidden = weights["conv1.weight"].shape[0] // members
    # The pooling divisor is part of the model version (8 in v1, 4 in v2); the graph records it.
    net = FocusNet(hidden, members, topk_div=int(weights["topk_div"][0]))
    state = {k: torch.from_numpy(np.array(weights[k])) for k in
             ("conv1.weight", "conv1.bias", "conv2.weight", "conv2.bias", "conv3.weight",
              "conv3.bias")}
    state["feature_mean"] = torch.from_numpy(weights["feature_mean"].reshape(-1).copy())
    state["feature_std"] = torch.from_numpy(1.0 / weights["feature_inv_std"].reshape(-1))
    net.head.load_state_dict(state)
    net.eval()
    x = np.random.default_rng(1).random((2, 1, 192, 320), dtype=np.float32)
    with torch.no_grad():
        t_logit = net(torch.from_numpy(x))[1].numpy()
    np.testing.assert_allclose(run_onnx(shipped_models()[2], x)["logit"], t_logit, atol=1e-4)
