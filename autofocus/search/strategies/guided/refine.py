"""Refining one candidate of a guided search: capture bisection, then a fine bracket.

`Refinement._refine` localises a candidate by bisecting the wide-capture
curve around it until a fine score rises (`_capture_next`), then
`_bracket` measures around the top until the fit is bracketed (filling
gaps, walking after a peak that moves, finding a flat top's edges, a frame
at the centre). On a recorded stack the planes themselves are the answer
(`_plane_peak`).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from autofocus.search.strategies.common import Step
from autofocus.search.strategies.guided.peak import FLAT_TOP_LEVEL, PeakFit
from autofocus.search.strategies.guided.shape import NO_RISE, Refined, log_parabola
from autofocus.search.trust import Peak

# A fine score this many noise sigmas above its baseline is bracketed without waiting
# for the capture curve to agree.
STRONG_FINE_SNR = 30.0
# A gap next to the top wider than this many bracket spacings is filled before a fit.
FILL_GAP = 1.4


class Refinement(PeakFit):
    """Turns a candidate position into a bracketed, fitted fine peak (a `Refined`)."""

    def _refine(self, z_c: float, cell: float, others: list[float]) -> Step:
        """Localise one candidate with capture bisection, then bracket and fit the fine peak.

        Everything stays within a window around `z_c` that ends halfway to the
        other candidates, so two planes are refined separately.
        """
        dof = self.space.dof
        window = max(cell, 3.0 * dof)
        if others:
            window = max(min(window, 0.5 * min(abs(o - z_c) for o in others)), 1.5 * dof)
        self._span = self._span_around(z_c, others)
        try:
            return (yield from self._refine_in(z_c, window))
        finally:
            self._span = None

    @staticmethod
    def _span_around(z_c: float, others: list[float]) -> tuple[float, float]:
        """Where a candidate at `z_c` may lie: up to halfway to each of `others` (µm)."""
        below = [0.5 * (o + z_c) for o in others if o < z_c]
        above = [0.5 * (o + z_c) for o in others if o > z_c]
        return (max(below) if below else -math.inf, min(above) if above else math.inf)

    def _refine_in(self, z_c: float, window: float) -> Step:
        dof = self.space.dof
        for _ in range(8):
            z_top = self._fine_peak(z_c, window, final=False)
            nxt = self._capture_next(z_c, window)
            # Bracket a risen fine score once the capture curve points at it too, or at
            # once when the fine score stands far out of its noise (the fine measure is
            # the judge; the capture curve is only a guide and can mislead, e.g. on a
            # camera whose out-of-focus objects brighten).
            if z_top is not None and (
                nxt is None or abs(nxt - z_top) <= 1.5 * dof
                or self._fine_snr(z_top) >= STRONG_FINE_SNR
            ):
                return (yield from self._bracket(z_top, z_c, window))
            if nxt is None:
                break
            yield self._fresh([nxt])
        z_top = self._fine_peak(z_c, window, final=False)
        if z_top is not None:
            return (yield from self._bracket(z_top, z_c, window))
        return NO_RISE

    def _bracket(self, z_top: float, z_c: float, window: float) -> Step:
        """Bracket the risen fine score at `z_top` and fit it; follow the peak if it walks."""
        dof = self.space.dof
        b = self.bracket_dof * dof
        lo, hi = self.bounds()
        probed_centre = False
        walked = 0
        walk_dir = 0
        last_top: float | None = None
        res: Refined | None = None
        # The window follows the top as the bracket walks (within the candidate's span).
        centre = z_top if self._span is not None else z_c
        window = max(window, 3.0 * dof) if self._span is not None else window
        for _ in range(10):
            if self.space.planes_um:
                plane_res = self._plane_peak(centre, window)
                if isinstance(plane_res, list):
                    yield plane_res
                    continue
                return plane_res
            res = self._fine_peak(centre, window)
            if res is None or res.peak is None:
                return NO_RISE
            z, s = self._fine_points(centre, window)
            i = int(np.argmax(s))
            top = float(z[i])
            if self._span is not None:
                centre = top
            below = z[z < top]
            above = z[z > top]
            # The peak moved the way the last frame went: keep walking that way with a
            # doubling step (a broad peak); otherwise fill gaps wider than the bracket
            # spacing next to the top with a frame one bracket spacing from it.
            if last_top is not None and walk_dir != 0 and (top - last_top) * walk_dir > 0:
                walked = min(walked + 1, 4)
            else:
                walked = 0
            last_top = top
            wanted = []
            for side in (-1, 1):
                nbr = (float(below.max()) if below.size else None) if side < 0 else (
                    float(above.min()) if above.size else None
                )
                gap = math.inf if nbr is None else abs(nbr - top)
                if gap <= FILL_GAP * b:
                    continue
                d = b if side != walk_dir or walked == 0 else min(b * 2.0**walked, 0.5 * gap)
                p = top + side * d
                if lo - 1e-9 <= p <= hi + 1e-9:
                    wanted.append((side, p))
            walk_dir = wanted[0][0] if len(wanted) == 1 else 0
            asks = [p for _, p in wanted if not self._near(p, 0.3 * dof)]
            if asks:
                yield self._fresh(asks)
                z_top = top
                continue
            # A flat top (neighbours as sharp as the top): find where it ends on both
            # sides; its centre is then the midpoint of those edges (see `_fine_peak`).
            flat = self._flat_top_asks(z, s, i, b)
            if flat:
                yield self._fresh(flat)
                continue
            if not res.at_edge and not probed_centre:
                need = self._centre_probe(res)
                probed_centre = True
                if need is not None:
                    yield self._fresh([need])
                    z_top = top
                    continue
            return res
        return res if res is not None else NO_RISE

    def _flat_top_asks(self, z: np.ndarray, s: np.ndarray, i: int, b: float) -> list[float]:
        """Positions to measure outward while the curve stays within `FLAT_TOP_LEVEL` of
        its top next to sample i (a flat-topped peak); [] when both edges are found."""
        base, _ = self._fine_noise()
        top = float(s[i])
        level = base + FLAT_TOP_LEVEL * (top - base)
        asks = []
        lo, hi = self.bounds()
        for step in (-1, 1):
            j = i
            while 0 <= j + step < z.size and s[j + step] >= level:
                j += step
            if j == i and 0 <= i + step < z.size:
                continue  # the neighbour already falls below the level: an ordinary peak
            if 0 <= j + step < z.size and abs(z[j + step] - z[j]) <= 1.4 * b:
                continue  # this edge is found (bracketed finely enough)
            nxt = float(z[j]) + step * b
            if lo - 1e-9 <= nxt <= hi + 1e-9 and not self._near(nxt, 0.3 * self.space.dof):
                asks.append(nxt)
        return asks if len(self.history) < self.space.max_frames - 2 else []

    def _plane_peak(self, z_c: float, window: float) -> Any:
        """Recorded planes only: the adjacent planes still to measure (a list), or the result.

        The answer is the sharpest measured plane once both its neighbouring
        planes are measured and less sharp; its width is measured when the
        planes are close enough (≤ 0.6 DOF apart), else left unresolved.
        """
        dof = self.space.dof
        planes = np.asarray(self.space.planes_um, dtype=float)
        lo, hi = self.bounds()
        z, s = self._fine_points(z_c, window)
        if z.size == 0:
            return NO_RISE
        base, sigma = self._fine_noise()
        i = int(np.argmax(s))
        top = float(z[i])
        k = int(np.argmin(np.abs(planes - top)))
        neighbours = [
            float(planes[j]) for j in (k - 1, k + 1)
            if 0 <= j < planes.size and lo - 1e-9 <= planes[j] <= hi + 1e-9
        ]
        missing = [p for p in neighbours if not self.is_known(p)]
        if missing:
            return missing
        # On a flat top the sharpest plane may sit between measured ones: measure the
        # unmeasured neighbours of every plane within one noise sigma of the top.
        for zz, ss in zip(z, s, strict=True):
            if ss < s[i] - sigma:
                continue
            kk = int(np.argmin(np.abs(planes - zz)))
            for j in (kk - 1, kk + 1):
                if 0 <= j < planes.size and lo - 1e-9 <= planes[j] <= hi + 1e-9:
                    p = float(planes[j])
                    if not self.is_known(p) and p not in missing:
                        missing.append(p)
        if missing:
            return missing
        height = float(s[i]) - base
        snr = height / sigma
        at_edge = len(neighbours) < 2
        vals = [self.score_at(p) for p in neighbours]
        if any(math.isfinite(v) and v >= s[i] for v in vals):
            at_edge = True  # a neighbour is as sharp: the top is not bracketed
        gaps = [abs(p - top) for p in neighbours] or [math.inf]
        spacing = max(gaps) / dof
        hwhm = None
        r2 = None
        if not at_edge and all(math.isfinite(v) for v in vals):
            trio_z = np.array([neighbours[0], top, neighbours[1]])
            trio_s = np.array([vals[0], float(s[i]), vals[1]]) - base + 0.05 * max(height, 0.0)
            got = log_parabola(trio_z, np.maximum(trio_s, 1e-12))
            if got is not None:
                hwhm = got[1]
        unresolved = spacing > 0.6
        return Refined(
            Peak(top, float(s[i]), height, hwhm), spacing, r2, snr, at_edge,
            "plane", width_unresolved=unresolved,
        )

    @staticmethod
    def _capture_vertex(z: np.ndarray, c: np.ndarray) -> float | None:
        """Log-parabola vertex of the capture samples `z`, `c` (sorted by z) around their
        highest one, kept between its neighbours; None for fewer than 3 samples."""
        if z.size < 3:
            return None
        i = int(np.argmax(c))
        j = min(max(i, 1), z.size - 2)
        got = log_parabola(z[j - 1 : j + 2], c[j - 1 : j + 2])
        if got is None:
            return float(z[i])
        v, _ = got
        return float(min(max(v, z[j - 1]), z[j + 1]))

    def _capture_next(self, centre: float, window: float) -> float | None:
        """The next position to measure when no fine score has risen: capture bisection."""
        dof = self.space.dof
        z, c, _ = self._capture_points()
        keep = np.abs(z - centre) <= window * 1.01
        z, c = z[keep], c[keep]
        if z.size == 0:
            return None
        i = int(np.argmax(c))
        # The highest capture sample is the outermost one: focus may lie beyond it.
        lo, hi = self.bounds()
        if i in (0, z.size - 1) and z.size > 1:
            step = 0.5 * (float(z[1] - z[0]) if i == 0 else float(z[-1] - z[-2]))
            out = float(z[i]) + (-step if i == 0 else step)
            out = min(max(out, lo), hi)
            if abs(out - z[i]) > 0.5 * dof and not self._near(out, 0.5 * dof):
                return self.clamp(out)
        v = self._capture_vertex(z, c)
        if v is not None and not self._near(v, 0.5 * dof):
            return self.clamp(v)
        # Bisect the larger gap next to the top sample, towards the higher neighbour.
        left = z[i - 1] if i > 0 else None
        right = z[i + 1] if i < z.size - 1 else None
        options = []
        if left is not None:
            options.append((c[i - 1], 0.5 * (z[i] + left), z[i] - left))
        if right is not None:
            options.append((c[i + 1], 0.5 * (z[i] + right), right - z[i]))
        if not options:
            for p in (z[i] - 0.5 * window, z[i] + 0.5 * window):
                if lo <= p <= hi and not self._near(p, 0.5 * dof):
                    return self.clamp(p)
            return None
        options.sort(key=lambda t: -t[0])
        for _, mid, gap in options:
            if gap > 1.0 * dof and not self._near(mid, 0.5 * dof):
                return self.clamp(mid)
        return None
