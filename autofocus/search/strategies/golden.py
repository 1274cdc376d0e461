"""`golden`: golden-section search for the sharpest plane, one position per ask."""

from __future__ import annotations

import math

from autofocus.search.strategies.base import SearchSpace
from autofocus.search.strategies.common import (
    Search,
    SearchStrategy,
    check_bracket,
)
from autofocus.search.strategies.peakfit import fit_parabola

INV_PHI = (math.sqrt(5.0) - 1.0) / 2.0  # 0.618…


def _score(value: float) -> float:
    # An unusable frame must never win a comparison.
    return value if math.isfinite(value) else -math.inf


class GoldenSection(SearchStrategy):
    """Golden-section search over [lo_um, hi_um] until the bracket is ≤ tolerance.

    Assumes a unimodal focus curve: on a curve with two peaks, or flat tails
    (a narrow peak in a wide range), it can converge to the wrong place — which
    is why the default strategy starts with a coarse sweep. The answer is the
    vertex of a parabola through the final three points when it lies inside the
    final bracket, else the best sample; on a noiseless unimodal curve its
    error is ≤ tolerance. When the bracket ends at an end of the range, that end
    is measured (one frame) and the search fails with the edge sentence if it is
    the sharpest. Flat-curve test: contrast below `min_contrast` (0.02), or, if
    `min_snr` > 0 (default 0: off, the few clustered samples make a poor noise
    estimate), a peak below `min_snr` × the robust noise. A noisy flat curve is
    therefore not recognised (its noise exceeds 2 %); use the default strategy.
    Frames: ≤ 2 + ceil(ln(range/tolerance)/ln φ) + 1.
    """

    name = "golden"

    def __init__(
        self, space: SearchSpace, *, min_contrast: float = 0.02, min_snr: float = 0.0
    ) -> None:
        super().__init__(space)
        self.min_contrast = float(min_contrast)
        self.min_snr = float(min_snr)

    def frame_bound(self) -> int:
        """2 + ceil(ln(range/tolerance)/ln φ) golden steps + up to 2 range-end probes."""
        ratio = max((self.space.hi_um - self.space.lo_um) / self.space.tolerance_um, 1.0)
        steps = math.ceil(math.log(ratio) / -math.log(INV_PHI)) + 1
        return min(2 + steps + 2, self.space.max_frames)

    def _search(self) -> Search:
        tol = self.space.tolerance_um
        a, b = self.space.lo_um, self.space.hi_um
        c = b - INV_PHI * (b - a)
        d = a + INV_PHI * (b - a)
        fc = _score((yield [c])[0])
        fd = _score((yield [d])[0])
        while b - a > tol:
            if fc >= fd:  # the peak is in [a, d]
                b, d, fd = d, c, fc
                c = b - INV_PHI * (b - a)
                fc = _score((yield [c])[0])
            else:  # the peak is in [c, b]
                a, c, fc = c, d, fd
                d = a + INV_PHI * (b - a)
                fd = _score((yield [d])[0])
        failed = yield from check_bracket(self, a, b)
        if failed is not None:
            return failed
        details = {"bracket_um": [a, b]}
        z, s = self.points()
        best_z, best_s = self.best_measured()
        assert best_z is not None and best_s is not None
        fit = None
        near = [(zz, ss) for zz, ss in zip(z, s, strict=True) if a - tol <= zz <= b + tol]
        if len(near) >= 3:
            fit = fit_parabola([p[0] for p in near], [p[1] for p in near])
            if fit is not None and not (a <= fit.z_um <= b):
                fit = None
        if fit is not None:
            return self.finish(
                success=True, best_z_um=fit.z_um, best_score=fit.score, fit=fit, details=details
            )
        return self.finish(success=True, best_z_um=best_z, best_score=best_s, details=details)
