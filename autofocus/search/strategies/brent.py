"""`brent`: Brent's method (parabolic interpolation with golden-section fallback).

`brent_maximise` is a line-by-line port of Apache Commons Math 3
`BrentOptimizer.doOptimize` (the optimiser behind Micro-Manager's OughtaFocus)
as a generator, so the same algorithm serves the `brent` strategy and the
`oughtafocus` baseline.
"""

from __future__ import annotations

import math

from autofocus.search.strategies.base import SearchSpace
from autofocus.search.strategies.common import (
    Search,
    SearchStrategy,
    Step,
    check_bracket,
    too_few_reason,
)

GOLDEN_SECTION = 0.5 * (3.0 - math.sqrt(5.0))  # 0.381…


class TooManyEvaluations(Exception):
    """Brent's method used up its evaluation budget (commons-math MaxEval)."""


def brent_maximise(
    lo_um: float,
    hi_um: float,
    *,
    start_um: float | None = None,
    abs_tol_um: float,
    rel_tol: float = 1e-9,
    max_eval: int = 100,
) -> Step:
    """Generator: maximise the score over [lo_um, hi_um]; returns (x, f(x), a, b).

    Yields one position per step and receives its score (NaN counts as the
    worst possible). Stops by Brent's criterion |x − m| ≤ 2·tol − (b − a)/2 with
    tol = rel_tol·|x| + abs_tol_um, so the returned x is within 2·tol of a peak
    of a unimodal curve. Raises `TooManyEvaluations` after `max_eval` scores.
    The start defaults to the middle of the interval (as in commons-math).
    """
    a, b = (lo_um, hi_um) if lo_um < hi_um else (hi_um, lo_um)
    x = 0.5 * (a + b) if start_um is None else float(start_um)
    v = w = x
    d = e = 0.0
    evaluations = 0

    def neg(score: float) -> float:
        # commons-math minimises −f for GoalType.MAXIMIZE; unusable frames are +∞.
        return -score if math.isfinite(score) else math.inf

    fx = neg((yield [x])[0])
    evaluations += 1
    fv = fw = fx
    best_x, best_f = x, fx
    while True:
        m = 0.5 * (a + b)
        tol1 = rel_tol * abs(x) + abs_tol_um
        tol2 = 2.0 * tol1
        if abs(x - m) <= tol2 - 0.5 * (b - a):
            return best_x, -best_f, a, b
        if abs(e) > tol1:  # fit a parabola
            r = (x - w) * (fx - fv)
            q = (x - v) * (fx - fw)
            p = (x - v) * q - (x - w) * r
            q = 2.0 * (q - r)
            if q > 0:
                p = -p
            else:
                q = -q
            r = e
            e = d
            if p > q * (a - x) and p < q * (b - x) and abs(p) < abs(0.5 * q * r):
                d = p / q  # parabolic interpolation step
                u = x + d
                if u - a < tol2 or b - u < tol2:  # not too close to a or b
                    d = tol1 if x <= m else -tol1
            else:  # golden section step
                e = (b - x) if x < m else (a - x)
                d = GOLDEN_SECTION * e
        else:  # golden section step
            e = (b - x) if x < m else (a - x)
            d = GOLDEN_SECTION * e
        if abs(d) < tol1:  # move by at least tol1
            u = x + tol1 if d >= 0 else x - tol1
        else:
            u = x + d
        if evaluations >= max_eval:
            raise TooManyEvaluations(f"more than {max_eval} evaluations")
        fu = neg((yield [u])[0])
        evaluations += 1
        if fu < best_f:
            best_x, best_f = u, fu
        if fu <= fx:
            if u < x:
                b = x
            else:
                a = x
            v, fv = w, fw
            w, fw = x, fx
            x, fx = u, fu
        else:
            if u < x:
                a = u
            else:
                b = u
            if fu <= fw or w == x:
                v, fv = w, fw
                w, fw = u, fu
            elif fu <= fv or v == x or v == w:
                v, fv = u, fu


class Brent(SearchStrategy):
    """Brent's method over [lo_um, hi_um] to `space.tolerance_um`, one position per ask.

    Brent's absolute tolerance is tolerance/2, so on a noiseless unimodal curve
    the answer (the best sample) is within the tolerance of the peak. Like
    golden-section it assumes a unimodal curve. Failure detection as in
    `golden` (flat curve, range end probed and sharpest). Options: `min_contrast`
    (0.02), `min_snr` (0: off), `max_eval` (100). Frames: typically 8–15, at most
    `max_eval` + 1 and `max_frames`.
    """

    name = "brent"

    def __init__(
        self,
        space: SearchSpace,
        *,
        min_contrast: float = 0.02,
        min_snr: float = 0.0,
        max_eval: int = 100,
    ) -> None:
        super().__init__(space)
        self.min_contrast = float(min_contrast)
        self.min_snr = float(min_snr)
        self.max_eval = int(max_eval)

    def frame_bound(self) -> int:
        """`max_eval` Brent steps + up to 2 range-end probes, capped at max_frames."""
        return min(self.max_eval + 2, self.space.max_frames)

    def _search(self) -> Search:
        lo, hi = self.space.lo_um, self.space.hi_um
        try:
            x, fx, a, b = yield from brent_maximise(
                lo, hi, abs_tol_um=0.5 * self.space.tolerance_um, max_eval=self.max_eval
            )
        except TooManyEvaluations:
            return self.fail(
                f"too few frames: Brent's method did not converge in {self.max_eval} frames"
            )
        failed = yield from check_bracket(self, a, b)
        if failed is not None:
            return failed
        details = {"bracket_um": [a, b]}
        z, s = self.points()
        if not math.isfinite(fx):
            return self.fail(too_few_reason(int(z.size), self.frames), **details)
        return self.finish(success=True, best_z_um=x, best_score=fx, details=details)
