"""The runtime focus-model scorer (`focusnet`): loading, validation, batching, peak at focus.

These tests need onnxruntime only (no torch, no onnx package): they run in CI's
`.[test,mm]` install.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from autofocus_models.pipeline import spec
from scipy.stats import spearmanr

from autofocus.errors import ImageError, ModelError
from autofocus.scoring.model import (
    OnnxFocusScorer,
    default_model_path,
    fit_to_patches,
    sha256_of,
    shipped_models,
)
from autofocus.scoring.preprocess import PREPROCESS_VERSION, SUPPORTED_PREPROCESS_VERSIONS
from autofocus.scoring.registry import available_scorers, get_scorer

NEWEST = default_model_path()
SHIPPED = shipped_models()[2]
"""These tests describe the v1/v2 architecture (percentile input, patch_logits, torch reference
logits in the card): they pin focusnet-v2. focusnet-v3 has its own tests (test_model_v3.py)."""


@pytest.fixture(scope="module")
def scorer() -> OnnxFocusScorer:
    return OnnxFocusScorer(SHIPPED, provider="cpu", max_batch=4)


@pytest.fixture()
def model_copy(tmp_path: Path) -> Path:
    """The shipped model and card copied to a temp dir (to break them safely)."""
    dst = tmp_path / SHIPPED.name
    shutil.copy(SHIPPED, dst)
    shutil.copy(SHIPPED.with_suffix(".json"), dst.with_suffix(".json"))
    return dst


def _edit_card(model: Path, **changes) -> None:
    card_path = model.with_suffix(".json")
    card = json.loads(card_path.read_text())
    for dotted, value in changes.items():
        node = card
        *parents, leaf = dotted.split("__")
        for key in parents:
            node = node[key]
        node[leaf] = value
    card_path.write_text(json.dumps(card))


def test_shipped_model_is_registered_and_matches_its_card():
    assert "focusnet" in available_scorers()
    card = json.loads(NEWEST.with_suffix(".json").read_text())
    assert card["sha256"] == sha256_of(NEWEST)
    assert card["preprocess"]["version"] in SUPPORTED_PREPROCESS_VERSIONS
    assert json.loads(SHIPPED.with_suffix(".json").read_text())["preprocess"]["version"] == (
        PREPROCESS_VERSION)
    assert NEWEST.stat().st_size < 2_000_000
    s = get_scorer("focusnet", provider="cpu")
    assert s.active_provider == "CPUExecutionProvider"
    assert s.describe()["sha256"] == card["sha256"]


def test_auto_provider_reports_what_it_really_got():
    import onnxruntime as ort

    s = OnnxFocusScorer(provider="auto")
    assert s.active_provider in ort.get_available_providers()
    assert s._session.get_providers()[0] == s.active_provider


def test_batch_scores_equal_single_frame_scores(scorer):
    rng = np.random.default_rng(3)
    frames = [
        rng.integers(0, 4095, (256, 320), dtype=np.uint16),
        rng.integers(0, 4095, (256, 320), dtype=np.uint16),
        rng.integers(0, 255, (200, 130), dtype=np.uint8),  # not a multiple of 64
        rng.random((40, 90)).astype(np.float32),  # smaller than one patch
        rng.integers(0, 255, (128, 128, 3), dtype=np.uint8),  # colour
        rng.integers(0, 4095, (256, 320), dtype=np.uint16),
    ]
    batched = scorer.score(frames)
    single = np.array([scorer.score([f])[0] for f in frames])
    assert batched.dtype == np.float64 and batched.shape == (len(frames),)
    assert np.all(np.isfinite(batched)) and np.all((batched >= 0) & (batched <= 1))
    np.testing.assert_allclose(batched, single, rtol=0, atol=1e-6)
    wide = OnnxFocusScorer(SHIPPED, provider="cpu", max_batch=32).score(frames)
    np.testing.assert_allclose(batched, wide, rtol=0, atol=1e-6)
    assert scorer.score([]).shape == (0,)


def test_patch_logits_output_has_one_value_per_patch(scorer):
    frames = [np.random.default_rng(0).random((192, 256)).astype(np.float32)]
    maps = scorer.run(frames, output="patch_logits")
    assert maps[0].shape == (3, 4)
    with pytest.raises(ValueError, match="no output"):
        scorer.run(frames, output="nope")


@pytest.mark.parametrize(("modality", "min_rho"), [("fluorescence", 0.8), ("brightfield", 0.6)])
def test_score_peaks_at_focus_on_a_simulated_stack(scorer, modality, min_rho):
    # Brightfield tails are weaker than fluorescence ones (see the model card's robustness
    # table); the peak itself must be at focus in both.
    from autofocus_drivers.sim import SimConfig, SimulatedMicroscope

    mic = SimulatedMicroscope(SimConfig.preset("cells", modality, focus_z_um=1.3), seed=11)
    dof = mic.optics.depth_of_field_um
    z = 1.3 + dof * np.arange(-8, 9) * 0.75
    frames = []
    for zi in z:
        mic.move_z(float(zi))
        frames.append(mic.snap())
    scores = scorer.score(frames)
    best = int(np.argmax(scores))
    assert abs(z[best] - mic.true_focus_z_um()) <= 0.8 * dof, (z[best], scores)
    rho = spearmanr(scores, -np.abs(z - mic.true_focus_z_um())).statistic
    assert rho > min_rho, scores


def test_recorded_reference_parity_without_torch(scorer):
    """The shipped file still computes what torch computed at export (card's reference)."""
    card = json.loads(SHIPPED.with_suffix(".json").read_text())
    reference = card["parity"]["reference_logits"]
    inputs = spec.reference_inputs()
    sess = scorer._session
    for name, x in inputs.items():
        logits = sess.run(["logit"], {spec.INPUT_NAME: x})[0]
        np.testing.assert_allclose(logits, reference[name], rtol=0, atol=1e-4)


def test_missing_model_file_is_one_clear_error(tmp_path):
    with pytest.raises(ModelError, match="does not exist"):
        OnnxFocusScorer(tmp_path / "nope.onnx")


def test_missing_card_is_refused(model_copy):
    model_copy.with_suffix(".json").unlink()
    with pytest.raises(ModelError, match="card .* is missing"):
        OnnxFocusScorer(model_copy)


def test_unreadable_card_is_refused(model_copy):
    model_copy.with_suffix(".json").write_text("{not json")
    with pytest.raises(ModelError, match="unreadable"):
        OnnxFocusScorer(model_copy)


def test_corrupt_model_file_is_caught_by_its_checksum(model_copy):
    data = bytearray(model_copy.read_bytes())
    data[len(data) // 2] ^= 0xFF
    model_copy.write_bytes(bytes(data))
    with pytest.raises(ModelError, match="does not match its card"):
        OnnxFocusScorer(model_copy)


def test_garbage_model_with_matching_card_fails_at_load(model_copy):
    model_copy.write_bytes(b"this is not an onnx file")
    _edit_card(model_copy, sha256=sha256_of(model_copy))
    with pytest.raises(ModelError, match="cannot be loaded"):
        OnnxFocusScorer(model_copy)


def test_card_for_another_preprocessing_version_is_refused(model_copy):
    _edit_card(model_copy, preprocess__version="0-other")
    with pytest.raises(ModelError, match="preprocessing version"):
        OnnxFocusScorer(model_copy)


def test_card_that_does_not_describe_the_graph_is_refused(model_copy):
    _edit_card(model_copy, input__name="pixels")
    with pytest.raises(ModelError, match="inputs"):
        OnnxFocusScorer(model_copy)


def test_unknown_provider_is_refused():
    with pytest.raises(ModelError, match="unknown execution provider"):
        OnnxFocusScorer(provider="quantum")


def test_explicit_gpu_provider_that_does_not_work_raises():
    import onnxruntime as ort

    try:
        gpu = OnnxFocusScorer(provider="cuda")
    except ModelError as exc:
        assert "cuda" in str(exc)
        return
    # A machine with a working GPU: then it must really run there.
    assert gpu.active_provider == "CUDAExecutionProvider"
    assert "CUDAExecutionProvider" in ort.get_available_providers()


def test_bad_frames_raise_image_error(scorer):
    with pytest.raises(ImageError):
        scorer.score([np.zeros((0, 10), np.uint16)])
    bad = np.ones((64, 64), np.float32)
    bad[3, 3] = np.nan
    with pytest.raises(ImageError):
        scorer.score([bad])
    with pytest.raises(ImageError):
        scorer.score([np.zeros((4, 4, 4, 4), np.uint8)])


def test_roi_is_applied_before_scoring():
    rng = np.random.default_rng(5)
    frame = rng.integers(0, 4095, (256, 256), dtype=np.uint16)
    roi_scorer = OnnxFocusScorer(provider="cpu", roi=(64, 64, 128, 128))
    whole = OnnxFocusScorer(provider="cpu")
    assert roi_scorer.score([frame])[0] == pytest.approx(
        whole.score([frame[64:192, 64:192]])[0], abs=1e-7
    )


def test_fit_to_patches_centres_the_crop_and_pads_small_images():
    img = np.arange(130 * 200, dtype=np.float32).reshape(130, 200)
    out = fit_to_patches(img, 64)
    assert out.shape == (128, 192)
    assert out[0, 0] == img[1, 4]
    tiny = fit_to_patches(np.ones((10, 70), np.float32), 64)
    assert tiny.shape == (64, 64)
