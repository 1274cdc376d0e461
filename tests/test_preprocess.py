"""The shared preprocessing: grey conversion, normalisation, ROI, masks, patches, pooling."""

from __future__ import annotations

import warnings

import cv2
import numpy as np
import pytest

from autofocus.errors import ImageError
from autofocus.scoring.preprocess import (
    PREPROCESS_VERSION,
    crop_roi,
    foreground_mask,
    normalise,
    percentile_range,
    prepare,
    tile_grid,
    tile_patches,
    to_grey,
    topk_mean,
    topk_patch_score,
    validate_roi,
)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


def test_version_is_a_string():
    assert isinstance(PREPROCESS_VERSION, str) and PREPROCESS_VERSION


# -- to_grey ----------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int32, np.float32, np.float64])
def test_to_grey_passes_2d_through_as_float32(rng, dtype):
    frame = (rng.random((17, 23)) * 200).astype(dtype)
    g = to_grey(frame)
    assert g.dtype == np.float32 and g.shape == (17, 23)
    np.testing.assert_allclose(g, frame.astype(np.float64), rtol=1e-6)


def test_to_grey_colour_uses_bt601_luma_on_rgb(rng):
    rgb = rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)
    g = to_grey(rgb)
    expected = rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114
    np.testing.assert_allclose(g, expected, atol=1e-3)
    # Channel order matters: pure red is dark-ish, pure green is bright.
    red = np.zeros((4, 4, 3), np.uint8)
    red[..., 0] = 255
    green = np.zeros((4, 4, 3), np.uint8)
    green[..., 1] = 255
    assert to_grey(red)[0, 0] == pytest.approx(0.299 * 255, rel=1e-5)
    assert to_grey(green)[0, 0] == pytest.approx(0.587 * 255, rel=1e-5)


def test_to_grey_rgba_ignores_alpha_and_single_channel_is_grey(rng):
    rgb = rng.integers(0, 65536, (8, 9, 3), dtype=np.uint16)
    alpha = rng.integers(0, 65536, (8, 9, 1), dtype=np.uint16)
    np.testing.assert_array_equal(to_grey(np.concatenate([rgb, alpha], axis=2)), to_grey(rgb))
    one = rng.random((8, 9, 1)).astype(np.float32)
    np.testing.assert_array_equal(to_grey(one), one[..., 0])


@pytest.mark.parametrize(
    "frame, match",
    [
        (np.zeros(10), "shape"),
        (np.zeros((2, 3, 4, 5)), "shape"),
        (np.zeros((5, 5, 2)), "shape"),
        (np.zeros((0, 5)), "empty"),
        (np.zeros((5, 0, 3)), "empty"),
        (np.zeros((4, 4), dtype=complex), "pixel type"),
        (np.array([["a", "b"]], dtype=object), "pixel type"),
    ],
)
def test_to_grey_rejects_bad_frames(frame, match):
    with pytest.raises(ImageError, match=match):
        to_grey(frame)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_to_grey_rejects_non_finite(bad):
    frame = np.ones((6, 7), np.float32)
    frame[3, 2] = bad
    with pytest.raises(ImageError, match="1 NaN or infinite"):
        to_grey(frame)
    colour = np.ones((6, 7, 3))
    colour[1, 1, 2] = bad
    with pytest.raises(ImageError, match="NaN or infinite"):
        to_grey(colour)


# -- normalise ----------------------------------------------------------------------


def test_normalise_maps_percentiles_to_0_and_1(rng):
    img = rng.normal(1000, 50, (300, 400)).astype(np.float32)
    n = normalise(img)
    assert n.dtype == np.float32
    assert np.percentile(n, 1.0) == pytest.approx(0.0, abs=0.02)
    assert np.percentile(n, 99.5) == pytest.approx(1.0, abs=0.02)


def test_normalise_is_robust_to_hot_pixels(rng):
    img = rng.normal(500, 20, (256, 256)).astype(np.float32)
    hot = img.copy()
    hot[rng.integers(0, 256, 20), rng.integers(0, 256, 20)] = 65535.0  # 20 hot pixels
    a, b = normalise(img), normalise(hot)
    mask = hot == img
    # The scale is set by the bulk of the pixels, not by the hot ones.
    np.testing.assert_allclose(a[mask], b[mask], atol=0.02)
    assert b.max() > 100  # hot pixels are not clipped away, just do not set the scale


def test_normalise_constant_image_gives_zeros_without_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for value in (0, 7, 65535):
            n = normalise(np.full((64, 64), value, np.uint16))
            assert n.dtype == np.float32 and not n.any()


def test_normalise_is_exposure_and_offset_invariant(rng):
    img = rng.gamma(2.0, 100.0, (200, 300)).astype(np.float32)
    np.testing.assert_allclose(normalise(img), normalise(3.5 * img + 120.0), atol=1e-5)


def test_subsampled_percentiles_match_full_percentiles_on_a_large_frame(rng):
    img = rng.gamma(2.0, 300.0, (2048, 2048)).astype(np.uint16)
    lo, hi = percentile_range(img)
    full_lo, full_hi = np.percentile(img, (1.0, 99.5))
    span = full_hi - full_lo
    # 65 k samples: the sparse upper tail of a gamma distribution is the worst case (~1 %).
    assert abs(lo - full_lo) < 0.02 * span and abs(hi - full_hi) < 0.02 * span


@pytest.mark.parametrize("lo, hi", [(50, 50), (60, 40), (-1, 99), (1, 101)])
def test_normalise_rejects_bad_percentiles(lo, hi):
    with pytest.raises(ValueError, match="lo_pct"):
        normalise(np.ones((4, 4)), lo, hi)


# -- prepare and ROI ------------------------------------------------------------------


def test_prepare_fast_integer_path_equals_generic_path(rng):
    frame = rng.integers(0, 4096, (300, 200), dtype=np.uint16)
    np.testing.assert_allclose(prepare(frame), normalise(to_grey(frame)), atol=1e-6)
    colour = rng.integers(0, 256, (50, 60, 3), dtype=np.uint8)
    np.testing.assert_allclose(prepare(colour), normalise(to_grey(colour)), atol=1e-6)


def test_prepare_crops_the_roi_before_normalising(rng):
    frame = rng.integers(0, 1000, (100, 120), dtype=np.uint16)
    frame[:, :60] += 5000  # the left half is much brighter
    out = prepare(frame, roi=(70, 10, 40, 30))
    assert out.shape == (30, 40)
    np.testing.assert_allclose(out, normalise(frame[10:40, 70:110].astype(np.float32)), atol=1e-6)


def test_prepare_raw_keeps_camera_units_and_never_aliases(rng):
    frame = rng.random((30, 40)).astype(np.float32)
    raw = prepare(frame, intensity="raw")
    np.testing.assert_array_equal(raw, frame)
    norm = prepare(frame)
    assert not np.shares_memory(norm, frame)
    assert prepare(frame, roi=(1, 2, 5, 6), intensity="raw").flags["C_CONTIGUOUS"]
    with pytest.raises(ValueError, match="intensity"):
        prepare(frame, intensity="log")


@pytest.mark.parametrize(
    "roi, match",
    [
        ((0, 0, 121, 10), "does not fit"),
        ((100, 90, 30, 20), "does not fit"),
        ((-1, 0, 5, 5), "x >= 0"),
        ((0, 0, 0, 5), "positive"),
        ((0, 0, 5), "four integers"),
        ((0.5, 0, 5, 5), "four integers"),
        ((True, 0, 5, 5), "four integers"),
        ("abcd", "four integers"),
        (7, "x, y, w, h"),
    ],
)
def test_roi_validation(roi, match):
    frame = np.zeros((100, 120), np.uint16)
    with pytest.raises(ImageError, match=match):
        prepare(frame, roi=roi)


def test_roi_accepts_numpy_integers_and_crops_views():
    img = np.arange(100 * 120).reshape(100, 120)
    roi = tuple(np.array([3, 4, 10, 20]))
    assert validate_roi(roi, img.shape) == (3, 4, 10, 20)
    view = crop_roi(img, roi)
    assert view.shape == (20, 10) and np.shares_memory(view, img) and view[0, 0] == 4 * 120 + 3


# -- foreground mask ----------------------------------------------------------------


def _disks(shape, centres, radius):
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    inside = np.zeros(shape, bool)
    for cy, cx in centres:
        inside |= (yy - cy) ** 2 + (xx - cx) ** 2 <= radius**2
    return inside


@pytest.mark.parametrize("modality", ["fluorescence", "brightfield"])
def test_foreground_mask_finds_objects(rng, modality):
    shape = (200, 240)
    objects = _disks(shape, [(50, 60), (140, 170), (60, 190)], 15)
    if modality == "fluorescence":
        img = 100.0 + 400.0 * objects  # bright objects on a dark background
    else:
        img = 1000.0 - 300.0 * objects  # dark objects on a bright background
    img = (img + rng.normal(0, 10, shape)).astype(np.float32)
    mask = foreground_mask(img)
    assert mask.dtype == bool and mask.shape == shape
    assert mask[objects].mean() > 0.85
    assert mask[~_disks(shape, [(50, 60), (140, 170), (60, 190)], 20)].mean() < 0.02


def test_foreground_mask_of_blank_or_noise_frame_is_empty(rng):
    assert not foreground_mask(np.full((64, 64), 300, np.uint16)).any()
    noise = rng.normal(300, 10, (128, 128)).astype(np.float32)
    assert foreground_mask(noise).mean() < 0.01


# -- patches and top-k pooling ----------------------------------------------------------


def test_tile_patches_shape_order_and_centring():
    img = np.arange(70 * 100, dtype=np.float32).reshape(70, 100)
    tiles = tile_patches(img, 32)
    assert tiles.shape == (2 * 3, 32, 32)
    y0, x0 = (70 - 64) // 2, (100 - 96) // 2
    np.testing.assert_array_equal(tiles[0], img[y0 : y0 + 32, x0 : x0 + 32])
    np.testing.assert_array_equal(tiles[4], img[y0 + 32 : y0 + 64, x0 + 32 : x0 + 64])


def test_tiles_are_views_where_possible():
    img = np.zeros((128, 40), np.float32)
    assert np.shares_memory(tile_patches(img, 32), img)  # one column: a reshape view
    wide = np.zeros((64, 128), np.float32)
    assert np.shares_memory(tile_grid(wide, 32), wide)  # the 4-D grid is always a view


def test_tile_patches_errors():
    with pytest.raises(ImageError, match="smaller than one"):
        tile_patches(np.zeros((20, 100)), 32)
    with pytest.raises(ValueError):
        tile_patches(np.zeros((64, 64)), 0)
    with pytest.raises(ImageError):
        tile_patches(np.zeros((64, 64, 3)), 32)


def test_topk_mean():
    values = np.arange(1, 11, dtype=float)
    assert topk_mean(values, 0.2) == pytest.approx(9.5)
    assert topk_mean(values, 1.0) == pytest.approx(5.5)
    assert topk_mean(values, 0.01) == pytest.approx(10.0)  # at least one value
    assert topk_mean(values[::-1], 0.3) == pytest.approx(9.0)
    for bad in (0.0, 1.5, -0.1):
        with pytest.raises(ValueError):
            topk_mean(values, bad)
    with pytest.raises(ValueError):
        topk_mean([], 0.5)


def test_topk_patch_score_is_not_diluted_by_background(rng):
    img = np.zeros((256, 256), np.float32)
    img[:64, :64] = rng.normal(0, 1, (64, 64))  # texture in one of 16 patches
    global_var = float(img.var())
    pooled = topk_patch_score(img, lambda t: t.var(axis=(-2, -1)), patch_px=64, k_frac=1 / 16)
    assert pooled == pytest.approx(float(img[:64, :64].var()), rel=1e-5)
    assert pooled > 10 * global_var
    small = rng.normal(0, 1, (20, 20)).astype(np.float32)  # smaller than a patch: whole image
    assert topk_patch_score(small, lambda t: t.var(axis=(-2, -1)), patch_px=64) == pytest.approx(
        float(small.var()), rel=1e-5
    )


def test_prepare_output_feeds_opencv(rng):
    # The prepared image is a valid OpenCV input (contiguous float32) for every input kind.
    for frame in (
        rng.integers(0, 255, (40, 50, 3), dtype=np.uint8),
        rng.integers(0, 65535, (40, 50), dtype=np.uint16),
        rng.random((40, 50)),
    ):
        cv2.Sobel(prepare(frame, roi=(2, 3, 30, 20)), cv2.CV_32F, 1, 0)
