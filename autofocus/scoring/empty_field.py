"""Is a frame an empty field? A classical test: nothing in it but smooth light and noise.

Complements the focus model's `no_specimen_p` (see `OnnxDefocusScorer.estimate`):
the model misses some blank frames with uneven illumination, which are easy to
recognise by statistics. A frame counts as empty when all three of these stay
within what camera noise gives (each in units of its own noise σ, measured on
the frame itself):

* `spot_z` — the strongest spot or blob 8 or 16 px across: a band-pass of
  window means that cancels every polynomial up to degree 3 (so illumination
  gradients and vignetting give nothing), taken along x and y, the smaller of
  the two (a blob stands out along both axes, an edge or a crease of the
  illumination along one only). Borders are padded by point reflection (which
  continues a gradient) and, on the border strips but not the corners, also by
  mirror reflection (which shows a bead on the edge row whole).
* `block_z` — the largest residual of block means (about 12 blocks along the
  shorter side) about a least-squares degree-2 surface: large faint blobs
  such as defocused beads and cells.
* `excess_chi_z` — the same residuals' χ² above its noise expectation,
  (mean z² − 1) / √(2/n): structure spread over the whole field.

The noise σ is local: from the 2×2 checkerboard contrast of 4×4 px block
means (which smooth light and gradients do not reach), averaged over 32-px
tiles and median-filtered over 3×3 tiles (the median's bias corrected), so
shot noise that grows with brightness and a bright object inflating its own
tile are both handled — the same statistics
idea as `capture_rel_noise` in the search.

Limits (`SPOT_Z_MAX`, `BLOCK_Z_MAX`, `EXCESS_CHI_Z_MAX`) were chosen on
validation frames (blank frames of seed 4 000 000 and sparse-specimen stacks
of seeds from 7 000 000), never on the model's test frames. The spot limit
grows like √(ln n) with the number of windows n, so larger frames (more
chances for a noise peak) are not called structured more often. JPEG block
artefacts and hot pixels read as structure (such frames are not called
empty: the model alone judges them); a frame under 32 px a side is not judged.

numpy and OpenCV (as `preprocess`); it reads the frame once (4×4 block means)
and works on those. Cost on the 2-core VM under load: about 0.3 ms per 256²
frame and 6–8 ms per 2048² frame, against 0.15 ms and 6–10 ms for the model's
graph outputs in the same runs (`python -m autofocus_models.pipeline.v3.empty_field_limits
--bench`).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import cv2
import numpy as np

SPOT_Z_MAX = 4.5
"""Largest `spot_z` of an empty 192² frame (noise σ); scaled by √(ln n / ln n₁₉₂) with size."""
BLOCK_Z_MAX = 4.0
"""Largest `block_z` of an empty frame (noise σ of a block mean)."""
EXCESS_CHI_Z_MAX = 8.0
"""Largest `excess_chi_z` of an empty frame (σ of the χ² under noise alone)."""
P_EMPTY = 0.99
"""`p_empty` of a frame well inside all three limits (classical evidence is never certainty)."""
RAMP = 0.1
"""`p_empty` falls linearly from P_EMPTY to 0 as the worst ratio statistic/limit goes from
1 − RAMP to 1 + RAMP (0.5 · P_EMPTY at the limit itself)."""
MIN_SIDE_PX = 32
"""Frames with a shorter side are not judged (p_empty 0)."""
TILE_PX = 32
"""Side (px) of the tiles of the local noise estimate (16 checkerboard values each)."""
_MEDIAN_BIAS = 1.0 / (1.0 - 2.0 / (9.0 * (TILE_PX // 8) ** 2)) ** 3
"""Mean / median of a tile's variance estimate (χ² with (TILE_PX/8)² degrees of freedom, the
Wilson–Hilferty approximation): the 3×3 median of tiles would otherwise read noise low."""
BLOCKS_PER_SIDE = 12
"""About this many blocks along the shorter side for the degree-2 surface fit."""
_REF_WINDOWS = 48 * 48
"""Windows at the finest spot scale of a 192² frame (the size the limits were chosen at)."""
_VAR_FLOOR = 1.0 / 12.0
"""Floor of the noise variance of one binned pixel (ADU²): quantisation of integer frames."""
_TAP_NORM = math.sqrt(2 * 0.125**2 + 2 * 0.5**2 + 0.75**2)
"""Noise gain of the spot band-pass (its taps' root sum of squares)."""


@dataclass(frozen=True)
class EmptyFieldTest:
    """The classical empty-field statistics of one frame (all in noise σ units, see module doc).

    `empty`: all three within their limits; `p_empty`: probability-like
    0 … `P_EMPTY` for combining with a model's no-specimen probability.
    """

    spot_z: float
    block_z: float
    excess_chi_z: float
    spot_limit: float

    @property
    def worst_ratio(self) -> float:
        """The largest statistic / limit ratio (≤ 1 means empty)."""
        return max(self.spot_z / self.spot_limit, self.block_z / BLOCK_Z_MAX,
                   self.excess_chi_z / EXCESS_CHI_Z_MAX)

    @property
    def empty(self) -> bool:
        """True when nothing in the frame exceeds what noise and smooth light give."""
        return self.worst_ratio <= 1.0

    @property
    def p_empty(self) -> float:
        """P_EMPTY well inside the limits, 0 well outside, linear across ±RAMP of them."""
        r = self.worst_ratio
        if not math.isfinite(r):
            return 0.0
        return P_EMPTY * min(1.0, max(0.0, (1.0 + RAMP - r) / (2.0 * RAMP)))


_NOT_JUDGED = EmptyFieldTest(math.inf, math.inf, math.inf, SPOT_Z_MAX)


def _block_mean(a: np.ndarray, b: int) -> np.ndarray:
    """Means of b×b blocks (whole blocks only), float32."""
    h, w = a.shape[0] // b, a.shape[1] // b
    if b == 1:
        return np.ascontiguousarray(a[:h, :w], dtype=np.float32)
    a = np.ascontiguousarray(a[:h * b, :w * b], dtype=np.float32)
    return cv2.resize(a, (w, h), interpolation=cv2.INTER_AREA)


def _median3(v: np.ndarray) -> np.ndarray:
    """3×3 median of a 2-D float32 array (edges replicated)."""
    if min(v.shape) < 3:
        return np.full_like(v, float(np.median(v)))
    return cv2.medianBlur(np.ascontiguousarray(v, dtype=np.float32), 3)


_TAPS = (0.125, -0.5, 0.75, -0.5, 0.125)
# Along one axis: the band-pass taps at ±2, ±4 windows, each window the mean of 2 binned px;
# across it: the window's other side (mean of 2). Offsets −4 … +5 around the anchor at 4.
_KERNEL_ALONG = np.array([t * 0.5 for t in _TAPS for _ in range(2)], np.float32)
_KERNEL_ACROSS = np.array([0.5, 0.5], np.float32)
_PAD = 5


def _pads(s: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """`s` padded by `n` px two ways: point reflection (2·edge − mirror image, which continues
    straight lines exactly) and mirror reflection (which shows a spot at the edge whole)."""
    e = cv2.copyMakeBorder(s, n, n, n, n, cv2.BORDER_REPLICATE)
    r = cv2.copyMakeBorder(s, n, n, n, n, cv2.BORDER_REFLECT_101)
    return cv2.addWeighted(e, 2.0, r, -1.0, 0.0), r


def _edge_extremes(mirror: np.ndarray, inv: np.ndarray, h: int, w: int) -> tuple[float, float]:
    """(largest bright, most negative dark) response of the mirror-padded level within `_PAD`
    px of one border (corners left out), in noise σ; `inv` the 1/σ map (h, w)."""
    n = _PAD
    hi, lo = 0.0, 0.0
    # (rows, cols) of the padded array each strip needs, and the output cells it gives.
    strips = (((slice(0, 3 * n), slice(0, w + 2 * n)), (slice(0, n), slice(n, w - n))),
              ((slice(h - n, h + 2 * n), slice(0, w + 2 * n)), (slice(h - n, h), slice(n, w - n))),
              ((slice(0, h + 2 * n), slice(0, 3 * n)), (slice(n, h - n), slice(0, n))),
              ((slice(0, h + 2 * n), slice(w - n, w + 2 * n)), (slice(n, h - n), slice(w - n, w))))
    for (pr, pc), (orow, ocol) in strips:
        part = np.ascontiguousarray(mirror[pr, pc])
        ph, pw = part.shape
        bx, by = _band(part, ph - 2 * n, pw - 2 * n)
        # The strip's own outputs: rows/cols of the output grid it covers.
        r0 = orow.start - (pr.start if pr.start else 0)
        c0 = ocol.start - (pc.start if pc.start else 0)
        rr = slice(r0, r0 + (orow.stop - orow.start))
        cc = slice(c0, c0 + (ocol.stop - ocol.start))
        iv = inv[orow, ocol]
        if iv.size == 0:
            continue
        hi = max(hi, float((np.minimum(bx[rr, cc], by[rr, cc]) * iv).max()))
        lo = min(lo, float((np.maximum(bx[rr, cc], by[rr, cc]) * iv).min()))
    return hi, lo


def _band(p: np.ndarray, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """The band-pass along x and along y of a padded level (valid part, (h, w) each)."""
    bx = cv2.sepFilter2D(p, cv2.CV_32F, _KERNEL_ALONG, _KERNEL_ACROSS, anchor=(4, 0),
                         borderType=cv2.BORDER_REPLICATE)[_PAD:_PAD + h, _PAD:_PAD + w]
    by = cv2.sepFilter2D(p, cv2.CV_32F, _KERNEL_ACROSS, _KERNEL_ALONG, anchor=(0, 4),
                         borderType=cv2.BORDER_REPLICATE)[_PAD:_PAD + h, _PAD:_PAD + w]
    return bx, by


def _spot_z(s1: np.ndarray, var_tiles: np.ndarray, tile_s1: int,
            levels: tuple[int, ...]) -> list[float]:
    """Strongest bright or dark blob per level, in noise σ of the band-pass response.

    `s1`: the frame in 4×4 px block means; level k uses windows of 2 × 2^k such
    blocks (8 px, 16 px, 32 px … across); `var_tiles`: the noise variance of
    one `s1` pixel per tile of `tile_s1` × `tile_s1` of them.
    """
    out = []
    for level in levels:
        sub = 1 << level
        s = _block_mean(s1, sub)
        h, w = s.shape
        if min(h, w) < 2 * _PAD + 2:
            out.append(0.0)
            continue
        # Point reflection at the borders continues gradients, so a gradient gives nothing
        # there; but it shows a spot on the border row as a ramp rising outwards. Mirror
        # reflection shows that spot whole, and turns a gradient into a crease along the
        # border, which the minimum over the two axes ignores — except in the corners, where
        # it is a crease along both: there only the point reflection counts.
        odd, mirror = _pads(s, _PAD)  # (the mirror image is used at the finest level only)
        bx, by = _band(odd, h, w)
        # 1 / noise σ of the response: a window mean's σ is an s-pixel's σ / 2 … and an
        # s pixel's is an s1 pixel's / sub (white noise).
        tile = max(1, tile_s1 // sub)
        th, tw = min(var_tiles.shape[0], -(-h // tile)), min(var_tiles.shape[1], -(-w // tile))
        inv_tiles = np.float32(2.0 * sub / _TAP_NORM) / np.sqrt(var_tiles[:th, :tw])
        inv = cv2.resize(inv_tiles, (tw * tile, th * tile), interpolation=cv2.INTER_NEAREST)
        if inv.shape != (h, w):  # the last partial tiles take their neighbour's noise
            inv = cv2.copyMakeBorder(inv[:h, :w], 0, max(0, h - inv.shape[0]), 0,
                                     max(0, w - inv.shape[1]), cv2.BORDER_REPLICATE)
        # A bright blob: both axes positive (their minimum); a dark one: both negative.
        lo, hi = cv2.min(bx, by), cv2.max(bx, by)
        bright = cv2.minMaxLoc(cv2.multiply(lo, inv, dst=lo))[1]
        dark = cv2.minMaxLoc(cv2.multiply(hi, inv, dst=hi))[0]
        edge_bright, edge_dark = _edge_extremes(mirror, inv, h, w) if level == 0 else (0.0, 0.0)
        out.append(max(bright, edge_bright, -dark, -edge_dark, 0.0))
    return out


@functools.lru_cache(maxsize=16)
def _design(gh: int, gw: int) -> np.ndarray:
    """Degree-2 surface basis (1, x, y, x², xy, y²) over a gh × gw block grid, (gh·gw, 6)."""
    yy, xx = np.mgrid[0:gh, 0:gw].astype(np.float64)
    yy = (yy - (gh - 1) / 2) / max(gh, gw)
    xx = (xx - (gw - 1) / 2) / max(gh, gw)
    a = np.stack([np.ones_like(xx), xx, yy, xx * xx, xx * yy, yy * yy], -1).reshape(-1, 6)
    a.flags.writeable = False
    return a


def _surface_z(t: np.ndarray, var_t: np.ndarray, block_t: int) -> tuple[float, float]:
    """(largest |z|, χ² excess z) of block means about a degree-2 surface.

    Weighted least squares (weights 1/σ² of each block mean), refitted once
    without the blocks beyond `BLOCK_Z_MAX`, so one bright object does not
    bend the surface towards itself.
    """
    m = _block_mean(t, block_t).astype(np.float64)
    gh, gw = m.shape
    if gh * gw < 12:
        return 0.0, 0.0
    a = _design(gh, gw)
    wt = (block_t / np.sqrt(var_t.astype(np.float64))).ravel()
    y = m.ravel()
    aw = a * wt[:, None]
    yw = y * wt
    z = np.zeros(y.size)
    keep = np.ones(y.size, bool)
    for _ in range(2):
        ak = aw[keep]
        try:
            coef = np.linalg.solve(ak.T @ ak, ak.T @ yw[keep])
        except np.linalg.LinAlgError:
            coef = np.linalg.lstsq(ak, yw[keep], rcond=None)[0]
        z = yw - aw @ coef
        keep = np.abs(z) < BLOCK_Z_MAX
        if keep.sum() < 12:
            break
    chi = (float(np.mean(z * z)) - 1.0) / math.sqrt(2.0 / z.size)
    return float(np.abs(z).max()), chi


def empty_field_stats(grey: np.ndarray) -> dict[str, float] | None:
    """All statistics of the test for one grey frame (None when the frame is not judged)."""
    g = np.asarray(grey)
    if g.ndim != 2:
        raise ValueError(f"empty_field_test takes a 2-D grey frame, got shape {g.shape}")
    if min(g.shape) < MIN_SIDE_PX:
        return None
    h, w = g.shape[0] // 4 * 4, g.shape[1] // 4 * 4
    g = np.ascontiguousarray(g[:h, :w], dtype=np.float32)
    s1 = cv2.resize(g, (w // 4, h // 4), interpolation=cv2.INTER_AREA)  # 4×4 px block means
    if not np.isfinite(s1).all():
        return None
    # Checkerboard contrast of 2×2 blocks: its square estimates one block mean's noise variance
    # and is blind to smooth light (it cancels constants and gradients).
    h2, w2 = s1.shape[0] // 2 * 2, s1.shape[1] // 2 * 2
    cb = (s1[0:h2:2, 0:w2:2] + s1[1:h2:2, 1:w2:2] - s1[1:h2:2, 0:w2:2]
          - s1[0:h2:2, 1:w2:2]) * 0.5
    cb2 = cb * cb
    tile_cb = max(1, TILE_PX // 8)  # checkerboard px are 8 frame px
    var_tiles = np.maximum(_median3(_block_mean(cb2, tile_cb)) * np.float32(_MEDIAN_BIAS),
                           _VAR_FLOOR / 16.0)
    th, tw = var_tiles.shape
    tile_s1 = 2 * tile_cb
    spots = _spot_z(s1, var_tiles, tile_s1, (0, 1))
    block_s1 = max(4, round(min(h, w) / (4 * BLOCKS_PER_SIDE)))
    gh, gw = s1.shape[0] // block_s1, s1.shape[1] // block_s1
    # Each block takes the noise of the tile holding its centre.
    yi = np.minimum((np.arange(gh) * block_s1 + block_s1 // 2) // tile_s1, th - 1)
    xi = np.minimum((np.arange(gw) * block_s1 + block_s1 // 2) // tile_s1, tw - 1)
    var_blocks = var_tiles[np.ix_(yi, xi)]
    block_z, chi = _surface_z(s1, var_blocks, block_s1)
    return {"spot8": spots[0], "spot16": spots[1],
            "block_z": block_z, "excess_chi_z": chi, "windows": float(s1.size)}


def empty_field_test(grey: np.ndarray) -> EmptyFieldTest:
    """The classical empty-field statistics of one grey frame (H, W) in camera units.

    Takes the frame as `autofocus.scoring.preprocess.prepare_raw` gives it
    (any real dtype; not normalised). Frames with a side under `MIN_SIDE_PX`
    or non-finite values are not judged (`p_empty` 0). Raises `ValueError`
    for an array that is not 2-D.
    """
    st = empty_field_stats(grey)
    if st is None:
        return _NOT_JUDGED
    limit = SPOT_Z_MAX * math.sqrt(max(math.log(st["windows"]), 1.0) / math.log(_REF_WINDOWS))
    return EmptyFieldTest(spot_z=max(st["spot8"], st["spot16"]), block_z=st["block_z"],
                          excess_chi_z=st["excess_chi_z"], spot_limit=max(limit, SPOT_Z_MAX))


def empty_field_p(greys: list[np.ndarray]) -> np.ndarray:
    """`p_empty` of each grey frame, float64 (n,) in [0, P_EMPTY] (see `empty_field_test`)."""
    return np.array([empty_field_test(g).p_empty for g in greys], dtype=np.float64)


def combine_no_specimen(p_model: np.ndarray, p_empty: np.ndarray) -> np.ndarray:
    """No-specimen probability from the model's and the classical test's: their maximum.

    The classical test only ever says "empty" when the frame holds nothing but
    smooth light and noise, so it can add flags the model missed (uneven
    illumination on an empty field) but never removes one.
    """
    return np.maximum(np.asarray(p_model, np.float64), np.asarray(p_empty, np.float64))
