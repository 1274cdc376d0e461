"""Several shipped focusnet versions: name resolution, pinned names, pooling, v2 data."""

from __future__ import annotations

import json

import numpy as np
import pytest

from autofocus.scoring.model import default_model_path, sha256_of, shipped_models
from autofocus.scoring.registry import available_scorers, get_scorer


def test_focusnet_resolves_to_the_newest_shipped_full_model():
    """`focusnet` is the newest model that also estimates defocus (issue 21: focusnet-v4 is
    score-only and is served by its pinned name, so a search asking `focusnet` for a
    distance keeps getting one)."""
    from autofocus.scoring.model import load_card, offers_defocus

    models = shipped_models()
    assert 1 in models, "focusnet-v1 must stay shipped"
    full = [v for v, p in models.items() if offers_defocus(load_card(p.with_suffix(".json")))]
    assert full, "a shipped model with the defocus outputs"
    assert default_model_path() == models[max(full)]
    assert get_scorer("focusnet", provider="cpu").model_path == models[max(full)]


def test_every_shipped_version_is_loadable_by_its_pinned_name():
    for version, path in shipped_models().items():
        name = f"focusnet-v{version}"
        assert name in available_scorers()
        scorer = get_scorer(name, provider="cpu")
        assert scorer.model_path == path
        card = json.loads(path.with_suffix(".json").read_text())
        assert scorer.describe()["sha256"] == card["sha256"] == sha256_of(path)


def test_every_shipped_version_reproduces_in_torch_with_its_own_pooling():
    """The pooling divisor differs between versions; the graph's `topk_div` constant says which."""
    onnx = pytest.importorskip("onnx")
    torch = pytest.importorskip("torch")
    from autofocus_models.pipeline.export import run_onnx
    from autofocus_models.pipeline.net import FocusNet
    from onnx import numpy_helper

    x = np.random.default_rng(2).random((2, 1, 256, 320), dtype=np.float32)
    for version, path in shipped_models().items():
        if version >= 3:  # another architecture, with its own parity test (test_model_v3.py)
            continue
        w = {t.name: numpy_helper.to_array(t) for t in onnx.load(str(path)).graph.initializer}
        members = w["conv3.weight"].shape[0]
        net = FocusNet(w["conv1.weight"].shape[0] // members, members,
                       topk_div=int(w["topk_div"][0]))
        state = {k: torch.from_numpy(np.array(w[k])) for k in (
            "conv1.weight", "conv1.bias", "conv2.weight", "conv2.bias", "conv3.weight",
            "conv3.bias")}
        state["feature_mean"] = torch.from_numpy(w["feature_mean"].reshape(-1).copy())
        state["feature_std"] = torch.from_numpy(1.0 / w["feature_inv_std"].reshape(-1))
        net.head.load_state_dict(state)
        net.eval()
        with torch.no_grad():
            t_logit = net(torch.from_numpy(x))[1].numpy()
        np.testing.assert_allclose(run_onnx(path, x)["logit"], t_logit, atol=1e-4)


def test_train_v2_adds_a_weaker_second_layer_and_leaves_train_alone():
    from autofocus_models.pipeline.synth import make_stack

    layered = [make_stack(s, "train_v2", shape=(96, 96), n_planes=5) for s in range(6)]
    assert all(st.meta["condition"] == "train_v2" for st in layered)
    with_layer = [st for st in layered if st.meta["layered"]]
    assert with_layer, "seeds 0-5 should include at least one layered stack"
    for st in with_layer:
        assert abs(st.meta["debris_dz_um"]) >= 3.0 * st.dof_um - 1e-9
    plain = make_stack(0, "train", shape=(96, 96), n_planes=5)
    assert "layered" not in plain.meta and plain.meta["condition"] == "train"
    again = make_stack(0, "train_v2", shape=(96, 96), n_planes=5)
    np.testing.assert_array_equal(again.frames, layered[0].frames)
