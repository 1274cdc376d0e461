"""`track`: keep a drifting specimen in focus with three frames per time point.

For time-lapse: the stage sits where the last focus parked it (the space's
centre; the request's `expected_z_um`, e.g. predicted from the drift of the
last time points, takes its place when given). Three frames at centre − d,
centre, centre + d (d = `bracket_dof` × DOF, default 1.3) are fitted with a
Gaussian in log score (fine scores when the middle frame is the sharpest,
else the wide-capture scores, which stay smooth around focus). When the three
frames show a concave peak whose centre lies inside the bracket, whose width
is plausible for the optics and which stands out of the frames' spread, the
stage goes there — three frames, no separate verification frame (the three
agree on one peak). Otherwise focus drifted more than about one DOF since
the last time point: the strategy says so (`details["track_fallback"]`) and
runs the full `guided` search over the requested range, verified as usual.
"""

from __future__ import annotations

import numpy as np

from autofocus.search.strategies.base import SearchSpace
from autofocus.search.strategies.common import Search
from autofocus.search.strategies.guided import Guided
from autofocus.search.strategies.guided.shape import bracket_peak
from autofocus.search.trust import peak_confidence, width_plausible

# The peak must rise this much (relative) above the lowest of the three frames.
MIN_TRACK_RISE = 0.1


class Track(Guided):
    """Three-frame re-focus around the current position; full `guided` search as fallback.

    Options: `bracket_dof` (1.3) the half-width of the 3-frame bracket in DOF,
    and every `Guided` option (used by the fallback).
    """

    name = "track"

    def __init__(self, space: SearchSpace, *, bracket_dof: float = 1.3, **options: float) -> None:
        super().__init__(space, **options)  # type: ignore[arg-type]
        if not bracket_dof > 0:
            raise ValueError(f"bracket_dof must be positive, got {bracket_dof}")
        self.track_bracket_dof = float(bracket_dof)

    def _search(self) -> Search:
        dof = self.space.dof
        # Centre on the expected focus when the caller predicted one (e.g. from the drift
        # of the last time points), else on where the stage is.
        z0 = self.space.reference_z_um if self.space.reference_z_um is not None else (
            self.space.center_z_um
        )
        d = self.track_bracket_dof * dof
        zs = [self.clamp(z0 - d), self.clamp(z0), self.clamp(z0 + d)]
        self.details = {"dof_um": dof, "path": "track"}
        if len({round(z, 9) for z in zs}) == 3:
            scores = yield zs
            verdict = self._track_fit(np.asarray(zs), np.asarray(scores, dtype=float))
            if isinstance(verdict, str):
                self.details["track_fallback"] = verdict
            else:
                z_best, hwhm, rise = verdict
                conf = peak_confidence(
                    rise * 20.0, r2=None, spacing_dof=self.track_bracket_dof, width_ok=True
                )
                return self.finish(
                    success=True,
                    best_z_um=z_best,
                    best_score=float(np.max(scores)),
                    details={**self.details, "hwhm_um": hwhm, "drift_um": z_best - z0,
                             "verified_in_search": True},
                    confidence_value=conf,
                )
        else:
            self.details["track_fallback"] = "the bracket does not fit inside the limits"
        self.details["path"] = "track→guided"
        return (yield from self._classical_path())

    def _track_fit(self, z: np.ndarray, s: np.ndarray) -> tuple[float, float, float] | str:
        """(centre µm, HWHM µm, relative rise) of the 3-frame peak, or why tracking lost it."""
        dof = self.space.dof
        if not np.all(np.isfinite(s)):
            return "a tracking frame could not be scored"
        low = float(s.min())
        if low <= 0:
            return "the focus scores are not positive"
        rise = float(s.max()) / low - 1.0
        if rise < MIN_TRACK_RISE:
            return f"the three frames differ by only {100 * rise:.0f} %: focus drifted away"
        got = bracket_peak(z, s, self.capture_at)
        if got is None:
            return "the three frames show no peak: focus drifted more than one depth of field"
        v, hwhm = got
        if not (z[0] - 1e-9 <= v <= z[-1] + 1e-9):
            return (
                f"the peak lies outside the ±{self.track_bracket_dof:g} DOF bracket "
                f"(fitted at {v:.2f} µm): focus drifted more than one depth of field"
            )
        # log(s) spans the baseline too, so this width overestimates: only a lower bound matters.
        if not width_plausible(hwhm, dof) and hwhm < dof:
            return f"the peak is {2 * hwhm:.2f} µm wide, too narrow for the optics"
        return float(v), float(hwhm), rise
