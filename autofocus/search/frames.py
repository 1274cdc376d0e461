"""What the engine measures of every frame besides the scorer's score.

Two things, both cheap (a few block sums per frame) and independent of the
scorer:

- `frame_problem(frame)`: why a frame cannot be scored at all — blank
  (constant), non-finite pixels, or a corrupted transfer (pixels that are
  spatially uncorrelated and spread over a large part of the range, which no
  image of a specimen is). Such a frame gets a NaN score and the search treats
  it as missing.
- `capture_score(frame)`: a wide-capture focus measure — the normalised
  variance of the frame binned into blocks of about 16 × 16 pixels. Fine
  sharpness measures (Tenengrad, …) fall to the noise floor within one or two
  depths of field of focus; the variance of a coarsely binned frame still
  rises several depths of field away, so a sparse sweep can see where focus
  is before it spends frames near it. Higher is closer to focus; its absolute
  value means nothing across specimens.
"""

from __future__ import annotations

import numpy as np

# Blocks of this many pixels per side (fewer on small frames, so at least
# CAPTURE_MIN_BLOCKS blocks remain along the short side).
CAPTURE_BIN_PX = 16
CAPTURE_MIN_BLOCKS = 8
# A corrupted frame: neighbouring pixels correlate less than this ...
NOISE_MAX_CORRELATION = 0.15
# ... while the pixels spread by more than this fraction of their mean.
NOISE_MIN_SPREAD = 0.3


def _grey(frame: np.ndarray) -> np.ndarray:
    f = np.asarray(frame)
    if f.ndim == 3:
        f = f[..., :3].mean(axis=2)
    return f.astype(np.float32, copy=False)


def frame_problem(frame: np.ndarray) -> str | None:
    """Why `frame` (2-D, or H×W×C colour) cannot be scored, or None when it can.

    Returns "blank" (every pixel equal), "non-finite" (NaN/inf pixels) or
    "noise" (a corrupted transfer: lag-1 pixel correlation below
    `NOISE_MAX_CORRELATION` in both directions while the standard deviation
    exceeds `NOISE_MIN_SPREAD` × the mean). A dim, noise-dominated frame of
    a real specimen is not "noise": its spread is small compared with its mean.
    """
    f = np.asarray(frame)
    if f.dtype.kind == "f" and not np.isfinite(f).all():
        return "non-finite"
    if f.size == 0 or f.max() == f.min():
        return "blank"
    g = _grey(f)
    if min(g.shape) < 4:
        return None
    mean = float(g.mean())
    d = g - mean
    var = float(np.mean(d * d))
    if var <= 0:
        return "blank"
    if mean > 0 and np.sqrt(var) < NOISE_MIN_SPREAD * mean:
        return None
    cx = float(np.mean(d[:, 1:] * d[:, :-1])) / var
    cy = float(np.mean(d[1:, :] * d[:-1, :])) / var
    if cx < NOISE_MAX_CORRELATION and cy < NOISE_MAX_CORRELATION:
        return "noise"
    return None


def capture_bin_px(shape: tuple[int, ...]) -> int:
    """The block size (pixels) `capture_score` uses for a frame of `shape`."""
    short = min(int(shape[0]), int(shape[1]))
    return int(max(1, min(CAPTURE_BIN_PX, short // CAPTURE_MIN_BLOCKS)))


def capture_score(frame: np.ndarray) -> float:
    """Wide-capture focus measure: variance / mean of the frame binned in ~16-px blocks.

    Dimensionless, ≥ 0; NaN for a frame `frame_problem` rejects. Cost: one
    pass over the pixels.
    """
    if frame_problem(frame) is not None:
        return float("nan")
    return capture_of_usable(frame)


def capture_of_usable(frame: np.ndarray) -> float:
    """`capture_score` of a frame `frame_problem` already accepted (the check is skipped)."""
    g = _grey(frame)
    b = capture_bin_px(g.shape)
    h, w = (g.shape[0] // b) * b, (g.shape[1] // b) * b
    blocks = g[:h, :w].reshape(h // b, b, w // b, b).mean(axis=(1, 3), dtype=np.float64)
    mean = float(abs(blocks.mean()))
    return float(blocks.var() / mean) if mean > 0 else float(blocks.var())


def capture_rel_noise(shape: tuple[int, ...]) -> float:
    """Expected relative noise of `capture_score` on a noise-only frame of `shape`.

    The variance of n independent block means has a relative standard error of
    √(2/n); a rise of several times this is more than noise can give.
    """
    b = capture_bin_px(shape)
    n = max(1, (int(shape[0]) // b) * (int(shape[1]) // b))
    return float(np.sqrt(2.0 / n))
