"""`coarse-fine` (the default, alias `auto`): coarse sweep, failure checks, model-fit refinement."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from autofocus.search.strategies.base import SearchSpace
from autofocus.search.strategies.common import (
    Search,
    SearchStrategy,
    edge_reason,
    flat_reason,
    is_flat,
    too_few_reason,
)
from autofocus.search.strategies.peakfit import (
    PeakFit,
    argmax_peak,
    finite_points,
    fit_best_model,
    fit_parabola,
    half_max_centre,
    level_crossings,
    noise_sigma,
    top_points_fit,
)
from autofocus.search.strategies.sweep import grid, grid_size

# The flat-curve test compares the re-measured top with coarse samples farther than
# this many estimated half-widths from it (tails beyond that are baseline).
PEAK_T_WIDTHS = 1.5
# When the peak fills the range (no baseline left), the re-measured top must keep at
# least this fraction of the coarse peak's height above the curve's 20th percentile.
CONFIRM_MIN = 0.5


class CoarseFine(SearchStrategy):
    """Coarse sweep in one batch, then a few refinement points fitted with a peak model.

    1. Coarse: the whole range at ≤ `space.step_um` (default 8 × tolerance ≈ 2
       depths of field), both ends included, asked as ONE batch so the engine
       can overlap acquisition with scoring. Fewer than 3 usable scores →
       "too few frames"; contrast below `min_contrast` (2 %), or (if `min_snr`
       > 0) a peak below `min_snr` × the robust noise → "no focus signal".
    2. Candidates: the coarse local maxima at least half as prominent as the
       global one. When two compete (a second, smaller peak, or the main peak
       sampled on its flanks) the parabola vertex of each is measured (one
       batch of 2) and the sharper wins, so a narrow main peak that fell between
       coarse samples still beats a smaller second peak.
    3. First refinement batch: `fine_points` (3) positions around the winner's
       vertex, ± `flank_ratio` (0.6) × the estimated half-width (at least the
       tolerance, at most `max_spread_steps` (1.5) coarse steps). These
       re-measure the top: on a flat, noisy curve the coarse maximum was a noise
       spike and the new scores fall back to the baseline. The re-measured top
       must stand `min_peak_t` (5) standard errors above the coarse samples far
       from the peak (noise from neighbouring-sample differences), else "no
       focus signal". (When the peak fills the range, the re-measured top must
       keep half the coarse peak's height instead.)
    4. Fit Lorentzian, Gaussian and flat-top peaks + baseline to the samples
       between the peak's neighbouring valleys (lowest AIC wins; see
       `peakfit.fit_best_model`). While the fit's standard error on z exceeds
       tolerance/`target_sigma_ratio` (4) or its centre lies outside the
       refinement points, ask 2 more positions on the fitted peak's flanks
       (skipping any within tolerance/4 of a measured one), up to
       `max_refine_frames` (12) after the coarse sweep; stop early when the fit
       puts the peak clearly beyond the range.
    5. The answer is the fit's centre — or, when no fit is usable (none
       converges, R² < 0.5, or its z uncertainty exceeds a coarse step), the
       midpoint of the half-maximum crossings, a parabola through the top
       samples, or the best sample. A centre within max(tolerance/2, 2 × its
       standard error) of an end of the range, or beyond it, fails with the
       edge sentence: focus is probably outside the range. On stepwise data
       (exactly repeated scores, e.g. a z-stack replayed plane by plane) an
       answer on a measurably less sharp plane is moved onto the sharpest
       samples (see `_plane_check`).

    Frames: n_coarse + 3 typically (+2 with two candidates), at most n_coarse +
    `max_refine_frames`, and at most one fewer than an exhaustive sweep at 2 ×
    tolerance (ceil(range/(2·tolerance)) + 1) unless that leaves less than the
    first refinement batch and one round; n_coarse = ceil(range/step) + 1,
    reduced (wider step) so that n_coarse + max_refine_frames ≤ max_frames.
    `details` holds the coarse curve, the candidates, the vertex, bracket,
    half-width, fit window, `peak_t` and the number of refinement frames.
    """

    name = "coarse-fine"

    def __init__(
        self,
        space: SearchSpace,
        *,
        min_contrast: float = 0.02,
        min_snr: float = 0.0,
        fine_points: int = 3,
        max_refine_frames: int = 12,
        target_sigma_ratio: float = 4.0,
        flank_ratio: float = 0.6,
        max_spread_steps: float = 1.5,
        min_peak_t: float = 5.0,
    ) -> None:
        super().__init__(space)
        if fine_points < 2:
            raise ValueError(f"fine_points must be at least 2, got {fine_points}")
        if max_refine_frames < 0:
            raise ValueError(f"max_refine_frames must be ≥ 0, got {max_refine_frames}")
        self.min_contrast = float(min_contrast)
        self.min_snr = float(min_snr)
        self.fine_points = int(fine_points)
        self.max_refine_frames = int(max_refine_frames)
        self.target_sigma_ratio = float(target_sigma_ratio)
        self.flank_ratio = float(flank_ratio)
        self.max_spread_steps = float(max_spread_steps)
        self.min_peak_t = float(min_peak_t)

    def frame_bound(self) -> int:
        """n_coarse + max_refine_frames, below the exhaustive sweep's count, ≤ max_frames."""
        space = self.space
        n = grid_size(space.lo_um, space.hi_um, space.step_um, self._coarse_cap())
        return int(min(self._refine_limit(n), space.max_frames))

    def _refine_limit(self, n_coarse: int) -> int:
        """Total frames allowed once the coarse sweep took `n_coarse`.

        n_coarse + max_refine_frames, but no more than an exhaustive sweep at 2 ×
        tolerance would take (minus one) — except that the first refinement
        batch and one more round are always allowed.
        """
        space = self.space
        sweep = grid_size(space.lo_um, space.hi_um, 2.0 * space.tolerance_um, 1 << 30)
        floor = n_coarse + self.fine_points + 2
        return int(min(n_coarse + self.max_refine_frames, max(sweep - 1, floor)))

    def _coarse_cap(self) -> int:
        return max(3, self.space.max_frames - self.max_refine_frames)

    # -- the search ------------------------------------------------------------------------
    def _search(self) -> Search:
        space = self.space
        lo, hi, tol = space.lo_um, space.hi_um, space.tolerance_um
        zc = grid(lo, hi, space.step_um, self._coarse_cap())
        sc = np.asarray((yield [float(v) for v in zc]), dtype=float)
        h = float(zc[1] - zc[0])
        details: dict[str, Any] = {
            "coarse": {"z_um": zc.tolist(), "score": [_json(v) for v in sc]},
            "coarse_step_um": h,
        }
        z, s = finite_points(zc, sc)  # unusable frames are simply missing samples
        if z.size < 3:
            return self.fail(too_few_reason(int(z.size), self.frames), **details)
        if is_flat(z, s, min_contrast=self.min_contrast, min_snr=self.min_snr):
            return self.fail(flat_reason(s), **details)
        coarse_frames = self.frames
        limit = min(self._refine_limit(coarse_frames), space.max_frames)

        cands = _candidates(s)
        vertices = [_vertex(z, s, i, h) for i in cands]
        details["candidates_um"] = [float(z[i]) for i in cands]
        if len(cands) > 1 and limit - self.frames >= len(cands):
            yield vertices
            heights = [max(s[i], self._f(v)) for i, v in zip(cands, vertices, strict=True)]
            k = int(np.argmax(heights))
        else:
            k = 0
        i, z_v = cands[k], vertices[k]
        peak = max(float(s[i]), self._f(z_v))
        base = float(np.percentile(s, 20))
        w_est = _half_width(z, s, i, z_v, base, peak, h)
        left, right = _valleys(z, s, i)
        spread = min(max(self.flank_ratio * w_est, tol), self.max_spread_steps * h)
        details.update(
            vertex_um=z_v,
            bracket_um=[float(z[max(i - 1, 0)]), float(z[min(i + 1, z.size - 1)])],
            half_width_um=w_est,
            window_um=[left, right],
        )

        # First refinement batch, centred on the vertex: it re-measures the top.
        first = [self.clamp(z_v + o) for o in np.linspace(-spread, spread, self.fine_points)]
        room = limit - self.frames
        if room > 0:
            yield first[:room] if room < len(first) else first
        near_top = [
            v
            for zz, v in self.history[coarse_frames:]
            if abs(zz - z_v) <= spread + 1e-9 and math.isfinite(v)
        ]
        t_peak = _peak_t(zc, sc, z_v, max(spread + h, PEAK_T_WIDTHS * w_est), near_top)
        details["peak_t"] = t_peak
        if t_peak is not None:
            flat = t_peak < self.min_peak_t
        else:  # the peak fills the range: no baseline to compare with
            confirm = (float(np.median(near_top or [peak])) - base) / (float(s.max()) - base)
            details["confirmation"] = confirm
            flat = not confirm >= CONFIRM_MIN
        if flat:
            return self.fail(flat_reason(s), **details)

        fit = self._fit(left, right, z_v, w_est, h)
        z_star = z_v if fit is None else fit.z_um
        while (
            not self._converged(fit, coarse_frames)
            and not self._beyond_range(fit)
            and self.frames < limit
        ):
            if fit is None:
                offsets = [-0.5 * spread, 0.5 * spread]
            else:
                w_fit = float(fit.params.get("w_um", w_est))
                flank = min(max(self.flank_ratio * w_fit, tol), self.max_spread_steps * h)
                offsets = [-flank, flank]
            batch = [self.clamp(z_star + o) for o in offsets]
            # A position within tolerance/4 of a measured one adds next to nothing.
            batch = [p for p in batch if not self._near_known(p, 0.25 * tol)]
            if not batch:
                batch = [self.clamp(z_star + 0.5 * tol), self.clamp(z_star - 0.5 * tol)]
                batch = [p for p in batch if not self._near_known(p, 0.25 * tol)]
            if not batch:
                break  # nothing new to measure near the estimate (e.g. pinned at an end)
            yield batch[: limit - self.frames]
            fit = self._fit(left, right, z_star, w_est, h)
            if fit is None:
                z_star = self.best_measured()[0] or z_star
            else:
                z_star = fit.z_um
        details["refine_frames"] = self.frames - coarse_frames
        if fit is None:
            fit = self._fallback_fit(left, right)
        best_z = fit.z_um
        # Only a peak significantly inside the range is focus; one at (or within the
        # fit's uncertainty of) an end is probably beyond it.
        margin = tol if fit.z_sigma_um is None else max(0.5 * tol, 2.0 * fit.z_sigma_um)
        if best_z <= lo + margin or best_z >= hi - margin:
            edge = lo if best_z - lo < hi - best_z else hi
            return self.fail(edge_reason(edge), **details)
        best_score = fit.score
        on_plane = self._plane_check(best_z)
        if on_plane is not None:
            details["moved_onto_sharpest_plane_from_um"] = best_z
            best_z, best_score = on_plane, float(self.points()[1].max())
        wz, ws = self._window(left, right)
        return self.finish(
            success=True,
            best_z_um=min(max(best_z, lo), hi),
            best_score=best_score,
            fit=fit,
            details=details,
            curve=(wz, ws) if wz.size >= 3 else None,
        )

    def _plane_check(self, z_um: float) -> float | None:
        """For stepwise (replayed) data: `z_um` moved onto the sharpest planes, or None.

        A replayed z-stack answers every position with the nearest recorded
        plane, so several positions return the very same score — which real
        camera noise never does. A peak model fitted across such steps can put
        its centre on a plane measurably less sharp than the best one. When the
        scores repeat exactly and a sample nearer to `z_um` than any of the
        sharpest samples (within 1 % of the peak's prominence of the best) is
        less sharp than they are, the answer is clamped into the span of the
        sharpest samples. None for ordinary (noisy, continuous) data or when
        the fit agrees with the samples.
        """
        z, s = self.points()
        _, counts = np.unique(s, return_counts=True)
        if np.count_nonzero(counts >= 2) < 2:  # one coincidence is not a pattern
            return None
        top = float(s.max())
        near_top = top - 0.01 * (top - float(np.percentile(s, 20)))
        sharp = z[s >= near_top]
        reach = float(np.min(np.abs(sharp - z_um)))
        if not np.any((np.abs(z - z_um) < reach) & (s < near_top)):
            return None
        return float(min(max(z_um, sharp.min()), sharp.max()))

    def _beyond_range(self, fit: PeakFit | None) -> bool:
        """The fitted peak lies clearly outside the range: refining cannot help."""
        if fit is None or fit.z_sigma_um is None:
            return False
        reach = 2.0 * fit.z_sigma_um
        return fit.z_um + reach < self.space.lo_um or fit.z_um - reach > self.space.hi_um

    def _converged(self, fit: PeakFit | None, coarse_frames: int) -> bool:
        """The fit is precise enough and its centre lies among the refinement points."""
        if fit is None or fit.z_sigma_um is None:
            return False
        fine = [z for z, s in self.history[coarse_frames:] if math.isfinite(s)]
        inside = bool(fine) and min(fine) <= fit.z_um <= max(fine)
        return inside and fit.z_sigma_um <= self.space.tolerance_um / self.target_sigma_ratio

    # -- helpers ---------------------------------------------------------------------------
    def _f(self, z_um: float) -> float:
        s = self.score_at(z_um)
        return s if math.isfinite(s) else -math.inf

    def _near_known(self, z_um: float, dist_um: float) -> bool:
        return any(abs(z - z_um) < dist_um for z, _ in self.history)

    def _window(self, left: float, right: float) -> tuple[np.ndarray, np.ndarray]:
        z, s = self.points()
        keep = (z >= left) & (z <= right)
        return z[keep], s[keep]

    def _fit(
        self, left: float, right: float, z_guess: float, w_guess: float, h: float
    ) -> PeakFit | None:
        wz, ws = self._window(left, right)
        fit = fit_best_model(wz, ws, z_guess_um=z_guess, w_guess_um=w_guess)
        if fit is None or fit.r2 < 0.5:
            return None
        # A centre far outside the sampled peak is an extrapolation, not a measurement;
        # one uncertain by more than a coarse step is a degenerate fit.
        if not (wz[0] - h <= fit.z_um <= wz[-1] + h):
            return None
        if fit.z_sigma_um is None or not fit.z_sigma_um <= h:
            return None
        return fit

    def _fallback_fit(self, left: float, right: float) -> PeakFit:
        wz, ws = self._window(left, right)
        fit = half_max_centre(wz, ws)
        if fit is None and wz.size >= 3:
            fit = top_points_fit(wz, ws, n_points=3)
        if fit is None:
            fit = argmax_peak(*self.points())
        assert fit is not None
        return fit


def _candidates(s: np.ndarray) -> list[int]:
    """Indices of the coarse local maxima worth refining, best first (at most 2).

    A candidate is a local maximum rising at least half as far above the
    curve's 20th percentile as the global maximum does.
    """
    n = s.size
    base = float(np.percentile(s, 20))
    top = float(s.max())
    maxima = []
    for i in range(n):
        left_ok = i == 0 or s[i] >= s[i - 1]
        right_ok = i == n - 1 or s[i] >= s[i + 1]
        if left_ok and right_ok and s[i] - base >= 0.5 * (top - base):
            maxima.append(i)
    maxima.sort(key=lambda i: -s[i])
    chosen: list[int] = []
    for i in maxima:
        if all(abs(i - j) > 1 for j in chosen):
            chosen.append(i)
    return chosen[:2]


def _vertex(z: np.ndarray, s: np.ndarray, i: int, h: float) -> float:
    """Parabola vertex through sample i and its neighbours, within ± h/2 of sample i."""
    if z.size < 3:
        return float(z[i])
    j = min(max(i, 1), z.size - 2)
    fit = fit_parabola(z[j - 1 : j + 2], s[j - 1 : j + 2])
    if fit is None:
        return float(z[i])
    return float(min(max(fit.z_um, z[i] - 0.5 * h), z[i] + 0.5 * h))


def _half_width(
    z: np.ndarray, s: np.ndarray, i: int, z_v: float, base: float, peak: float, h: float
) -> float:
    """Half-width at half maximum of the coarse peak around sample i (µm, ≥ h/4).

    Half the range when the curve does not fall to half height on either side.
    """
    level = base + 0.5 * (peak - base)
    crossings = level_crossings(z, s, i, level, peak)
    widths = [abs(c - z_v) for c in crossings if c is not None]
    if not widths:
        return float(z[-1] - z[0]) / 2.0
    return max(float(np.mean(widths)), 0.25 * h)


def _valleys(z: np.ndarray, s: np.ndarray, i: int) -> tuple[float, float]:
    """Positions of the curve minima on either side of peak i (the peak's extent, µm).

    Walks outwards while the scores keep falling (allowing noise-sized
    upticks), so a second peak is left out of the fit window.
    """
    sigma = noise_sigma(z, s)
    bounds = []
    for step in (-1, 1):
        j = j_low = i
        low = s[i]
        rising = False
        while 0 <= j + step < z.size:
            nxt = s[j + step]
            if nxt > low + 3.0 * sigma:
                rising = True
                break
            j += step
            if nxt <= low:
                low, j_low = nxt, j
        bounds.append(float(z[j_low if rising else j]))
    return bounds[0], bounds[1]


def _peak_t(
    zc: np.ndarray, sc: np.ndarray, z_v: float, exclude_um: float, near_top: list[float]
) -> float | None:
    """How far the re-measured top stands above the rest of the coarse curve, in noise units.

    A t-like statistic: (mean of the re-measured scores near the vertex − median
    of the coarse scores farther than `exclude_um` from it) / its standard
    error, the noise being estimated from differences of neighbouring far
    samples (which cancels slow trends such as a peak's tails or a second
    peak). On a flat curve the re-measurements regress to the mean and the
    statistic is small (its distribution does not depend on the noise level);
    a real peak gives tens or more. None when there are too few samples.
    """
    finite = np.isfinite(sc)
    far_idx = [j for j in range(zc.size) if finite[j] and abs(zc[j] - z_v) > exclude_um]
    far_set = set(far_idx)
    diffs = np.array([sc[j + 1] - sc[j] for j in far_idx if j + 1 in far_set])
    if len(far_idx) < 3 or diffs.size < 2 or not near_top:
        return None
    sd = float(np.std(diffs)) / math.sqrt(2.0)  # mean removed: a steady slope is not noise
    gap = float(np.mean(near_top)) - float(np.median(sc[far_idx]))
    if sd <= 0:
        return math.inf if gap > 0 else -math.inf
    return gap / (sd * math.sqrt(1.0 / len(far_idx) + 1.0 / len(near_top)))


def _json(value: float) -> float | None:
    """A score for `details`: None instead of NaN/inf, which JSON cannot carry."""
    return float(value) if math.isfinite(value) else None
