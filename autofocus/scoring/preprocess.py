"""The one preprocessing path from a camera frame to the pixels a focus measure sees.

Classical measures and the learned (ONNX) focus model both go through this
module, so a model trained on `prepare(frame)` sees at serving time exactly the
pixels it saw in training. Two versions exist, each a fixed definition recorded
in model cards: "1" = `prepare` (percentile-normalised; focusnet-v1/v2) and
"2" = `prepare_raw` (grey in camera units, no normalisation; focusnet-v3, which
normalises inside its graph so absolute contrast survives). Bump a version
whenever its function's output changes for the same input; a model card naming
a version this module does not define is refused.

Conventions:

* A frame is a 2-D (H, W) grey array or an (H, W, 3|4) colour array in **RGB(A)**
  channel order (tifffile and Pillow order; `autofocus.stacks.readers` converts OpenCV's
  BGR on reading). Any real dtype (bool, uint8, uint16, int, float) is accepted.
* Outputs are float32. Intensities stay in camera units (counts, "ADU") unless
  normalised; `normalise` maps the robust intensity range to about [0, 1].
* An ROI is `(x, y, w, h)` in pixels: column and row of the top-left corner,
  width and height, all integers, lying wholly inside the frame.
* Bad input (empty, wrong shape, complex or object dtype, NaN or infinite
  pixels, an ROI outside the frame) raises `autofocus.errors.ImageError` with a
  sentence naming the problem.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Literal

import cv2
import numpy as np

from autofocus.errors import ImageError

PREPROCESS_VERSION = "1"
"""Version of the output of `prepare`; recorded in model cards."""

RAW_PREPROCESS_VERSION = "2"
"""Version of the output of `prepare_raw` (focusnet-v3 and later); recorded in model cards."""

SUPPORTED_PREPROCESS_VERSIONS = (PREPROCESS_VERSION, RAW_PREPROCESS_VERSION)
"""Model cards may name either: "1" = `prepare` (percentile), "2" = `prepare_raw`."""

Roi = tuple[int, int, int, int]
"""Region of interest `(x, y, w, h)` in pixels."""

# Percentiles are estimated on a strided subsample of at most this many pixels:
# 65 k samples put ~330 of them above the 99.5th percentile, plenty for a stable
# estimate, and cost ~1 ms instead of ~60 ms for np.percentile on a 2048² frame.
_PERCENTILE_SAMPLES = 1 << 16

# Dtypes OpenCV filters and cv2.addWeighted handle natively (no int64, no bool).
_CV2_DTYPES = frozenset(
    np.dtype(t) for t in (np.uint8, np.uint16, np.int16, np.float32, np.float64)
)

# ITU-R BT.601 luma weights, the same cv2.cvtColor uses for RGB2GRAY.
_LUMA_RGB = (0.299, 0.587, 0.114)


def _as_image_array(frame: object) -> np.ndarray:
    """`frame` as an ndarray of a supported dtype and shape (no copy); raises ImageError."""
    try:
        a = np.asarray(frame)
    except Exception as exc:  # e.g. ragged nested lists
        raise ImageError(f"cannot interpret the frame as an image array: {exc}") from None
    if a.dtype.kind not in "buif":
        raise ImageError(f"unsupported pixel type {a.dtype}; expected integer or float pixels")
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    if not (a.ndim == 2 or (a.ndim == 3 and a.shape[2] in (3, 4))):
        raise ImageError(
            f"expected a 2-D grey (H, W) or colour (H, W, 3|4) image, "
            f"got an array of shape {a.shape}"
        )
    if a.shape[0] == 0 or a.shape[1] == 0:
        raise ImageError(f"empty image (shape {a.shape})")
    return a


def _check_finite(g: np.ndarray) -> None:
    """Raise ImageError if the float image `g` holds NaN or infinite pixels."""
    # A float64 sum propagates NaN/inf and costs one fast pass; only a failing sum
    # (or an overflowing one, impossible for float32 data) pays for the exact count.
    if math.isfinite(float(np.add.reduce(g, axis=None, dtype=np.float64))):
        return
    bad = int(g.size - np.count_nonzero(np.isfinite(g)))
    if bad:
        raise ImageError(f"image contains {bad} NaN or infinite pixel(s) of {g.size}")


def validate_roi(roi: Sequence[int], shape: tuple[int, ...] | None = None) -> Roi:
    """Check `roi = (x, y, w, h)` (pixels), and that it fits an image of `shape` (H, W[, C]).

    Returns the ROI as a tuple of Python ints. Raises `ImageError` when the ROI
    does not have four integer entries, has a negative corner or a
    non-positive width or height, or (when `shape` is given) does not lie
    wholly inside the image.
    """
    try:
        values = tuple(roi)
    except TypeError:
        raise ImageError(f"ROI must be (x, y, w, h) in pixels, got {roi!r}") from None
    if len(values) != 4 or not all(
        isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in values
    ):
        raise ImageError(f"ROI must be four integers (x, y, w, h) in pixels, got {roi!r}")
    x, y, w, h = (int(v) for v in values)
    if w <= 0 or h <= 0:
        raise ImageError(f"ROI width and height must be positive, got w={w}, h={h}")
    if x < 0 or y < 0:
        raise ImageError(f"ROI corner must have x >= 0 and y >= 0, got x={x}, y={y}")
    if shape is not None:
        height, width = shape[0], shape[1]
        if x + w > width or y + h > height:
            raise ImageError(
                f"ROI (x={x}, y={y}, w={w}, h={h}) does not fit inside the "
                f"{width}×{height} px image"
            )
    return x, y, w, h


def crop_roi(img: np.ndarray, roi: Sequence[int] | None) -> np.ndarray:
    """The `roi = (x, y, w, h)` (pixels) part of `img` as a view; `img` itself when None.

    Works for grey (H, W) and colour (H, W, C) arrays. Raises `ImageError` for an
    invalid ROI (see `validate_roi`).
    """
    if roi is None:
        return img
    x, y, w, h = validate_roi(roi, img.shape)
    return img[y : y + h, x : x + w]


def to_grey(frame: np.ndarray) -> np.ndarray:
    """Luminance of `frame` as a float32 (H, W) array, in the frame's intensity units.

    2-D frames pass through (converted to float32; a float32 2-D frame is
    returned as is, so do not modify the result in place). Colour frames
    (H, W, 3) / (H, W, 4) are taken as RGB(A) and reduced with the BT.601 luma
    weights (alpha ignored); an (H, W, 1) frame is treated as grey. Raises
    `ImageError` for an empty array, any other shape, a complex/object dtype or
    NaN/infinite pixels.
    """
    a = _as_image_array(frame)
    if a.ndim == 2:
        g = a.astype(np.float32, copy=False)
    else:
        rgb = a[:, :, :3].astype(np.float32)
        r, gch, b = _LUMA_RGB
        # cv2.transform is a single fused pass over the channels (vs three numpy passes).
        g = cv2.transform(rgb, np.array([[r, gch, b]], dtype=np.float32))
        if g.ndim == 3:
            g = g[:, :, 0]
    if a.dtype.kind == "f":
        _check_finite(g)
    return g


def percentile_range(
    img: np.ndarray, lo_pct: float = 1.0, hi_pct: float = 99.5
) -> tuple[float, float]:
    """Estimate the `lo_pct` and `hi_pct` percentiles of a 2-D image (intensity units).

    Uses a regular strided subsample of at most 65 536 pixels, so the cost does
    not grow with the frame size; the estimate is deterministic and within
    about 1–2 % of the intensity range of the exact percentile (worst in a
    sparse bright tail). A periodic pattern with exactly the stride's period
    could bias the estimate; real specimens practically never do. Raises
    `ValueError` for percentiles outside 0 ≤ lo < hi ≤ 100 and `ImageError`
    when the estimate is not finite.
    """
    if not (0.0 <= lo_pct < hi_pct <= 100.0):
        raise ValueError(f"need 0 <= lo_pct < hi_pct <= 100, got {lo_pct}, {hi_pct}")
    a = np.asarray(img)
    if a.ndim != 2 or a.size == 0:
        raise ImageError(f"expected a non-empty 2-D image, got shape {a.shape}")
    step = max(1, math.ceil(math.sqrt(a.size / _PERCENTILE_SAMPLES)))
    sample = a[::step, ::step]
    lo, hi = np.percentile(sample, (lo_pct, hi_pct))
    lo, hi = float(lo), float(hi)
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise ImageError("image contains NaN or infinite pixels")
    return lo, hi


def _affine_float32(a: np.ndarray, scale: float, offset: float) -> np.ndarray:
    """`a * scale + offset` as a new float32 array, in one pass where OpenCV can."""
    if a.ndim == 2 and a.dtype in _CV2_DTYPES:
        return cv2.addWeighted(a, scale, a, 0.0, offset, dtype=cv2.CV_32F)
    out = a.astype(np.float32)
    out *= np.float32(scale)
    out += np.float32(offset)
    return out


def normalise(img: np.ndarray, lo_pct: float = 1.0, hi_pct: float = 99.5) -> np.ndarray:
    """Robust percentile normalisation of a 2-D image to about [0, 1] (float32, unitless).

    Maps the `lo_pct` percentile to 0 and the `hi_pct` percentile to 1 (values
    outside are not clipped: a hot pixel stays large but does not change the
    scale, and sparse bright objects keep their contrast). Percentiles come from
    a strided subsample (see `percentile_range`), so a 2048×2048 frame costs a
    few milliseconds. A constant (or nearly constant: range below 1e-6 of the
    intensity scale) image maps to all zeros instead of dividing by zero. The
    result is invariant to exposure (gain) and offset: `normalise(a*img + b) ==
    normalise(img)` for a > 0. Raises `ImageError` for non-2-D input or NaN/inf
    pixels, `ValueError` for bad percentiles.
    """
    a = np.asarray(img)
    if a.ndim != 2:
        raise ImageError(f"normalise expects a 2-D grey image, got shape {a.shape}")
    if a.dtype.kind not in "buif":
        raise ImageError(f"unsupported pixel type {a.dtype}")
    if a.dtype.kind == "b":
        a = a.astype(np.uint8)
    lo, hi = percentile_range(a, lo_pct, hi_pct)
    span = hi - lo
    if span <= 1e-6 * max(1.0, abs(lo), abs(hi)):
        return np.zeros(a.shape, dtype=np.float32)
    return _affine_float32(a, 1.0 / span, -lo / span)


def prepare(
    frame: np.ndarray,
    *,
    roi: Sequence[int] | None = None,
    intensity: Literal["percentile", "raw"] = "percentile",
) -> np.ndarray:
    """Turn a camera frame into the float32 (h, w) image a focus measure or model sees.

    Steps: crop to `roi = (x, y, w, h)` pixels (None = whole frame), convert to
    grey luminance (`to_grey`), then with `intensity="percentile"` (the
    default, used by the focus model) apply `normalise` (1st → 0, 99.5th
    percentile → 1, unitless); `intensity="raw"` keeps camera units (used by
    classical measures, whose textbook definitions are on raw intensities).
    The result is C-contiguous and never aliases `frame` in the percentile mode.
    Raises `ImageError` for a bad frame or ROI (see `to_grey`, `validate_roi`).
    """
    a = _as_image_array(frame)
    a = crop_roi(a, roi)
    if intensity == "raw":
        return np.ascontiguousarray(to_grey(a))
    if intensity != "percentile":
        raise ValueError(f"intensity must be 'percentile' or 'raw', got {intensity!r}")
    if a.ndim == 2 and a.dtype.kind in "ui" and a.dtype in _CV2_DTYPES:
        # Integer grey frames (the common camera case): normalise straight from the
        # camera dtype in one fused pass, skipping the float32 intermediate copy.
        return normalise(a)
    return normalise(to_grey(a))


def prepare_raw(frame: np.ndarray, *, roi: Sequence[int] | None = None) -> np.ndarray:
    """Preprocessing version "2": ROI crop + grey luminance, float32, camera units, no normalising.

    focusnet-v3 normalises inside its graph (band energies over the frame's
    detail energy, contrast over its mean level), so the absolute contrast
    change between frames reaches the model and no percentile is estimated
    here. Returns a C-contiguous float32 (h, w) array (it may alias a float32
    `frame`: do not modify it in place). Raises `ImageError` like `prepare`.
    """
    a = crop_roi(_as_image_array(frame), roi)
    return np.ascontiguousarray(to_grey(a))


def foreground_mask(img: np.ndarray, *, smooth_px: float | None = None) -> np.ndarray:
    """Boolean (H, W) mask of pixels that belong to the specimen rather than background.

    Works for fluorescence (bright objects on dark) and brightfield (dark or
    bright detail on a grey background) alike: the background level is the
    median intensity; each pixel's absolute deviation from it is averaged with
    a Gaussian of `smooth_px` pixels (default: 1 % of the shorter side, at
    least 2 px), which fills textured objects such as cells; Otsu's threshold
    splits that map. The threshold is kept above the level pure camera noise
    would reach (noise estimated from neighbouring-pixel differences), so a
    blank or noise-only frame gives an (almost) empty mask. Accepts grey or
    colour frames; raises `ImageError` for bad frames (see `to_grey`).
    """
    g = to_grey(img)
    empty = np.zeros(g.shape, dtype=bool)
    if g.size < 4:
        return empty
    sigma_px = max(2.0, min(g.shape) / 100.0) if smooth_px is None else float(smooth_px)
    step = max(1, math.ceil(math.sqrt(g.size / _PERCENTILE_SAMPLES)))
    background = float(np.median(g[::step, ::step]))
    deviation = np.abs(g - np.float32(background))
    if sigma_px > 0:
        deviation = cv2.GaussianBlur(deviation, (0, 0), sigma_px)
    dmax = float(deviation.max())
    if not dmax > 0:
        return empty
    # Robust noise sigma from horizontal neighbour differences (MAD). Averaged
    # |noise| has mean 0.8 sigma and a spread reduced by 1 / (2 s sqrt(pi)) for a
    # 2-D Gaussian of sigma s: the floor sits 4 such spreads above that mean.
    sub = g[::step]
    diffs = (np.diff(sub, axis=1) if g.shape[1] > 1 else np.diff(g, axis=0)).ravel()
    noise = 1.4826 * float(np.median(np.abs(diffs - np.median(diffs)))) / math.sqrt(2.0)
    spread = 0.6 * noise / (2.0 * sigma_px * math.sqrt(math.pi)) if sigma_px > 0 else 0.6 * noise
    floor = 0.8 * noise + 4.0 * spread
    scaled = cv2.convertScaleAbs(deviation, alpha=255.0 / dmax)
    otsu, _ = cv2.threshold(scaled, 0, 255, cv2.THRESH_BINARY | cv2.THRESH_OTSU)
    return deviation > max(float(otsu) * dmax / 255.0, floor)


def tile_grid(img: np.ndarray, patch_px: int) -> np.ndarray:
    """Non-overlapping `patch_px`-square tiles of a 2-D image as an (rows, cols, p, p) view.

    The grid is centred: the few leftover rows/columns (fewer than `patch_px`)
    are split between the two borders and ignored. No pixels are copied.
    Raises `ValueError` for `patch_px < 1` and `ImageError` when the image is
    not 2-D or is smaller than one patch.
    """
    if int(patch_px) != patch_px or patch_px < 1:
        raise ValueError(f"patch_px must be a positive integer, got {patch_px!r}")
    p = int(patch_px)
    a = np.asarray(img)
    if a.ndim != 2:
        raise ImageError(f"tiling expects a 2-D image, got shape {a.shape}")
    height, width = a.shape
    rows, cols = height // p, width // p
    if rows == 0 or cols == 0:
        raise ImageError(f"the {width}×{height} px image is smaller than one {p} px patch")
    y0, x0 = (height - rows * p) // 2, (width - cols * p) // 2
    core = a[y0 : y0 + rows * p, x0 : x0 + cols * p]
    return core.reshape(rows, p, cols, p).swapaxes(1, 2)


def tile_patches(img: np.ndarray, patch_px: int) -> np.ndarray:
    """Non-overlapping `patch_px`-square tiles of a 2-D image as an (n, p, p) array.

    Tiles are in row-major order over a centred grid (leftover border pixels are
    dropped; see `tile_grid`). The result is a view of `img` when the memory
    layout allows (a single column of tiles); otherwise numpy copies. Raises
    like `tile_grid`.
    """
    grid = tile_grid(img, patch_px)
    return grid.reshape(-1, grid.shape[2], grid.shape[3])


def topk_mean(values: np.ndarray | Sequence[float], k_frac: float) -> float:
    """Mean of the largest `ceil(k_frac * n)` of `values` (at least one value).

    `k_frac` is the fraction kept, in (0, 1]; 1 gives the plain mean. Used to
    pool per-patch sharpness so that empty background patches do not dilute the
    score. Raises `ValueError` for empty `values` or `k_frac` outside (0, 1].
    """
    v = np.asarray(values, dtype=np.float64).ravel()
    if v.size == 0:
        raise ValueError("topk_mean of an empty set of values")
    if not (0.0 < k_frac <= 1.0):
        raise ValueError(f"k_frac must lie in (0, 1], got {k_frac}")
    k = max(1, math.ceil(k_frac * v.size - 1e-9))
    if k >= v.size:
        return float(v.mean())
    return float(np.partition(v, v.size - k)[v.size - k :].mean())


def topk_patch_score(
    img: np.ndarray,
    patch_fn: Callable[[np.ndarray], np.ndarray],
    *,
    patch_px: int = 64,
    k_frac: float = 0.25,
) -> float:
    """Score an image per patch and pool the best `k_frac` of the patches.

    `img` is a 2-D array (an image, or a per-pixel sharpness map such as the
    squared gradient); `patch_fn` receives the tiles as an (rows, cols, p, p)
    view (see `tile_grid`) and must reduce over the last two axes, returning one
    score per patch. The result is `topk_mean` of those scores, so a small sharp
    specimen on an empty background is not drowned by the background. An image
    smaller than one patch is scored whole (`patch_fn` on a (1, 1, H, W) view).
    Raises `ValueError` for bad `patch_px`/`k_frac`.
    """
    a = np.asarray(img)
    if a.ndim == 2 and (a.shape[0] < patch_px or a.shape[1] < patch_px):
        grid = a[np.newaxis, np.newaxis]
    else:
        grid = tile_grid(a, patch_px)
    scores = np.asarray(patch_fn(grid), dtype=np.float64)
    return topk_mean(scores, k_frac)


__all__ = [
    "PREPROCESS_VERSION",
    "RAW_PREPROCESS_VERSION",
    "SUPPORTED_PREPROCESS_VERSIONS",
    "Roi",
    "crop_roi",
    "foreground_mask",
    "normalise",
    "percentile_range",
    "prepare",
    "prepare_raw",
    "tile_grid",
    "tile_patches",
    "to_grey",
    "topk_mean",
    "topk_patch_score",
    "validate_roi",
]
