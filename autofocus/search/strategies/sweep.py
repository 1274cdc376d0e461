"""`sweep`: the exhaustive baseline — one fine batch over the whole range, then a peak fit."""

from __future__ import annotations

import math

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
    argmax_peak,
    fit_best_model,
    half_max_centre,
    top_points_fit,
)

FIT_KINDS = ("parabola", "gaussian", "model", "argmax")


def grid_size(lo_um: float, hi_um: float, step_um: float, max_points: int) -> int:
    """How many points `grid(lo_um, hi_um, step_um, max_points)` has, without building it.

    Counting never allocates, so a tiny `step_um` costs nothing here (the grid
    itself is capped at `max_points`).
    """
    ratio = (hi_um - lo_um) / step_um - 1e-9
    if not math.isfinite(ratio) or ratio >= max_points:
        return max(3, max_points)
    return max(3, min(int(math.ceil(ratio)) + 1, max_points))


def grid(lo_um: float, hi_um: float, step_um: float, max_points: int) -> np.ndarray:
    """Evenly spaced positions from `lo_um` to `hi_um` inclusive, spacing ≤ `step_um`.

    At least 3 points; at most `max_points` (the spacing then widens).
    """
    return np.linspace(lo_um, hi_um, grid_size(lo_um, hi_um, step_um, max_points))


class Sweep(SearchStrategy):
    """Measure the whole range at `step_um` in ONE batch, then fit the peak.

    Options: `step_um` (default 2 × tolerance, about half the depth of field);
    `fit` — "model" (default: Lorentzian/Gaussian + baseline fitted to the
    samples above 30 % of the peak and two more on each side; if that fails,
    the midpoint of the half-maximum crossings, then a parabola), "parabola"
    (least squares through the `fit_points` samples around the best one),
    "gaussian" (parabola in log score) or "argmax"; `fit_points` (default 5);
    `min_contrast` (0.02) and `min_snr` (5) for the flat-curve test. A fit that
    fails or lands outside its points falls back to the best sample. Frames:
    ceil(range/step) + 1, capped at max_frames (the step then widens;
    `details["step_um"]` says what was used).

    Fails with "no focus signal" on a flat curve, with the edge sentence when
    the best sample is an end of the range and the fit does not put the peak
    inside, and with "too few frames" when fewer than 3 scores are usable.
    """

    name = "sweep"

    def __init__(
        self,
        space: SearchSpace,
        *,
        step_um: float | None = None,
        fit: str = "model",
        fit_points: int = 5,
        min_contrast: float = 0.02,
        min_snr: float = 5.0,
    ) -> None:
        super().__init__(space)
        if fit not in FIT_KINDS:
            raise ValueError(f"fit must be one of {', '.join(FIT_KINDS)}, got {fit!r}")
        self.step_um = float(step_um) if step_um else 2.0 * space.tolerance_um
        if not self.step_um > 0:
            raise ValueError(f"step_um must be positive, got {step_um}")
        self.fit_kind = fit
        self.fit_points = int(fit_points)
        self.min_contrast = float(min_contrast)
        self.min_snr = float(min_snr)

    def frame_bound(self) -> int:
        """Frames of the single sweep batch."""
        space = self.space
        return grid_size(space.lo_um, space.hi_um, self.step_um, space.max_frames)

    def _search(self) -> Search:
        lo, hi = self.space.lo_um, self.space.hi_um
        zs = grid(lo, hi, self.step_um, self.space.max_frames)
        yield [float(z) for z in zs]
        z, s = self.points()
        step = float(zs[1] - zs[0])
        details = {"step_um": step, "n_points": int(zs.size)}
        if z.size < 3:
            return self.fail(too_few_reason(int(z.size), self.frames), **details)
        if is_flat(z, s, min_contrast=self.min_contrast, min_snr=self.min_snr):
            return self.fail(flat_reason(s), **details)
        fit = self._fit(z, s)
        if fit is None:
            fit = argmax_peak(z, s)
        assert fit is not None
        best_z = min(max(fit.z_um, lo), hi)
        i = int(np.argmax(s))
        at_edge = (i == 0 and z[0] <= lo + 1e-9) or (i == z.size - 1 and z[-1] >= hi - 1e-9)
        if at_edge and (best_z - lo <= 0.25 * step or hi - best_z <= 0.25 * step):
            return self.finish(
                success=False,
                best_z_um=float(z[i]),
                best_score=float(s[i]),
                reason=edge_reason(float(z[i])),
                details=details,
            )
        return self.finish(
            success=True, best_z_um=best_z, best_score=fit.score, fit=fit, details=details
        )

    def _fit(self, z: np.ndarray, s: np.ndarray):
        if self.fit_kind == "argmax":
            return None
        if self.fit_kind == "model":
            i = int(np.argmax(s))
            base = float(np.percentile(s, 20))
            level = base + 0.3 * (float(s[i]) - base)
            j0, j1 = i, i
            while j0 > 0 and s[j0 - 1] >= level:
                j0 -= 1
            while j1 < z.size - 1 and s[j1 + 1] >= level:
                j1 += 1
            j0, j1 = max(0, j0 - 2), min(z.size - 1, j1 + 2)
            fit = fit_best_model(z[j0 : j1 + 1], s[j0 : j1 + 1], z_guess_um=float(z[i]))
            if fit is not None and fit.r2 >= 0.5 and z[j0] <= fit.z_um <= z[j1]:
                return fit
            return half_max_centre(z[j0 : j1 + 1], s[j0 : j1 + 1]) or top_points_fit(
                z, s, n_points=self.fit_points
            )
        return top_points_fit(z, s, n_points=self.fit_points, kind=self.fit_kind)
