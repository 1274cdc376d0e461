"""`coarse-fine` (the default, alias `auto`): coarse sweep, failure checks, model-fit refinement."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from autofocus.strategies.base import SearchSpace
from autofocus.strategies.common import (
    Search,
    SearchStrategy,
    edge_reason,
    flat_reason,
    is_flat,
    too_few_reason,
)
from autofocus.strategies.peakfit import (
    PeakFit,
    argmax_peak,
    finite_points,
    fit_best_model,
    noise_sigma,
    top_points_fit,
)
from autofocus.strategies.sweep import grid


class CoarseFine(SearchStrategy):
    """Coarse sweep in one batch, then a few refinement points fitted with a peak model.

    1. Coarse: the whole range at ≤ `space.step_um` (default 8 × tolerance ≈ 2
       depths of field), both ends included, asked as ONE batch so the engine
       can overlap acquisition with scoring.
    2. Checks: fewer than 3 usable scores → "too few frames"; a flat curve
       (contrast < `min_contrast` or peak < `min_snr` × noise) → "no focus
       signal".
    3. Candidates: the coarse local maxima at least half as prominent as the
       global maximum. When two compete (a second peak, or the main peak
       sampled on its flanks), the parabola vertex of each is measured (one
       batch) and the sharper wins — so a narrow main peak that fell between
       coarse samples still beats a smaller second peak.
    4. Refine: a batch of `fine_points` (3) positions around the winner's
       vertex, spread over ± half the estimated peak half-width (at least the
       tolerance, at most half a coarse step); then a Lorentzian/Gaussian +
       baseline fit over the peak (coarse and fine points between the
       neighbouring valleys). While the fit's standard error on z exceeds
       `tolerance/target_sigma_ratio` or its centre is outside the fine points,
       two more points are asked around the current estimate, up to
       `max_refine_frames` (10) refinement frames in all.
    5. The answer is the fit's centre (or a parabola through the top points,
       or the best sample, when the model fit fails). If it lies within
       tolerance/2 of an end of the range (or beyond), the search fails with
       the edge sentence: focus is probably outside the range.

    Frames: n_coarse + 3 typically, at most n_coarse + `max_refine_frames`;
    n_coarse = ceil(range/step) + 1, reduced (wider step) so that n_coarse +
    max_refine_frames ≤ max_frames.
    """

    name = "coarse-fine"

    def __init__(
        self,
        space: SearchSpace,
        *,
        min_contrast: float = 0.02,
        min_snr: float = 5.0,
        fine_points: int = 3,
        max_refine_frames: int = 10,
        target_sigma_ratio: float = 3.0,
        flank_ratio: float = 0.6,
        max_spread_steps: float = 1.5,
    ) -> None:
        super().__init__(space)
        if fine_points < 2:
            raise ValueError(f"fine_points must be at least 2, got {fine_points}")
        self.min_contrast = float(min_contrast)
        self.min_snr = float(min_snr)
        self.fine_points = int(fine_points)
        self.max_refine_frames = int(max_refine_frames)
        self.target_sigma_ratio = float(target_sigma_ratio)
        self.flank_ratio = float(flank_ratio)
        self.max_spread_steps = float(max_spread_steps)

    # -- the search ------------------------------------------------------------------------
    def _search(self) -> Search:
        space = self.space
        lo, hi, tol = space.lo_um, space.hi_um, space.tolerance_um
        n_max = max(3, space.max_frames - self.max_refine_frames)
        zc = grid(lo, hi, space.step_um, n_max)
        sc = np.asarray((yield [float(z) for z in zc]), dtype=float)
        h = float(zc[1] - zc[0])
        details: dict[str, Any] = {
            "coarse": {"z_um": zc.tolist(), "score": sc.tolist()},
            "coarse_step_um": h,
        }
        z, s = finite_points(zc, sc)
        if z.size < 3:
            return self.fail(too_few_reason(int(z.size), self.frames), **details)
        if is_flat(z, s, min_contrast=self.min_contrast, min_snr=self.min_snr):
            return self.fail(flat_reason(s), **details)

        sf = np.where(np.isfinite(sc), sc, -np.inf)
        cands = _candidates(sf)
        vertices = [_vertex(zc, sf, i) for i in cands]
        details["candidates_um"] = [float(zc[i]) for i in cands]
        if len(cands) > 1:
            yield vertices
            heights = [max(sf[i], self._f(v)) for i, v in zip(cands, vertices)]
            k = int(np.argmax(heights))
        else:
            k = 0
        i, z_v = cands[k], vertices[k]
        peak = max(sf[i], self._f(z_v))
        base = float(np.percentile(s, 20))
        w_est = _half_width(zc, sf, i, z_v, base, peak, h)
        left, right = _valleys(zc, sf, i)
        details["bracket_um"] = [float(zc[max(i - 1, 0)]), float(zc[min(i + 1, zc.size - 1)])]
        details["half_width_um"] = w_est
        spread = min(max(self.flank_ratio * w_est, tol), self.max_spread_steps * h)
        offsets = np.linspace(-spread, spread, self.fine_points)
        refine_start = self.frames
        fit: PeakFit | None = None
        z_star = z_v
        while True:
            budget = refine_start + self.max_refine_frames - self.frames
            if budget <= 0:
                break
            batch = [self.clamp(z_star + o) for o in offsets]
            batch = [p for p in batch if not self._near_known(p, 0.25 * tol)]
            if not batch:
                batch = [self.clamp(z_star + 0.5 * tol), self.clamp(z_star - 0.5 * tol)]
            yield batch[:budget]
            fit = self._fit(left, right, z_star, w_est, h)
            if fit is None:
                z_star = self.best_measured()[0] or z_star
                offsets = np.array([-0.5 * spread, 0.5 * spread])
                continue
            z_star = fit.z_um
            fine = self._fine_positions(refine_start)
            inside = bool(fine) and min(fine) <= z_star <= max(fine)
            sigma = fit.z_sigma_um
            if inside and sigma is not None and sigma <= tol / self.target_sigma_ratio:
                break
            w_fit = float(fit.params.get("w_um", w_est))
            flank = min(max(self.flank_ratio * w_fit, tol), self.max_spread_steps * h)
            offsets = np.array([-flank, flank])
        details["refine_frames"] = self.frames - refine_start
        if fit is None:
            fit = self._fallback_fit(left, right)
        best_z = fit.z_um
        if best_z <= lo + 0.5 * tol or best_z >= hi - 0.5 * tol:
            edge = lo if best_z <= lo + 0.5 * tol else hi
            return self.fail(edge_reason(edge), **details)
        wz, ws = self._window(left, right)
        return self.finish(
            success=True,
            best_z_um=min(max(best_z, lo), hi),
            best_score=fit.score,
            fit=fit,
            details=details,
            curve=(wz, ws) if wz.size >= 3 else None,
        )

    # -- helpers ---------------------------------------------------------------------------
    def _f(self, z_um: float) -> float:
        s = self.score_at(z_um)
        return s if math.isfinite(s) else -math.inf

    def _near_known(self, z_um: float, dist_um: float) -> bool:
        return any(abs(z - z_um) < dist_um for z, _ in self.history)

    def _fine_positions(self, start: int) -> list[float]:
        return [z for z, s in self.history[start:] if math.isfinite(s)]

    def _window(self, left: float, right: float) -> tuple[np.ndarray, np.ndarray]:
        z, s = self.points()
        keep = (z >= left) & (z <= right)
        return z[keep], s[keep]

    def _fit(self, left: float, right: float, z_guess: float, w_guess: float, h: float):
        wz, ws = self._window(left, right)
        fit = fit_best_model(wz, ws, z_guess_um=z_guess, w_guess_um=w_guess)
        if fit is None or fit.r2 < 0.5:
            return None
        # A centre far outside the sampled peak is an extrapolation, not a measurement.
        if not (wz[0] - h <= fit.z_um <= wz[-1] + h):
            return None
        return fit

    def _fallback_fit(self, left: float, right: float) -> PeakFit:
        wz, ws = self._window(left, right)
        fit = top_points_fit(wz, ws, n_points=3) if wz.size >= 3 else None
        if fit is None:
            fit = argmax_peak(*self.points())
        assert fit is not None
        return fit


def _candidates(sf: np.ndarray) -> list[int]:
    """Indices of the coarse local maxima worth refining, best first (at most 2)."""
    n = sf.size
    finite = np.isfinite(sf)
    base = float(np.percentile(sf[finite], 20))
    top = float(sf[finite].max())
    maxima = []
    for i in range(n):
        if not finite[i]:
            continue
        left_ok = i == 0 or sf[i] >= sf[i - 1]
        right_ok = i == n - 1 or sf[i] >= sf[i + 1]
        if left_ok and right_ok and sf[i] - base >= 0.5 * (top - base):
            maxima.append(i)
    maxima.sort(key=lambda i: -sf[i])
    chosen: list[int] = []
    for i in maxima:
        if all(abs(i - j) > 1 for j in chosen):
            chosen.append(i)
    return chosen[:2]


def _vertex(zc: np.ndarray, sf: np.ndarray, i: int) -> float:
    """Parabola vertex through coarse sample i and its neighbours, within ± half a step."""
    n = zc.size
    h = float(zc[1] - zc[0])
    if n < 3:
        return float(zc[i])
    j = min(max(i, 1), n - 2)
    y0, y1, y2 = sf[j - 1], sf[j], sf[j + 1]
    if not all(np.isfinite([y0, y1, y2])):
        return float(zc[i])
    denom = y0 - 2.0 * y1 + y2
    if denom >= 0:
        return float(zc[i])
    delta = 0.5 * h * (y0 - y2) / denom
    z_v = float(zc[j]) + delta
    return float(min(max(z_v, zc[i] - 0.5 * h), zc[i] + 0.5 * h))


def _half_width(
    zc: np.ndarray, sf: np.ndarray, i: int, z_v: float, base: float, peak: float, h: float
) -> float:
    """Half-width at half maximum of the coarse peak around sample i (µm, ≥ h/4)."""
    level = base + 0.5 * (peak - base)
    widths = []
    for step in (-1, 1):
        j = i
        while 0 <= j + step < zc.size and sf[j + step] >= level:
            j += step
        k = j + step
        if not 0 <= k < zc.size or not np.isfinite(sf[k]):
            continue
        hi_s, lo_s = min(sf[j], peak), sf[k]
        frac = 0.5 if hi_s <= lo_s else (hi_s - level) / (hi_s - lo_s)
        crossing = zc[j] + step * h * min(max(frac, 0.0), 1.0)
        widths.append(abs(crossing - z_v))
    if not widths:
        return float(zc[-1] - zc[0]) / 2.0
    return max(float(np.mean(widths)), 0.25 * h)


def _valleys(zc: np.ndarray, sf: np.ndarray, i: int) -> tuple[float, float]:
    """Positions of the curve minima on either side of peak i (the peak's extent, µm).

    Walks outwards while the scores keep falling (allowing noise-sized
    upticks), so a second peak is left out of the fit window.
    """
    finite = np.isfinite(sf)
    sigma = noise_sigma(zc[finite], sf[finite])
    bounds = []
    for step in (-1, 1):
        j = j_low = i
        low = sf[i]
        rising = False
        while 0 <= j + step < zc.size:
            nxt = sf[j + step]
            if np.isfinite(nxt) and nxt > low + 3.0 * sigma:
                rising = True
                break
            j += step
            if np.isfinite(nxt) and nxt <= low:
                low, j_low = nxt, j
        bounds.append(float(zc[j_low if rising else j]))
    return bounds[0], bounds[1]
