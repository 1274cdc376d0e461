"""Brightfield contrast inversion: one focal plane seen as two maxima about a dip.

A weak phase object in brightfield shows almost no contrast at focus and gains
it on both sides, with opposite sign; mixed with absorption, the contrast curve
of a classical measure has two maxima about half a depth of field either side
of focus and a deep minimum at focus between them (the sharpness maximum is
*not* the focal plane); absorption in the specimen makes the two maxima
unequal but leaves them about symmetric in z. Measured on the simulator's
brightfield cells, beads and fibres (physical stage position, 20×/0.75):
maxima at about −0.8 and +0.8 µm, minimum within 0.15 µm of focus.

`InversionCheck._inversion_check` recognises that pattern from the focus curve
alone (never from a modality setting): it samples both sides of the strongest
peak every `PROBE_STEP_DOF` DOF out to `PROBE_REACH_DOF` (skipping positions
already measured; the samples also show the peak's shape), and when a dip and
a second maximum appear within `MAX_PAIR_DOF` DOF of the highest sample
(closer than any rival plane; two maxima 1.6–3 DOF apart about a deep
minimum are either two planes or an inverted plane under other optics, and
the search says it cannot tell: `contrast_inversion`), it moves the peak to
the mean of two
estimates of the plane, the minimum and the middle of the two maxima, and
records how far apart they are (`bound_um`). The verdict stands behind that
answer only when the bound is within the tolerance or
`INVERSION_MAX_BOUND_DOF` DOF (`contrast_inversion` otherwise). Cost: up to
10 frames per search, fewer where the refinement already sampled.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from autofocus.search.strategies.common import Step
from autofocus.search.strategies.guided.refine import Refinement
from autofocus.search.strategies.guided.shape import Refined, log_parabola, strongest
from autofocus.search.trust import Peak

# Probe spacing (DOF) on both sides of the strongest peak, and how far out (DOF). The dip of
# an inverted plane falls below half the peak over about 0.4 DOF, so the spacing stays below.
PROBE_STEP_DOF = 0.45
PROBE_REACH_DOF = 2.25
# Once found, the maximum and the dip are each bracketed this finely (DOF).
FINE_STEP_DOF = 0.2
# The pair of maxima of one inverted plane lies closer than this (DOF; 1.2-1.3 DOF on the
# simulator): within the rival separation, so it is never two planes by the rival rule.
MAX_PAIR_DOF = 1.6
# Two maxima about a deep minimum farther apart than that, but closer than the rival
# separation, are either two planes (two fluorescent layers ~2 DOF apart dip as deep) or one
# inverted plane under other optics: the curve cannot tell, and the search says so.
LOOK_DOF = 3.0
# The pattern: the dip falls to at most DIP_LEVEL of the higher maximum's height above baseline
# (the brightfield minimum falls to 0-10 %; two fluorescent planes ≤ 1.6 DOF apart with
# Tenengrad's usual width, HWHM ~0.6 DOF, only to ~58 %),
# and the second maximum rises from it by at least SECOND_RISE of that height (and 6 noise
# sigmas; the weakest second maxima seen, on fibres, rise by ~15 %).
DIP_LEVEL = 0.45
# ... read first at this level, to decide where to sample finely (see `_inversion_check`).
LOOSE_DIP_LEVEL = 0.65
LOOSE_RISE = 0.01
LOOSE_RISE_SIGMA = 4.0
SECOND_RISE = 0.08


class InversionCheck(Refinement):
    """Recognises brightfield contrast inversion around the strongest refined peak."""

    def _inversion_check(self, refined: list[Refined]) -> Step:
        """Sample both sides of the strongest peak; fold an inversion pair into one plane.

        Returns `refined` with the strongest peak moved to the plane between the
        pair and `inversion_bound_um` set (how far its two estimates disagree,
        µm) when the pattern is found; unchanged otherwise. Recorded
        stacks (planes) and peaks without a width are left alone.
        """
        main = strongest(refined)
        if main is None or self.space.planes_um or main.peak.hwhm_um is None:
            return refined
        dof = self.space.dof
        zm = main.peak.z_um
        n = int(round(PROBE_REACH_DOF / PROBE_STEP_DOF))
        asks = [zm + sign * k * PROBE_STEP_DOF * dof for k in range(1, n + 1) for sign in (-1, 1)]
        yield from self._probe(sorted(asks), 0.3 * PROBE_STEP_DOF * dof)
        # A lenient first reading (the probes can straddle the minimum) decides where to
        # look finely; the strict one, on the finer samples, decides.
        pattern = self._inversion_pattern(zm, dip_level=LOOSE_DIP_LEVEL, rise=LOOSE_RISE,
                                          rise_sigma=LOOSE_RISE_SIGMA, confirm_max=False)
        if pattern is None:
            return refined
        # Place the two maxima and the dip finely: halve the gaps on both sides of each.
        yield from self._probe([f for p in pattern for f in self._halves(p)],
                               0.5 * FINE_STEP_DOF * dof)
        pattern = self._inversion_pattern(zm)
        if pattern is None:
            return refined
        z_max, z_dip, z_second = pattern
        if abs(z_second - z_max) > MAX_PAIR_DOF * dof:
            self.details["contrast_inversion"] = {
                "max_um": z_max, "dip_um": z_dip, "second_max_um": z_second, "ambiguous": True}
            flagged = dataclasses.replace(main, inversion_bound_um=math.inf)
            return [flagged if r is main else r for r in refined]
        # Two estimates of the plane: the contrast minimum, and the middle of the two maxima
        # (symmetric about focus under a symmetric envelope). The answer is their mean; how
        # far apart they are is how far it may be off.
        middle = 0.5 * (z_max + z_second)
        centre = 0.5 * (middle + z_dip)
        bound = abs(z_dip - middle)
        self.details["contrast_inversion"] = {
            "max_um": z_max, "dip_um": z_dip, "second_max_um": z_second,
            "maxima_middle_um": middle, "plane_um": centre, "bound_um": bound,
        }
        moved = dataclasses.replace(
            main, peak=Peak(centre, main.peak.score, main.peak.height, main.peak.hwhm_um),
            inversion_bound_um=bound,
        )
        # The pair's second maximum (and anything refined inside the pattern) is this plane.
        span = sorted((z_max, z_second))
        keep = [r for r in refined if r is not main and (
            r.peak is None or not span[0] - 0.5 * dof <= r.peak.z_um <= span[1] + 0.5 * dof)]
        return [moved, *keep]

    def _probe(self, asks: list[float], near_um: float) -> Step:
        """Measure `asks` (in order) inside the bounds, skipping those within `near_um` of a
        usable frame and keeping two frames of the budget; counted in
        `details["inversion_probes"]`."""
        lo, hi = self.bounds()
        asks = [a for a in asks if lo <= a <= hi and not self._near(a, near_um)]
        asks = asks[: max(self.frames_left - 2, 0)]
        if asks:
            self.details["inversion_probes"] = self.details.get("inversion_probes", 0) + len(asks)
            yield self._fresh(asks)

    def _halves(self, z_um: float) -> list[float]:
        """Midpoints between the sample nearest `z_um` and its two neighbours in z."""
        zs, _ = self.points()  # sorted by z
        if zs.size == 0:
            return []
        k = int(np.argmin(np.abs(zs - z_um)))
        return [0.5 * (zs[k] + zs[j]) for j in (k - 1, k + 1) if 0 <= j < zs.size]

    def _inversion_pattern(self, zm: float, *, turn: bool = True, dip_level: float = DIP_LEVEL,
                           rise: float = SECOND_RISE, rise_sigma: float = 6.0,
                           confirm_max: bool = True) -> tuple[float, float, float] | None:
        """(highest maximum, dip, second maximum) z (µm) near `zm`, or None.

        The highest sample within 2 × `MAX_PAIR_DOF` of `zm` is the maximum; on each side the
        lowest sample within 2 DOF of it is a dip when it falls to `DIP_LEVEL` of the
        maximum's height and a later sample (within `LOOK_DOF`) rises from it by
        `SECOND_RISE` of that height and 6 noise sigmas; the side with the higher
        second maximum wins. When that second maximum is the higher one, the search
        had found the pair's outer maximum: the pattern is read again from the other
        (`turn`, once).
        """
        dof = self.space.dof
        z, s = self.points()
        base, sigma = self._fine_noise()
        # The highest sample near the found peak: within the pair's reach, since the search
        # may have found the lower maximum or a flank of the higher one.
        near = np.abs(z - zm) <= 2.0 * MAX_PAIR_DOF * dof
        if not np.any(near):
            return None
        i_top = int(np.argmax(np.where(near, s, -np.inf)))
        z_top = float(z[i_top])
        height = float(s[i_top]) - base
        if height <= 0:
            return None
        best: tuple[float, float, float] | None = None
        best_second = -np.inf
        for side in (-1, 1):
            d = side * (z - z_top)
            out = np.nonzero((d > 0) & (d <= LOOK_DOF * dof))[0]
            out = out[np.argsort(d[out])]
            if out.size < 2:
                continue
            found = None
            for k_dip in (k for k in out if d[k] <= 2.0 * dof):  # nearest dip first
                later = [k for k in out if d[k] > d[k_dip]]
                if not later:
                    break
                k_sec = max(later, key=lambda k: s[k])
                dip, second = float(s[k_dip]) - base, float(s[k_sec]) - base
                # The dip is the lowest sample between the top and the second maximum.
                between = [k for k in out if d[k] < d[k_sec]]
                if k_dip != min(between, key=lambda k: s[k]):
                    continue
                # (Relative to the higher of the two maxima: the search may stand on the lower.)
                if (dip <= dip_level * max(height, second)
                        and second - dip >= max(rise * height, rise_sigma * sigma)
                        and not (confirm_max and k_sec == out[-1]
                                 and d[k_sec] < (LOOK_DOF - PROBE_STEP_DOF) * dof)):
                    found = (k_dip, k_sec, second)  # (a maximum still rising at the last
                    break                           # sample is no maximum yet)
            if found is None:
                continue
            k_dip, k_sec, second = found
            if second > best_second:
                best_second = second
                best = (self._vertex(z, s, i_top, top=True), self._vertex(z, s, k_dip, top=False),
                        self._vertex(z, s, int(k_sec), top=True))
        if best is not None and turn:
            # Which maximum is higher, judged by Gaussians through each top and its
            # neighbours (a sample can miss a narrow top that its neighbours straddle).
            if self._top_value(z, s, best[2]) > self._top_value(z, s, best[0]):
                return self._inversion_pattern(best[2], turn=False, dip_level=dip_level,
                                               rise=rise, rise_sigma=rise_sigma,
                                               confirm_max=confirm_max)
        return best

    @staticmethod
    def _top_value(zs: np.ndarray, ss: np.ndarray, z_top: float) -> float:
        """The peak value of a Gaussian through the sample nearest `z_top` and its two
        neighbours in z (`zs` sorted, as `points()` gives them; the sample itself when that
        fails)."""
        k = int(np.argmin(np.abs(zs - z_top)))
        if k == 0 or k == zs.size - 1:
            return float(ss[k])
        tz, ts = zs[k - 1: k + 2], ss[k - 1: k + 2]
        floor = float(ts.min()) - 0.05 * float(np.ptp(ts)) - 1e-12
        got = log_parabola(tz, ts - floor)
        if got is None:
            return float(ss[k])
        v, w = got
        u = (tz - v) / w
        amp = float(np.mean((ts - floor) / np.exp(-np.log(2.0) * u * u)))
        return float(min(floor + amp, float(ss[k]) + 2.0 * float(np.ptp(ts))))

    @staticmethod
    def _vertex(zs: np.ndarray, ss: np.ndarray, k: int, *, top: bool) -> float:
        """Sub-sample position of the extremum at sample k: a Gaussian through it and its two
        neighbours in z (`zs` sorted, as `points()` gives them; upside down for a minimum),
        kept between them."""
        if k == 0 or k == zs.size - 1:
            return float(zs[k])
        tz, ts = zs[k - 1: k + 2], ss[k - 1: k + 2]
        pad = 0.05 * float(np.ptp(ts)) + 1e-12
        vals = (ts - ts.min() + pad) if top else (ts.max() - ts + pad)
        got = log_parabola(tz, vals)
        if got is None:
            return float(zs[k])
        return float(min(max(got[0], tz[0]), tz[2]))
