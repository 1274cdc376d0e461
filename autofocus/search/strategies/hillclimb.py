"""`hillclimb`: tracking focus that has drifted a little from the current position."""

from __future__ import annotations

import math

from autofocus.search.strategies.base import SearchSpace
from autofocus.search.strategies.common import (
    Search,
    SearchStrategy,
    edge_reason,
    flat_reason,
    is_flat,
    probe_edges,
    too_few_reason,
)
from autofocus.search.strategies.peakfit import fit_parabola


class HillClimb(SearchStrategy):
    """Start at the centre, climb towards higher scores, halve the step on reversal.

    First batch: centre and centre ± `step_um` (default 2 × tolerance, about
    half the depth of field). While a neighbour is sharper, keep stepping that
    way (one frame per step); when the current point beats both neighbours,
    halve the step and measure the two new neighbours (one batch). Stops when
    the step is ≤ tolerance and answers the vertex of the parabola through the
    last three points (within ± step/2 of the best). Near focus that is 5
    frames; a drift of D µm costs about D/step more. On a noiseless unimodal,
    symmetric curve the error is ≤ tolerance.

    It assumes focus is near: a peak in flat tails or beyond a second peak is
    not found. Fails with the edge sentence when it ends at an end of the range
    that is the sharpest plane, and with "no focus signal" when the scores vary
    by less than `min_contrast` (default 0.005; too few points for a noise test).
    """

    name = "hillclimb"

    def __init__(
        self, space: SearchSpace, *, step_um: float | None = None, min_contrast: float = 0.005
    ) -> None:
        super().__init__(space)
        self.step_um = float(step_um) if step_um else 2.0 * space.tolerance_um
        if not self.step_um > 0:
            raise ValueError(f"step_um must be positive, got {step_um}")
        self.min_contrast = float(min_contrast)

    def frame_bound(self) -> int:
        """An upper bound on the frames, capped at max_frames.

        3 for the first batch, then for each step size (h0, h0/2, … down to the
        tolerance) 2 new neighbours plus climbs of at most range/step, and 2
        range-end probes.
        """
        width = self.space.hi_um - self.space.lo_um
        total, h = 3, self.step_um
        while True:
            total += 2 + math.ceil(width / h) + 1
            if h <= self.space.tolerance_um:
                break
            h /= 2.0
        return min(total + 2, self.space.max_frames)

    def _f(self, z_um: float) -> float:
        s = self.score_at(z_um)
        return s if math.isfinite(s) else -math.inf

    def _search(self) -> Search:
        tol = self.space.tolerance_um
        h = self.step_um
        x = self.clamp(self.space.center_z_um)
        yield [x - h, x, x + h]
        climbs = 0
        while True:
            left, right = self.clamp(x - h), self.clamp(x + h)
            fl, fx, fr = self._f(left), self._f(x), self._f(right)
            if fr > fx and fr >= fl:
                direction = 1.0
            elif fl > fx:
                direction = -1.0
            else:  # x beats both neighbours: the peak is within ± h
                if h <= tol:
                    break
                h /= 2.0
                yield [x - h, x + h]
                continue
            while True:  # climb with the current step
                x = self.clamp(x + direction * h)
                climbs += 1
                ahead = self.clamp(x + direction * h)
                if ahead == x:
                    break
                yield [ahead]
                if self._f(ahead) <= self._f(x):
                    break
        details = {"final_step_um": h, "climb_steps": climbs}
        z, s = self.points()
        if z.size < 3:
            return self.fail(too_few_reason(int(z.size), self.frames), **details)
        edge = yield from probe_edges(self, x - h, x + h)
        z, s = self.points()
        if is_flat(z, s, min_contrast=self.min_contrast, min_snr=0.0):
            return self.fail(flat_reason(s), **details)
        if edge is not None:
            return self.fail(edge_reason(edge), **details)
        left, right = self.clamp(x - h), self.clamp(x + h)
        fit = None
        if left < x < right and all(math.isfinite(self._f(p)) for p in (left, x, right)):
            fit = fit_parabola([left, x, right], [self._f(left), self._f(x), self._f(right)])
            if fit is not None and not (x - h / 2 - 1e-12 <= fit.z_um <= x + h / 2 + 1e-12):
                fit = None
        if fit is not None:
            return self.finish(
                success=True, best_z_um=fit.z_um, best_score=fit.score, fit=fit, details=details
            )
        return self.finish(success=True, best_z_um=x, best_score=self._f(x), details=details)
