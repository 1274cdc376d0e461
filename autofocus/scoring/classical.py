"""Classical focus measures, each a `Scorer` registered by name in `autofocus.scoring.registry`.

| name (aliases) | measure | scales with exposure × a |
|---|---|---|
| `tenengrad` | mean squared 3×3 Sobel gradient magnitude | a² |
| `vol` (`laplacian`) | variance of the 4-neighbour Laplacian | a² |
| `nvar` | normalized variance var(I) / mean(I) (Groen 1985) | a |
| `brenner` | mean squared difference of pixels 2 apart, x and y | a² |
| `vollath` (`vollath4`) | Vollath F4 autocorrelation, x and y | a² |
| `fft` | mean power of the image band-passed to 0.15–0.35 cycles/px | a² |

Every scorer takes the options `roi=(x, y, w, h)` (pixels, None = whole
frame), `pooling="global"` (the measure over the whole image) or `"topk"`
(the measure per `patch_px` square patch, pooled over the best `k_frac` of
patches, so a small specimen on empty background is not drowned), and
`normalise` (percentile-normalise each frame first with
`autofocus.scoring.preprocess.normalise`, making scores exposure- and offset-invariant;
refused by `nvar`, whose definition needs raw intensities).

By default (`normalise=False`) the measures run on raw grey intensities, as in
their textbook definitions. That choice is measured, not assumed: on the
labelled real stacks in `shared/data/real` (7 stacks, `autofocus eval`), raw
intensities put Tenengrad within tolerance on 6/7 stacks, variance of
Laplacian 5/7, normalized variance 6/7, Brenner 5/7, Vollath 5/7, fft 6/7,
while per-frame percentile normalisation drops Tenengrad to 4/7, variance of
Laplacian to 1/7, Brenner 3/7, fft 2/7: normalising each frame to its own
1st–99.5th percentile range stretches the contrast of defocused frames (their
bright tail shrinks with blur) and so flattens the focus curve; on synthetic
brightfield series it can move Vollath's peak by one plane. Within one
focus run the exposure is fixed, so raw scores lose nothing for choosing the
best plane; only absolute score values change with exposure.

Each scorer's `score(frames)` takes a sequence of frames (2-D grey or
(H, W, 3|4) RGB(A), any real dtype) and returns a float64 array, higher =
sharper. A frame that is empty, of the wrong shape, not finite, or smaller than
3×3 pixels raises `autofocus.errors.ImageError`.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import ClassVar, Literal

import cv2
import numpy as np
import scipy.fft

from autofocus.errors import ImageError
from autofocus.scoring.base import ScorerEntry
from autofocus.scoring.preprocess import prepare, topk_patch_score, validate_roi

Pooling = Literal["global", "topk"]


def _patch_mean(tiles: np.ndarray) -> np.ndarray:
    return tiles.mean(axis=(-2, -1), dtype=np.float64)


class ClassicalMeasure:
    """Base class of the classical focus measures (a `Scorer`).

    Options (keywords): `roi` (x, y, w, h) in pixels or None; `pooling`
    "global" or "topk"; `patch_px` (side of a square patch, pixels, ≥ 4) and
    `k_frac` (fraction of patches kept, in (0, 1]) for "topk" pooling;
    `normalise` (bool) to percentile-normalise frames before measuring.
    Raises `ValueError` for invalid options and `ImageError` for an invalid ROI.
    Subclasses implement `_global(g)` and either `_pixel_map(g)` (a per-pixel map
    whose mean is the measure) or `_pooled(g)`.
    """

    name: str = ""
    description: ClassVar[str] = ""
    min_side_px: ClassVar[int] = 3
    supports_normalise: ClassVar[bool] = True

    def __init__(
        self,
        *,
        roi: Sequence[int] | None = None,
        pooling: Pooling = "global",
        patch_px: int = 64,
        k_frac: float = 0.25,
        normalise: bool = False,
    ) -> None:
        if pooling not in ("global", "topk"):
            raise ValueError(f"pooling must be 'global' or 'topk', got {pooling!r}")
        if int(patch_px) != patch_px or patch_px < 4:
            raise ValueError(f"patch_px must be an integer >= 4, got {patch_px!r}")
        if not (0.0 < float(k_frac) <= 1.0):
            raise ValueError(f"k_frac must lie in (0, 1], got {k_frac!r}")
        self.roi = validate_roi(roi) if roi is not None else None
        self.pooling: Pooling = pooling
        self.patch_px = int(patch_px)
        self.k_frac = float(k_frac)
        if normalise and not self.supports_normalise:
            raise ValueError(
                f"the {self.name} measure is defined on raw intensities; normalise=True would "
                "make it meaningless"
            )
        self.normalise = bool(normalise)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(roi={self.roi}, pooling={self.pooling!r}, "
            f"patch_px={self.patch_px}, k_frac={self.k_frac}, normalise={self.normalise})"
        )

    def score(self, frames: Sequence[np.ndarray]) -> np.ndarray:
        """Sharpness of each frame (float64, shape (n,), higher = sharper); see module doc."""
        out = np.empty(len(frames), dtype=np.float64)
        for i, frame in enumerate(frames):
            out[i] = self.score_frame(frame)
        return out

    def score_frame(self, frame: np.ndarray) -> float:
        """Sharpness of one frame (same rules as `score`)."""
        g = prepare(frame, roi=self.roi, intensity="percentile" if self.normalise else "raw")
        if min(g.shape) < self.min_side_px:
            raise ImageError(
                f"image of {g.shape[1]}×{g.shape[0]} px is too small for the {self.name} "
                f"measure (needs at least {self.min_side_px}×{self.min_side_px})"
            )
        if self.pooling == "global":
            return float(self._global(g))
        return float(self._pooled(g))

    # -- to implement -------------------------------------------------------------
    def _global(self, g: np.ndarray) -> float:
        return float(cv2.mean(self._pixel_map(g))[0])

    def _pixel_map(self, g: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _pooled(self, g: np.ndarray) -> float:
        return topk_patch_score(
            self._pixel_map(g), _patch_mean, patch_px=self.patch_px, k_frac=self.k_frac
        )


class Tenengrad(ClassicalMeasure):
    """Tenengrad: mean of Gx² + Gy² with 3×3 Sobel kernels (intensity² per pixel)."""

    name = "tenengrad"
    description = "mean squared Sobel gradient magnitude (Tenengrad)"

    @staticmethod
    def _gradients(g: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        gx = cv2.Sobel(g, cv2.CV_32F, 1, 0, ksize=3)
        gy = cv2.Sobel(g, cv2.CV_32F, 0, 1, ksize=3)
        return gx, gy

    def _global(self, g: np.ndarray) -> float:
        gx, gy = self._gradients(g)
        # cv2.norm accumulates in float64 in one pass: no squared temporaries.
        return (cv2.norm(gx, cv2.NORM_L2SQR) + cv2.norm(gy, cv2.NORM_L2SQR)) / g.size

    def _pixel_map(self, g: np.ndarray) -> np.ndarray:
        gx, gy = self._gradients(g)
        np.multiply(gx, gx, out=gx)
        np.multiply(gy, gy, out=gy)
        gx += gy
        return gx


class VarianceOfLaplacian(ClassicalMeasure):
    """Variance of the 4-neighbour Laplacian (Pech-Pacheco 2000), intensity²."""

    name = "vol"
    description = "variance of the Laplacian"

    def _global(self, g: np.ndarray) -> float:
        lap = cv2.Laplacian(g, cv2.CV_32F)
        _, sd = cv2.meanStdDev(lap)
        return float(sd[0, 0]) ** 2

    def _pooled(self, g: np.ndarray) -> float:
        lap = cv2.Laplacian(g, cv2.CV_32F)
        return topk_patch_score(
            lap,
            lambda t: t.var(axis=(-2, -1), dtype=np.float64),
            patch_px=self.patch_px,
            k_frac=self.k_frac,
        )


def _nvar(mean: np.ndarray, var: np.ndarray) -> np.ndarray:
    # Undefined for a non-positive mean (a black frame): score it 0, "no signal".
    safe = np.where(mean > 0, mean, 1.0)
    return np.where(mean > 0, var / safe, 0.0)


class NormalizedVariance(ClassicalMeasure):
    """Normalized variance var(I) / mean(I) (Groen 1985), in intensity units.

    Defined on raw intensities, so `normalise=True` is refused (`ValueError`):
    after percentile normalisation the mean is an arbitrary number near the
    background level and var/mean stops tracking focus. A frame with a
    non-positive mean scores 0. On brightfield stacks, where contrast inverts
    through focus, it can peak far from focus (a known weakness of the
    measure, not of this implementation).
    """

    name = "nvar"
    description = "normalized variance var/mean"
    supports_normalise = False

    def _global(self, g: np.ndarray) -> float:
        mean, sd = cv2.meanStdDev(g)
        return float(_nvar(np.float64(mean[0, 0]), np.float64(sd[0, 0]) ** 2))

    def _pooled(self, g: np.ndarray) -> float:
        def per_patch(tiles: np.ndarray) -> np.ndarray:
            mean = tiles.mean(axis=(-2, -1), dtype=np.float64)
            var = tiles.var(axis=(-2, -1), dtype=np.float64)
            return _nvar(mean, var)

        return topk_patch_score(g, per_patch, patch_px=self.patch_px, k_frac=self.k_frac)


class Brenner(ClassicalMeasure):
    """Brenner gradient: mean of (I(x+2) − I(x))² + (I(y+2) − I(y))² (intensity²).

    Both directions are used (Brenner's original is horizontal only) so the
    score does not depend on the specimen's orientation.
    """

    name = "brenner"
    description = "Brenner gradient, squared differences of pixels 2 apart"

    def _global(self, g: np.ndarray) -> float:
        energy = cv2.norm(g[:, 2:], g[:, :-2], cv2.NORM_L2SQR) + cv2.norm(
            g[2:, :], g[:-2, :], cv2.NORM_L2SQR
        )
        return energy / g.size

    def _pixel_map(self, g: np.ndarray) -> np.ndarray:
        out = np.zeros_like(g)
        dx = g[:, 2:] - g[:, :-2]
        out[:, :-2] = dx * dx
        dy = g[2:, :] - g[:-2, :]
        out[:-2, :] += dy * dy
        return out


class VollathF4(ClassicalMeasure):
    """Vollath F4 autocorrelation: mean of I(x)·(I(x+1) − I(x+2)), x and y (intensity²).

    Written as I(x)·(I(x+1) − I(x+2)) rather than the textbook difference of two
    sums so large raw intensities do not cancel catastrophically in float32.
    """

    name = "vollath"
    description = "Vollath F4 autocorrelation"

    def _pixel_map(self, g: np.ndarray) -> np.ndarray:
        out = np.zeros_like(g)
        out[:, :-2] = g[:, :-2] * (g[:, 1:-1] - g[:, 2:])
        out[:-2, :] += g[:-2, :] * (g[1:-1, :] - g[2:, :])
        return out


@functools.lru_cache(maxsize=32)
def _band_weights(height: int, width: int, lo_cpp: float, hi_cpp: float) -> np.ndarray:
    """Weights over an rfft2 spectrum: 1 (or 2 for mirrored columns) inside the band, else 0."""
    fy = np.fft.fftfreq(height)[:, np.newaxis]
    fx = np.fft.rfftfreq(width)[np.newaxis, :]
    radius = np.hypot(fy, fx)
    weights = ((radius >= lo_cpp) & (radius <= hi_cpp)).astype(np.float32)
    # rfft2 stores half the spectrum: every column except DC (and Nyquist for an
    # even width) stands for itself and its mirror image, so it counts twice.
    last = width // 2 if width % 2 == 0 else width // 2 + 1
    weights[:, 1:last] *= 2.0
    weights.setflags(write=False)
    return weights


class BandpassFFT(ClassicalMeasure):
    """Spectral energy in a band of spatial frequencies (intensity²).

    The mean-subtracted image's power spectrum is summed over radial
    frequencies `band_cycles_per_px = (lo, hi)` (default 0.15–0.35 cycles per
    pixel, Nyquist = 0.5) and scaled by Parseval so the score is the mean
    square of the band-passed image. The band skips the lowest frequencies
    (illumination, which changes through focus in brightfield) and the highest
    (pixel noise, JPEG block artefacts). It was chosen from a sweep of nine
    bands on the real corpus (4–6 of 7 stacks in tolerance; this one 6/7).
    """

    name = "fft"
    description = "band-pass (0.15-0.35 cycles/px) spectral energy"

    def __init__(
        self, *, band_cycles_per_px: tuple[float, float] = (0.15, 0.35), **options: object
    ) -> None:
        super().__init__(**options)  # type: ignore[arg-type]
        lo, hi = (float(v) for v in band_cycles_per_px)
        if not (0.0 <= lo < hi <= 0.75):
            raise ValueError(
                f"band_cycles_per_px must satisfy 0 <= lo < hi <= 0.75, got {band_cycles_per_px}"
            )
        self.band_cycles_per_px = (lo, hi)

    def _band_energy(self, tiles: np.ndarray) -> np.ndarray:
        h, w = tiles.shape[-2:]
        centred = tiles - tiles.mean(axis=(-2, -1), keepdims=True, dtype=np.float32)
        spectrum = scipy.fft.rfft2(centred, axes=(-2, -1))
        power = spectrum.real**2 + spectrum.imag**2
        weights = _band_weights(h, w, *self.band_cycles_per_px)
        return (power * weights).sum(axis=(-2, -1), dtype=np.float64) / float(h * w) ** 2

    def _global(self, g: np.ndarray) -> float:
        return float(self._band_energy(g))

    def _pooled(self, g: np.ndarray) -> float:
        return topk_patch_score(g, self._band_energy, patch_px=self.patch_px, k_frac=self.k_frac)


def opencv_variance_of_laplacian(frame: np.ndarray) -> float:
    """The common OpenCV one-liner: variance of `cv2.Laplacian` of the frame as float32.

    No preprocessing at all (no grey conversion, ROI or normalisation): this is
    the speed baseline the learned model is benchmarked against. `frame` must
    be a 2-D array; raises `ImageError` otherwise.
    """
    a = np.asarray(frame)
    if a.ndim != 2 or a.size == 0:
        raise ImageError(f"expected a non-empty 2-D frame, got shape {a.shape}")
    lap = cv2.Laplacian(a.astype(np.float32, copy=False), cv2.CV_32F)
    _, sd = cv2.meanStdDev(lap)
    return float(sd[0, 0]) ** 2


MEASURES: dict[str, type[ClassicalMeasure]] = {
    cls.name: cls
    for cls in (Tenengrad, VarianceOfLaplacian, NormalizedVariance, Brenner, VollathF4, BandpassFFT)
}
"""The classical measure classes by registered name."""

_ALIASES = {"vol": ("laplacian",), "vollath": ("vollath4",)}



def builtin_scorers() -> list[ScorerEntry]:
    """The classical measures as registry entries (read by `autofocus.scoring.registry`)."""
    return [
        ScorerEntry(name, cls, _ALIASES.get(name, ()), cls.description)
        for name, cls in MEASURES.items()
    ]


__all__ = [
    "MEASURES",
    "BandpassFFT",
    "Brenner",
    "ClassicalMeasure",
    "NormalizedVariance",
    "Tenengrad",
    "VarianceOfLaplacian",
    "VollathF4",
    "builtin_scorers",
    "opencv_variance_of_laplacian",
]
