"""Classical focus measures: peak at focus, exposure behaviour, batching, bad frames."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from autofocus.errors import ImageError
from autofocus.scoring.base import Scorer
from autofocus.scoring.classical import (
    MEASURES,
    BandpassFFT,
    ClassicalMeasure,
    opencv_variance_of_laplacian,
)
from autofocus.scoring.registry import available_scorers, get_scorer

NAMES = sorted(MEASURES)
# Defocus blur (Gaussian sigma, px) of each plane; plane 3 is in focus.
SIGMAS_PX = (3.0, 2.0, 1.2, 0.0, 1.0, 1.8, 2.8)
FOCUS_INDEX = 3
# How each raw-intensity score scales with exposure × a.
EXPOSURE_POWER = {"nvar": 1}


def _specimen(kind: str, seed: int = 7) -> np.ndarray:
    """A band-limited synthetic specimen: spots and filaments, fluorescence or brightfield."""
    rng = np.random.default_rng(seed)
    h, w = 160, 192
    obj = np.zeros((h, w), np.float32)
    ys, xs = rng.integers(4, h - 4, 150), rng.integers(4, w - 4, 150)
    obj[ys, xs] = rng.uniform(0.5, 1.0, 150)
    for _ in range(8):
        p0 = tuple(int(v) for v in rng.integers(0, min(h, w), 2))
        p1 = tuple(int(v) for v in rng.integers(0, min(h, w), 2))
        cv2.line(obj, p0, p1, 0.8, 1)
    obj = cv2.GaussianBlur(obj, (0, 0), 0.7)
    obj /= obj.max()
    if kind == "fluorescence":
        return 100.0 + 2000.0 * obj
    return 1500.0 - 900.0 * obj  # brightfield: dark specimen on a bright field


def _series(kind: str, noise: float = 1.0) -> list[np.ndarray]:
    rng = np.random.default_rng(11)
    img = _specimen(kind)
    frames = []
    for sigma in SIGMAS_PX:
        f = cv2.GaussianBlur(img, (0, 0), sigma) if sigma > 0 else img.copy()
        frames.append((f + rng.normal(0, noise, f.shape)).astype(np.float32))
    return frames


@pytest.fixture(scope="module", params=["fluorescence", "brightfield"])
def series(request) -> list[np.ndarray]:
    return _series(request.param)


def test_every_measure_is_registered_with_its_aliases():
    names = available_scorers()
    for name in NAMES:
        assert name in names
        assert isinstance(get_scorer(name), Scorer)
    assert set(NAMES) == {"tenengrad", "vol", "nvar", "brenner", "vollath", "fft"}
    assert get_scorer("laplacian").name == "vol"
    assert get_scorer("vollath4").name == "vollath"
    assert get_scorer("Tenengrad").name == "tenengrad"


@pytest.mark.parametrize("pooling", ["global", "topk"])
@pytest.mark.parametrize("name", NAMES)
def test_measure_peaks_at_focus_and_falls_off_monotonically(series, name, pooling):
    scorer = get_scorer(name, pooling=pooling, patch_px=32, k_frac=0.25)
    scores = scorer.score(series)
    assert scores.dtype == np.float64 and scores.shape == (len(series),)
    assert int(np.argmax(scores)) == FOCUS_INDEX, scores
    left, right = scores[: FOCUS_INDEX + 1], scores[FOCUS_INDEX:]
    assert np.all(np.diff(left) > 0), scores
    assert np.all(np.diff(right) < 0), scores


@pytest.mark.parametrize("pooling", ["global", "topk"])
@pytest.mark.parametrize("name", sorted(set(NAMES) - {"nvar"}))
def test_normalised_measures_peak_near_focus(series, name, pooling):
    # Per-frame percentile normalisation re-stretches defocused frames' contrast,
    # which flattens the curve near focus (why it is off by default): within a plane.
    scorer = get_scorer(name, pooling=pooling, patch_px=32, normalise=True)
    scores = scorer.score(series)
    assert abs(int(np.argmax(scores)) - FOCUS_INDEX) <= 1, scores
    assert scores[FOCUS_INDEX] > max(scores[0], scores[-1]) * 1.5, scores


def test_nvar_refuses_normalise():
    with pytest.raises(ValueError, match="raw intensities"):
        get_scorer("nvar", normalise=True)


@pytest.mark.parametrize("name", NAMES)
def test_raw_scores_scale_with_exposure_and_keep_the_peak(name):
    frames = _series("fluorescence")
    a, offset = 2.5, 0.0
    base = get_scorer(name).score(frames)
    scaled = get_scorer(name).score([a * f + offset for f in frames])
    power = EXPOSURE_POWER.get(name, 2)
    np.testing.assert_allclose(scaled, base * a**power, rtol=1e-4)
    # A camera offset leaves the peak where it was (nvar's value changes, its argmax does not).
    shifted = get_scorer(name).score([f + 300.0 for f in frames])
    assert int(np.argmax(shifted)) == int(np.argmax(base)) == FOCUS_INDEX


@pytest.mark.parametrize("name", sorted(set(NAMES) - {"nvar"}))
def test_normalised_scores_are_exposure_and_offset_invariant(name):
    frames = _series("brightfield")
    scorer = get_scorer(name, normalise=True)
    base = scorer.score(frames)
    changed = scorer.score([3.0 * f + 250.0 for f in frames])
    np.testing.assert_allclose(changed, base, rtol=1e-4)


@pytest.mark.parametrize("pooling", ["global", "topk"])
@pytest.mark.parametrize("name", NAMES)
def test_batch_equals_per_frame(name, pooling):
    frames = _series("fluorescence")
    scorer = get_scorer(name, pooling=pooling, patch_px=48)
    batch = scorer.score(frames)
    single = np.array([scorer.score([f])[0] for f in frames])
    np.testing.assert_array_equal(batch, single)
    assert scorer.score([]).shape == (0,)


@pytest.mark.parametrize("name", NAMES)
def test_dtype_and_colour_do_not_change_the_score(name):
    grey16 = np.clip(_series("fluorescence")[FOCUS_INDEX], 0, 65535).astype(np.uint16)
    scorer = get_scorer(name)
    as_float = scorer.score([grey16.astype(np.float32)])[0]
    assert scorer.score([grey16])[0] == as_float
    rgb = np.repeat(grey16[:, :, np.newaxis], 3, axis=2)  # a grey image stored as colour
    assert scorer.score([rgb])[0] == pytest.approx(as_float, rel=1e-5)


@pytest.mark.parametrize("name", NAMES)
def test_roi_scores_only_the_region(name):
    frame = _series("fluorescence")[FOCUS_INDEX]
    x, y, w, h = 20, 30, 100, 80
    with_roi = get_scorer(name, roi=(x, y, w, h)).score([frame])[0]
    cropped = get_scorer(name).score([np.ascontiguousarray(frame[y : y + h, x : x + w])])[0]
    assert with_roi == pytest.approx(cropped, rel=1e-6)


@pytest.mark.parametrize(
    "frame, match",
    [
        (np.full((20, 20), np.nan, np.float32), "NaN"),
        (np.zeros((0, 20)), "empty"),
        (np.zeros(20), "shape"),
        (np.zeros((2, 50)), "too small"),
        (np.zeros((20, 20, 2)), "shape"),
    ],
)
@pytest.mark.parametrize("name", NAMES)
def test_bad_frames_raise_image_error(name, frame, match):
    good = np.ones((20, 20), np.float32)
    with pytest.raises(ImageError, match=match):
        get_scorer(name).score([good, frame])


def test_roi_outside_the_frame_raises_image_error():
    scorer = get_scorer("tenengrad", roi=(50, 50, 100, 100))
    with pytest.raises(ImageError, match="does not fit"):
        scorer.score([np.zeros((120, 120))])


@pytest.mark.parametrize(
    "options",
    [{"pooling": "median"}, {"k_frac": 0.0}, {"k_frac": 2}, {"patch_px": 2}, {"patch_px": 8.5}],
)
def test_invalid_options_raise_value_error(options):
    with pytest.raises(ValueError):
        get_scorer("tenengrad", **options)


def test_invalid_roi_option_is_rejected_at_construction():
    with pytest.raises(ImageError):
        get_scorer("vol", roi=(0, 0, -4, 4))


@pytest.mark.parametrize("name", ["tenengrad", "brenner", "vollath"])
def test_topk_with_all_patches_equals_global_for_map_measures(name):
    frame = _series("fluorescence")[2][:128, :192]  # tiles exactly into 32-px patches
    glob = get_scorer(name).score([frame])[0]
    pooled = get_scorer(name, pooling="topk", patch_px=32, k_frac=1.0).score([frame])[0]
    assert pooled == pytest.approx(glob, rel=1e-5)


def test_topk_pooling_resists_empty_background():
    rng = np.random.default_rng(3)
    specimen = _specimen("fluorescence")[:64, :64]
    sharp = np.full((256, 256), 100.0, np.float32)
    sharp[:64, :64] = specimen
    blurred = cv2.GaussianBlur(sharp, (0, 0), 1.5)
    frames = [(f + rng.normal(0, 1.0, f.shape)).astype(np.float32) for f in (blurred, sharp)]
    glob = get_scorer("tenengrad").score(frames)
    pooled = get_scorer("tenengrad", pooling="topk", patch_px=64, k_frac=1 / 16).score(frames)
    assert np.argmax(glob) == np.argmax(pooled) == 1
    # The specimen covers 1/16 of the frame: pooling is ~16× less diluted.
    assert pooled[1] / glob[1] > 10


def test_fft_full_band_is_the_image_variance_by_parseval():
    frame = _series("brightfield")[1]
    full = BandpassFFT(band_cycles_per_px=(0.0, 0.75)).score([frame])[0]
    assert full == pytest.approx(float(frame.astype(np.float64).var()), rel=1e-4)
    odd = frame[:101, :77]  # odd sizes exercise the rfft column weights
    full_odd = BandpassFFT(band_cycles_per_px=(0.0, 0.75)).score([odd])[0]
    assert full_odd == pytest.approx(float(odd.astype(np.float64).var()), rel=1e-4)
    with pytest.raises(ValueError):
        BandpassFFT(band_cycles_per_px=(0.3, 0.2))


def test_nvar_of_a_black_frame_is_zero_not_an_error():
    assert get_scorer("nvar").score([np.zeros((16, 16), np.uint16)])[0] == 0.0


def test_opencv_baseline_matches_vol_on_grey_frames():
    frame = _series("fluorescence")[FOCUS_INDEX]
    assert opencv_variance_of_laplacian(frame) == pytest.approx(
        get_scorer("vol").score([frame])[0], rel=1e-6
    )
    assert opencv_variance_of_laplacian(frame.astype(np.uint16)) > 0
    with pytest.raises(ImageError):
        opencv_variance_of_laplacian(np.zeros((8, 8, 3)))


def test_measures_share_the_base_class():
    for cls in MEASURES.values():
        assert issubclass(cls, ClassicalMeasure) and cls.description
