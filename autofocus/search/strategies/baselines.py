"""Baselines for the benchmark: Micro-Manager's OughtaFocus and JAF(H&P) autofocus.

Both mimic the originals, including what they lack: no flat-curve or
edge-of-range detection (they always "succeed" when any frame was usable).

- OughtaFocus (micro-manager `autofocus/OughtaFocus.java` with
  `BrentFocusOptimizer.java`): commons-math `BrentOptimizer(rel=1e-9,
  abs=Tolerance_um)` maximising the score over current z ± SearchRange_um/2,
  starting at the interval's middle, `MaxEval(100)`. Defaults SearchRange_um =
  10, Tolerance_um = 1.
- JAF(H&P) (micro-manager `autofocus/Autofocus.java`): a coarse pass of
  2·numFirst+1 = 3 positions 2 µm apart around the current z, then a fine pass
  of 2·numSecond+1 = 11 positions 0.2 µm apart around the coarse best; the
  answer is the best fine sample. The original stops a pass early once a score
  falls more than `Threshold` (0.02) below the best; that sequential mode is
  available with `early_stop=True`, the default asks each pass as one batch.
"""

from __future__ import annotations

import math

from autofocus.search.strategies.base import SearchSpace
from autofocus.search.strategies.brent import TooManyEvaluations, brent_maximise
from autofocus.search.strategies.common import Search, SearchStrategy, too_few_reason


class OughtaFocus(SearchStrategy):
    """Brent search with Micro-Manager OughtaFocus defaults (baseline; no failure detection).

    Options: `search_range_um` (10; None = the space's range) — the interval is
    centre ± search_range_um/2, clipped to [lo_um, hi_um]; `tolerance_um` (1.0;
    None = the space's tolerance) — Brent's absolute tolerance, so answers are
    within about 2 × that of a unimodal peak; `max_eval` (100). Succeeds whenever
    a usable score was seen; fails only when no score was usable or `max_eval`
    was exceeded (OughtaFocus throws then). Frames: typically 5–10 with the
    defaults.
    """

    name = "oughtafocus"

    def __init__(
        self,
        space: SearchSpace,
        *,
        search_range_um: float | None = 10.0,
        tolerance_um: float | None = 1.0,
        max_eval: int = 100,
    ) -> None:
        super().__init__(space)
        self.search_range_um = space.range_um if search_range_um is None else float(search_range_um)
        self.abs_tol_um = space.tolerance_um if tolerance_um is None else float(tolerance_um)
        if not (self.search_range_um > 0 and self.abs_tol_um > 0):
            raise ValueError("search_range_um and tolerance_um must be positive")
        self.max_eval = int(max_eval)

    def frame_bound(self) -> int:
        """`max_eval` (commons-math MaxEval), capped at max_frames."""
        return min(self.max_eval, self.space.max_frames)

    def _search(self) -> Search:
        c = self.space.center_z_um
        lo = self.clamp(c - self.search_range_um / 2)
        hi = self.clamp(c + self.search_range_um / 2)
        details = {"interval_um": [lo, hi], "abs_tolerance_um": self.abs_tol_um}
        if not hi > lo:
            return self.fail("the OughtaFocus search interval is empty inside the Z limits")
        try:
            x, fx, _, _ = yield from brent_maximise(
                lo, hi, abs_tol_um=self.abs_tol_um, max_eval=self.max_eval
            )
        except TooManyEvaluations:
            return self.fail(f"Brent's method did not converge in {self.max_eval} frames")
        if not math.isfinite(fx):
            return self.fail(too_few_reason(0, self.frames), **details)
        return self.finish(success=True, best_z_um=x, best_score=fx, details=details)


class JAF(SearchStrategy):
    """JAF(H&P) two-pass grid (baseline; no failure detection).

    Options (Micro-Manager defaults): `coarse_step_um` 2.0, `coarse_count` 3,
    `fine_step_um` 0.2, `fine_count` 11 — both passes centred (coarse on the
    space's centre, fine on the best coarse sample) and clipped to the range;
    `early_stop` (False) with `threshold` (0.02) for the original's sequential
    early exit. Frames: coarse_count + fine_count − 1 = 13 by default (the fine
    centre is the coarse best, already measured), fewer with early_stop.
    """

    name = "jaf"

    def __init__(
        self,
        space: SearchSpace,
        *,
        coarse_step_um: float = 2.0,
        coarse_count: int = 3,
        fine_step_um: float = 0.2,
        fine_count: int = 11,
        early_stop: bool = False,
        threshold: float = 0.02,
    ) -> None:
        super().__init__(space)
        if coarse_count < 1 or fine_count < 1 or coarse_step_um <= 0 or fine_step_um <= 0:
            raise ValueError("JAF counts and steps must be positive")
        self.coarse_step_um = float(coarse_step_um)
        self.coarse_count = int(coarse_count)
        self.fine_step_um = float(fine_step_um)
        self.fine_count = int(fine_count)
        self.early_stop = bool(early_stop)
        self.threshold = float(threshold)

    def _pass(self, centre: float, step: float, count: int):
        zs = [self.clamp(centre + (i - (count - 1) / 2) * step) for i in range(count)]
        best_z, best_s = None, -math.inf
        if not self.early_stop:
            scores = yield zs
            for z, s in zip(zs, scores, strict=True):
                if math.isfinite(s) and s > best_s:
                    best_z, best_s = z, s
            return best_z, best_s
        for z in zs:
            (s,) = yield [z]
            if math.isfinite(s) and s > best_s:
                best_z, best_s = z, s
            elif best_z is not None and best_s - s > self.threshold * best_s:
                break
        return best_z, best_s

    def frame_bound(self) -> int:
        """coarse_count + fine_count, capped at max_frames."""
        return min(self.coarse_count + self.fine_count, self.space.max_frames)

    def _search(self) -> Search:
        centre = self.clamp(self.space.center_z_um)
        coarse_z, _ = yield from self._pass(centre, self.coarse_step_um, self.coarse_count)
        if coarse_z is None:
            return self.fail(too_few_reason(0, self.frames))
        best_z, best_s = yield from self._pass(coarse_z, self.fine_step_um, self.fine_count)
        if best_z is None:
            return self.fail(too_few_reason(0, self.frames))
        return self.finish(
            success=True, best_z_um=best_z, best_score=best_s, details={"coarse_best_um": coarse_z}
        )
