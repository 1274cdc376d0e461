"""The prior path of `guided`: a revisit whose focus is roughly known searches there first.

A prior is `expected_z_um` (the space's `reference_z_um`) with
`expected_sigma_um` (the space's `prior_sigma_um`): the caller's claim that
focus lies near z0 with that standard deviation (the position's last focus, a
focus map's prediction). The path:

1. Three frames at z0 − d, z0, z0 + d (d = `PRIOR_BRACKET_DOF` DOF). While the
   sharpest frame is an end of what was measured and the next step stays within
   the prior's reach, one more frame d beyond it.
2. The three frames around the sharpest are fitted as `track` does (a Gaussian in
   log score, the wide-capture scores when the top frame is an end). No peak that
   stands out, or one outside the frames: no plane near the prior. A peak whose
   neighbours both sit at the floor is narrower than the spacing: two frames d/2
   either side of the sharpest are added; otherwise a frame at the fitted centre
   when none lies within DOF/4 of it. Those frames go in the same ascending pass
   as step 3, and the three frames around the sharpest are fitted again.
3. Confined rival check: the prior's reach, z0 ± (3σ + w) (w the peak's full
   width, at least one DOF), is sampled so that no gap between frames is wider
   than `PRIOR_CHECK_SPACING_DOF` DOF. A frame more than the rival separation
   from the peak whose fine score rises above the floor by
   `PRIOR_RIVAL_RATIO` of the peak's rise is something else within reach.

A peak that passes parks like `track` (its frames agree on one peak; no extra
verification frame). Anything else — no peak, a second plane within reach, an
unusable frame, a bracket that leaves the range — returns None with the reason
in `details["prior_fallback"]`, and `guided` runs its full blind search with
every frame measured so far. `details["prior"]` states the prior and the
interval the rival check was confined to: a prior that points at another plane
is the caller's claim, and the result says where the check looked.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from autofocus.search.strategies.common import Search
from autofocus.search.strategies.guided.shape import bracket_peak
from autofocus.search.trust import peak_confidence, width_plausible

PRIOR_BRACKET_DOF = 1.3  # half-spacing of the first frames, as `track`'s bracket
PRIOR_CHECK_SPACING_DOF = 2.0  # widest gap the confined rival check leaves
PRIOR_REACH_SIGMA = 3.0  # the rival check covers z0 ± 3σ (+ the peak's width)
PRIOR_RIVAL_SEPARATION_DOF = 3.0  # as the rival rule: planes closer are one plane
PRIOR_RIVAL_RATIO = 0.12  # as the rival rule: a second plane 12 % of the first's rise
MIN_PRIOR_RISE = 0.1  # the peak must rise this much (relative) above the lowest frame
NARROW_NEIGHBOUR_RATIO = 0.5  # neighbours below this share of the top's rise: a narrow peak
SIDE_PROBE_DOF = 0.6  # the flanks compared for symmetry, this far either side of the peak
LOPSIDED_RATIO = 0.35  # one flank's rise below this share of the other's: not a plane


class PriorPath:
    """Mixin of `Guided`: the prior path (see the module docstring)."""

    def _prior_path(self) -> Search:
        space = self.space  # type: ignore[attr-defined]
        dof = space.dof
        z0 = float(space.reference_z_um)
        sigma = float(space.prior_sigma_um)
        d = PRIOR_BRACKET_DOF * dof
        lo, hi = self.bounds()  # type: ignore[attr-defined]
        reach_um = PRIOR_REACH_SIGMA * sigma
        info: dict[str, Any] = {"z_um": z0, "sigma_um": sigma}
        self.details["prior"] = info  # type: ignore[attr-defined]
        if not (lo <= z0 - d and z0 + d <= hi):
            self.details["prior_fallback"] = "the prior's frames do not fit inside the range"  # type: ignore[attr-defined]
            return None
        measured: list[float] = [z0 - d, z0, z0 + d]
        scores: list[float] = list((yield list(measured)))
        # Follow a rising end while it stays within the prior's reach.
        while True:
            zs, ss, k = _sorted_top(measured, scores)
            if 0 < k < len(zs) - 1:
                break
            nxt = float(zs[k] + (-d if k == 0 else d))
            if abs(nxt - z0) > reach_um + d or not (lo <= nxt <= hi):
                break
            measured.append(nxt)
            scores.extend((yield [nxt]))
        zs, ss, k = _sorted_top(measured, scores)
        k = min(max(k, 1), len(zs) - 2)
        floor = float(np.nanmin(ss))
        top_rise = float(ss[k]) - floor
        narrow = bool(
            int(np.nanargmax(ss)) == k and top_rise > 0
            and max(ss[k - 1], ss[k + 1]) - floor < NARROW_NEIGHBOUR_RATIO * top_rise
        )
        if narrow:
            # Both neighbours at the floor: the peak is narrower than the frames' spacing
            # and a 3-point fit would only guess its centre. Halve the spacing around it.
            v, width_um = float(zs[k]), dof
            extra = [float(zs[k] - d / 2), float(zs[k] + d / 2)]
        else:
            fit = self._prior_fit(zs[k - 1:k + 2], ss[k - 1:k + 2])
            if isinstance(fit, str):
                self.details["prior_fallback"] = fit  # type: ignore[attr-defined]
                return None
            v, hwhm, _ = fit
            width_um = max(2.0 * hwhm, dof)
            # A frame at the fitted centre when none is within DOF/4 of it.
            extra = [] if np.min(np.abs(zs - v)) <= dof / 4 else [float(v)]
        # Both flanks one side-probe distance from the centre: a focal plane blurs
        # symmetrically; the sharpness maximum of a brightfield plane whose contrast inverts
        # does not (its minimum, the focal plane, lies on one side).
        extra += [float(v + e * SIDE_PROBE_DOF * dof) for e in (-1.0, 1.0)
                  if lo <= v + e * SIDE_PROBE_DOF * dof <= hi
                  and np.min(np.abs(zs - (v + e * SIDE_PROBE_DOF * dof))) > 0.1 * dof]
        c_lo = max(lo, z0 - reach_um - width_um)
        c_hi = min(hi, z0 + reach_um + width_um)
        info["rival_check_um"] = [c_lo, c_hi]
        fill = _gap_fill(sorted(measured + extra), c_lo, c_hi, PRIOR_CHECK_SPACING_DOF * dof)
        batch = sorted(fill + extra)  # one ascending pass: the check and the peak's frames
        if batch:
            scores.extend((yield batch))
            measured.extend(batch)
        zs, ss, k = _sorted_top(measured, scores)
        k = min(max(k, 1), len(zs) - 2)
        # Five frames around the sharpest where the side probes added them: a small bump on
        # a broad top (DemoCamera's beads: 1 % higher 1 µm either side of focus) does not
        # pull the centre the way a three-frame fit lets it.
        j0, j1 = (k - 2, k + 3) if 2 <= k <= len(zs) - 3 else (k - 1, k + 2)
        refit = self._prior_fit(zs[j0:j1], ss[j0:j1])
        if isinstance(refit, str):
            self.details["prior_fallback"] = refit  # type: ignore[attr-defined]
            return None
        v, hwhm, rise = refit
        z_all = np.asarray(measured)
        s_all = np.asarray(scores, dtype=float)
        if not np.all(np.isfinite(s_all)):
            self.details["prior_fallback"] = "a frame near the prior could not be scored"  # type: ignore[attr-defined]
            return None
        floor = float(s_all.min())
        peak_rise = float(s_all.max()) - floor
        far = np.abs(z_all - v) > PRIOR_RIVAL_SEPARATION_DOF * dof
        if peak_rise > 0 and np.any(far & (s_all - floor >= PRIOR_RIVAL_RATIO * peak_rise)):
            z_other = float(z_all[far][np.argmax(s_all[far])])
            self.details["prior_fallback"] = (  # type: ignore[attr-defined]
                f"a second plane may lie within the prior's reach (z={z_other:.2f} µm rises "
                f"above {100 * PRIOR_RIVAL_RATIO:.0f} % of the peak's height)"
            )
            return None
        lopsided = self._lopsided(z_all, s_all, v, floor)
        if lopsided is not None:
            self.details["prior_fallback"] = lopsided  # type: ignore[attr-defined]
            return None
        info["offset_um"] = v - z0
        info["rival_check"] = (
            f"confined to the prior's reach, {c_lo:.2f}..{c_hi:.2f} µm (expected_z_um ± "
            f"{PRIOR_REACH_SIGMA:g} σ + the peak's width); the rest of the range was not "
            "checked for a second plane"
        )
        conf = peak_confidence(rise * 20.0, r2=None, spacing_dof=PRIOR_BRACKET_DOF,
                               width_ok=True)
        return self.finish(  # type: ignore[attr-defined]
            success=True,
            best_z_um=float(v),
            best_score=float(s_all.max()),
            details={**self.details, "path": "prior", "hwhm_um": hwhm,  # type: ignore[attr-defined]
                     "verified_in_search": True},
            confidence_value=conf,
        )

    def _lopsided(self, z: np.ndarray, s: np.ndarray, v: float, floor: float) -> str | None:
        """Why the peak at `v` is no plane to park on, or None: its rise above `floor`
        `SIDE_PROBE_DOF` DOF away on one side is below `LOPSIDED_RATIO` of the other
        side's (interpolated from the frames measured)."""
        dof = self.space.dof  # type: ignore[attr-defined]
        order = np.argsort(z)
        zs, ss = z[order], s[order]
        dz = SIDE_PROBE_DOF * dof
        if v - dz < zs[0] or v + dz > zs[-1]:
            return None
        top = float(np.interp(v, zs, ss)) - floor
        left = float(np.interp(v - dz, zs, ss)) - floor
        right = float(np.interp(v + dz, zs, ss)) - floor
        low, high = min(left, right), max(left, right)
        if top > 0 and low < LOPSIDED_RATIO * high and high - low >= 0.1 * top:
            return (
                f"the peak near the prior falls to {100 * low / top:.0f} % {dz:.2f} µm on one "
                f"side and only to {100 * high / top:.0f} % on the other: the contrast may "
                "invert through focus (brightfield), so the blind search decides"
            )
        return None

    def _prior_fit(self, z: np.ndarray, s: np.ndarray) -> tuple[float, float, float] | str:
        """(centre µm, HWHM µm, relative rise) of the 3-frame peak, or why there is none."""
        dof = self.space.dof  # type: ignore[attr-defined]
        if not np.all(np.isfinite(s)):
            return "a frame near the prior could not be scored"
        low = float(s.min())
        if low <= 0:
            return "the focus scores are not positive"
        rise = float(s.max()) / low - 1.0
        if rise < MIN_PRIOR_RISE:
            return (f"the frames near the prior differ by only {100 * rise:.0f} %: no plane "
                    "near the prior")
        got = bracket_peak(z, s, self.capture_at)  # type: ignore[attr-defined]
        if got is None:
            return "the frames near the prior show no peak"
        v, hwhm = got
        if not (z[0] - 1e-9 <= v <= z[-1] + 1e-9) or not math.isfinite(v):
            return f"the peak near the prior lies outside its frames (fitted at {v:.2f} µm)"
        if not width_plausible(hwhm, dof) and hwhm < dof:
            return f"the peak near the prior is {2 * hwhm:.2f} µm wide, too narrow for the optics"
        return float(v), float(hwhm), rise


def _sorted_top(measured: list[float], scores: list[float]) -> tuple[np.ndarray, np.ndarray, int]:
    """Positions and scores sorted by z, and the index of the sharpest usable frame."""
    order = np.argsort(measured)
    zs = np.asarray(measured, dtype=float)[order]
    ss = np.asarray(scores, dtype=float)[order]
    return zs, ss, int(np.argmax(np.where(np.isfinite(ss), ss, -np.inf)))


def _gap_fill(zs: list[float], lo: float, hi: float, spacing_um: float) -> list[float]:
    """Positions in [lo, hi] (ascending) so that every point of [lo, hi] lies within
    `spacing_um`/2 of a frame: gaps between `zs` are split evenly; the ends count as
    frames half a spacing beyond the interval."""
    half = spacing_um / 2
    edges = [lo - half, *sorted(z for z in zs if lo - half < z < hi + half), hi + half]
    out: list[float] = []
    for a, b in zip(edges, edges[1:], strict=False):
        n = math.ceil((b - a) / spacing_um - 1e-9)
        out.extend(min(max(a + (b - a) * j / n, lo), hi) for j in range(1, n))
    return sorted(out)
