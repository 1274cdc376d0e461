"""The guided search's look for a second focal plane (a rival of the one found).

`RivalChecks` holds the checks run after the candidates are refined: the
`full` rival check (`_full_rival_check`: fill every gap of the range wider
than the distance at which a dim plane still shows, `_gap_fill`, and bracket
what rises, `_bracket_rising`), the capture-asymmetry look for a plane
hiding in the found one's capture curve (`_asymmetry_candidates`,
`_refine_rival`), and the dip test that tells two planes from the two
flanks of one (`_confirm_dips`).
"""

from __future__ import annotations

import math

import numpy as np

from autofocus.search.strategies.common import Step
from autofocus.search.strategies.guided.refine import Refinement
from autofocus.search.strategies.guided.shape import LN2, Refined, strongest
from autofocus.search.trust import RIVAL_MIN_RATIO, Peak

# A capture sample this many times higher (above baseline) than its mirror image across
# the found peak suggests a second plane on its side.
ASYMMETRY_RATIO = 1.4
# Frames spent looking for such a second plane.
RIVAL_PROBES = 4
# Frames the full rival check leaves for the contrast-inversion look (`guided.inversion`).
INVERSION_RESERVE = 12
# Two neighbouring samples of the rival check, neither 6 sigmas up, that together stand out
# of the noise (see `_flank_pair_probes`): thresholds in noise sigmas, and the most probes.
FLANK_HIGH_SIGMA = 2.5
FLANK_LOW_SIGMA = 2.0
FLANK_SUM_SIGMA = 5.0
FLANK_MAX_PROBES = 3


class RivalChecks(Refinement):
    """Looks for a second focal plane beside the refined ones."""

    def _full_rival_check(self, refined: list[Refined], cell: float) -> Step:
        """`rival_check="full"`: sample the rest of the range finely enough to see any plane
        whose fine peak reaches `RIVAL_MIN_RATIO` of the main one, and refine what rises.

        The spacing is 1.5 × the distance at which such a plane's fine score still
        stands 6 noise sigmas out (from the main peak's measured height, noise and
        width), between 1.5 and 3 DOF. Only the gaps wider than that are filled
        (`_gap_fill`): every usable frame measured so far counts, the range ends lie
        within half a spacing of a sample, the found planes' ±3 DOF are left to the
        other checks. Costs about (range − 6 DOF per plane) / spacing frames, less
        what the coarse pass and the refinements already measured. Under `rival:
        fail` the lower half is sampled first and the check stops as soon as a
        rival survives the dip test (`details.rival_check.note` says so).
        """
        dof = self.space.dof
        main = strongest(refined)
        if main is None:
            return refined
        _, sigma = self._fine_noise()
        w = main.peak.hwhm_um or 0.6 * dof
        ratio = RIVAL_MIN_RATIO * main.peak.height / (6.0 * sigma)
        reach = w * math.sqrt(math.log(ratio) / LN2) if ratio > 1.0 else 0.5 * w
        # Real focus curves fall off faster than a Gaussian far out: keep a margin.
        step = min(max(1.5 * reach, 1.5 * dof), 3.0 * dof)
        lo, hi = self.space.lo_um, self.space.hi_um
        peaks_z = [r.peak.z_um for r in refined if r.peak is not None]
        self.details["rival_check"] = {"step_um": step, "frames": 0, "complete": True,
                                       "reach_um": reach}
        covered = [(pz - 3.0 * dof, pz + 3.0 * dof) for pz in peaks_z]
        grid = self._gap_fill(lo, hi, step, covered)
        # Frames kept back for the look at the found peak's sides (contrast inversion).
        room = self.frames_left - 2 - (INVERSION_RESERVE if not self.space.planes_um else 0)
        if grid and len(grid) > room:
            # Not enough frames for the whole check: look at an even subset and say so, so a
            # caller (and `details`) can see that a dim rival may have been missed; raise
            # `max_frames` for a complete check over a wide range.
            keep = max(room, 0)
            grid = [grid[round(i * (len(grid) - 1) / max(keep - 1, 1))] for i in range(keep)]
            self.details["rival_check"].update(
                complete=False,
                note="frame budget too small for a complete rival check: raise max_frames",
            )
        # The lower half first: a rival there is found (and, with `rival: fail`, ends the
        # search) before the upper half is sampled. The engine acquires each batch in
        # ascending Z, so the two halves travel the range once, like a single sweep.
        half = (len(grid) + 1) // 2
        batches = [grid[:half], grid[half:]] if self.space.rival == "fail" else [grid]
        for k, batch in enumerate(batches):
            if batch:
                self.details["rival_check"]["frames"] += len(batch)
                yield self._fresh(batch)
            refined, peaks_z = yield from self._bracket_rising(refined, peaks_z, step)
            if k + 1 < len(batches):
                refined = yield from self._confirm_dips(refined, cell)
                _, rival_list = self._rivals([r.peak for r in refined if r.peak is not None])
                if rival_list:
                    self.details["rival_check"].update(
                        complete=False, note="stopped early: a rival plane was found",
                    )
                    return refined
                peaks_z = [r.peak.z_um for r in refined if r.peak is not None]
        return refined

    def _bracket_rising(
        self, refined: list[Refined], peaks_z: list[float], step: float
    ) -> Step:
        """Bracket every sample ≥ 6 noise sigmas up that tops its neighbours and lies
        more than 3 DOF from a known peak; returns (refined, peak positions).

        A narrow dim plane can fall between two samples of the check and show only
        on both flanks, each a few sigmas up: such a pair is probed between its two
        samples first (`_flank_pair_probes`), and bracketed when the probe rises.
        """
        dof = self.space.dof
        probes = self._flank_pair_probes(peaks_z)
        if probes:
            self.details.setdefault("rival_check", {})["flank_probes"] = len(probes)
            yield probes
        z, s = self.points()
        base, sigma = self._fine_noise()
        for i in range(z.size):
            zi = float(z[i])
            if any(abs(zi - pz) <= 3.0 * dof for pz in peaks_z):
                continue
            left = s[i - 1] if i > 0 else -math.inf
            right = s[i + 1] if i < z.size - 1 else -math.inf
            rise = float(s[i]) - base
            if s[i] >= left and s[i] >= right and rise / sigma >= 6.0:
                # The bracket follows the top wherever it walks, up to halfway to a known
                # peak: a fixed window around the first risen sample cut a dim plane's
                # walk short and kept its flank (a fraction of its height) as its peak.
                self._span = self._span_around(zi, peaks_z)
                try:
                    res = yield from self._bracket(zi, zi, max(1.5 * dof, 0.5 * step))
                finally:
                    self._span = None
                if res.peak is not None:
                    refined.append(res)
                    peaks_z = [*peaks_z, res.peak.z_um]
        return refined, peaks_z

    def _flank_pair_probes(self, peaks_z: list[float]) -> list[float]:
        """Midpoints of neighbouring sample pairs, both more than 3 DOF from every known
        peak, that stand together out of the noise without either reaching 6 sigmas:
        the higher ≥ `FLANK_HIGH_SIGMA`, the other ≥ `FLANK_LOW_SIGMA`, together ≥
        `FLANK_SUM_SIGMA` noise sigmas above the baseline (noise alone gives such a
        pair about once in 10⁴). At most `FLANK_MAX_PROBES` positions, strongest
        first; positions already measured are skipped."""
        dof = self.space.dof
        z, s = self.points()
        if z.size < 3:
            return []
        base, sigma = self._fine_noise()
        r = (s - base) / sigma
        pairs = []
        for i in range(z.size - 1):
            a, b = float(z[i]), float(z[i + 1])
            if any(abs(x - pz) <= 3.0 * dof for x in (a, b) for pz in peaks_z):
                continue
            hi_r, lo_r = max(r[i], r[i + 1]), min(r[i], r[i + 1])
            if (hi_r < 6.0 and hi_r >= FLANK_HIGH_SIGMA and lo_r >= FLANK_LOW_SIGMA
                    and hi_r + lo_r >= FLANK_SUM_SIGMA and b - a > 0.5 * dof):
                pairs.append((float(hi_r + lo_r), 0.5 * (a + b)))
        pairs.sort(reverse=True)
        out = [m for _, m in pairs if not self._near(m, 0.3 * dof)]
        return self._fresh(out[:FLANK_MAX_PROBES])

    def _gap_fill(
        self, lo: float, hi: float, step: float, covered: list[tuple[float, float]]
    ) -> list[float]:
        """Positions (µm) that leave no stretch of [lo, hi] unseen at spacing `step`.

        Every usable frame already measured counts, so stretches the coarse pass and
        the refinements sampled densely cost nothing. Between two neighbouring
        samples the gap is at most `step` afterwards; between a range end and its
        nearest sample at most `step / 2` (a plane at the end is seen from one side
        only). `covered` intervals (the found peaks' own ±3 DOF, judged by the
        other checks) count as sampled.
        """
        z, _ = self.points()
        marks = sorted(float(v) for v in z if lo - 1e-9 <= v <= hi + 1e-9)
        spans = sorted((max(a, lo), min(b, hi)) for a, b in covered if b > lo and a < hi)
        merged: list[list[float]] = []
        for a, b in spans:
            if merged and a <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], b)
            else:
                merged.append([a, b])
        # Sample marks inside a covered span are redundant; its ends act as samples.
        marks = [m for m in marks if not any(a < m < b for a, b in merged)]
        marks = sorted(marks + [v for a, b in merged for v in (a, b)])
        out: list[float] = []
        if not marks:
            n = max(1, int(math.ceil((hi - lo) / step - 1e-9)))
            return [lo + (k + 0.5) * (hi - lo) / n for k in range(n)]
        # Range ends: the outermost sample within step / 2 of the end.
        first, last = marks[0], marks[-1]
        if first - lo > 0.5 * step + 1e-9:
            n = int(math.ceil((first - lo) / step - 0.5 - 1e-9))
            n = max(n, 1)
            sp = (first - lo) / (n + 0.5)
            out += [first - k * sp for k in range(1, n + 1)]
        if hi - last > 0.5 * step + 1e-9:
            n = max(int(math.ceil((hi - last) / step - 0.5 - 1e-9)), 1)
            sp = (hi - last) / (n + 0.5)
            out += [last + k * sp for k in range(1, n + 1)]
        for a, b in zip(marks[:-1], marks[1:], strict=True):
            if any(abs(a - x) < 1e-9 and abs(b - y) < 1e-9 for x, y in merged):
                continue  # a covered span
            if b - a > step + 1e-9:
                n = int(math.ceil((b - a) / step - 1e-9))
                out += [a + k * (b - a) / n for k in range(1, n)]
        return sorted(out)

    def _confirm_dips(self, refined: list[Refined], cell: float) -> Step:
        """Two peaks are two planes only if the curve dips between them.

        For each rival pair without a measured sample clearly below both in
        between, the midpoint is measured: if it is sharper than the lower peak
        there is no dip and the lower one is a flank of the same plane (dropped);
        if it is sharper than both, the plane lies between them and is refined
        there. Returns the surviving refinements.
        """
        for _ in range(3):
            peaks = [r.peak for r in refined if r.peak is not None]
            best, rival_list = self._rivals(peaks)
            if best is None or not rival_list:
                return refined
            z, s = self.points()
            todo: list[tuple[float, Peak, Peak]] = []
            for q in rival_list:
                a, b = sorted((self._outer_z(best, q), self._outer_z(q, best)))
                inside = s[(z > a + 1e-9) & (z < b - 1e-9)]
                dip = min(best.score, q.score) - 0.3 * min(best.height, q.height)
                if inside.size == 0 or float(inside.min()) > dip:
                    # A midpoint measured already (e.g. by another check) is judged as it is.
                    todo.append((self._fresh([0.5 * (a + b)])[0], best, q))
            if not todo:
                return refined
            new = [m for m, _, _ in todo if not self.is_known(m)]
            if new:
                yield new
            elif all(self.score_at(m) <= min(p1.score, p2.score) for m, p1, p2 in todo):
                return refined  # every midpoint known and dipping: nothing more to learn
            drop: set[int] = set()
            for m, p1, p2 in todo:
                sm = self.score_at(m)
                if not math.isfinite(sm) or sm <= min(p1.score, p2.score):
                    continue
                drop.add(id(p1 if p1.score < p2.score else p2))
                if sm > max(p1.score, p2.score):
                    drop.add(id(p1))
                    drop.add(id(p2))
                    others = [r.peak.z_um for r in refined
                              if r.peak is not None and id(r.peak) not in drop]
                    refined.append((yield from self._refine(m, cell, others)))
            refined = [r for r in refined if r.peak is None or id(r.peak) not in drop]
        return refined

    def _outer_z(self, p: Peak, other: Peak) -> float:
        """Where `p`'s plane ends towards `other` for the dip test: its z, or for a
        contrast-inverted plane (see `guided.inversion`) the maximum of its pair on the
        side of `other` (its own minimum is no dip between two planes)."""
        inv = self.details.get("contrast_inversion")
        if not inv or abs(p.z_um - inv.get("plane_um", float("nan"))) > 1e-9:
            return p.z_um
        pair = (inv["max_um"], inv["second_max_um"])
        return min(pair) if other.z_um < p.z_um else max(pair)

    def _refine_rival(self, z_j: float, z_m: float, cell: float) -> Step:
        """Look for a second plane on the side of `z_j` away from the peak at `z_m`.

        Bisects the capture excess (capture minus its mirror image across `z_m`)
        between 2.5 DOF from `z_m` and one coarse cell beyond `z_j`, at most
        `RIVAL_PROBES` frames, until a fine score rises; then brackets it.
        """
        dof = self.space.dof
        sign = 1.0 if z_j > z_m else -1.0
        a = z_m + sign * 2.5 * dof
        b = z_j + sign * cell
        lo_w, hi_w = min(a, b), max(a, b)
        centre, window = 0.5 * (lo_w + hi_w), 0.5 * (hi_w - lo_w)
        for _ in range(RIVAL_PROBES):
            z_top = self._fine_peak(centre, window, final=False)
            if z_top is not None and abs(z_top - z_m) >= 2.5 * dof:
                return (yield from self._bracket(z_top, centre, window))
            zc, c, _ = self._capture_points()
            inside = (zc >= lo_w - 1e-9) & (zc <= hi_w + 1e-9)
            pts = sorted(
                (float(zz), float(cc) - float(np.interp(2 * z_m - zz, zc, c)))
                for zz, cc in zip(zc[inside], c[inside], strict=True)
            )
            edges = [lo_w, *[p for p, _ in pts], hi_w]
            # The widest gap next to the largest excess, split in the middle.
            best = max(pts, key=lambda t: t[1])[0] if pts else centre
            gaps = [(e2 - e1, 0.5 * (e1 + e2)) for e1, e2 in zip(edges[:-1], edges[1:],
                                                                strict=True)
                    if (abs(e1 - best) < 1e-9 or abs(e2 - best) < 1e-9) and e2 - e1 > 1.0 * dof]
            if not gaps:
                gaps = [(e2 - e1, 0.5 * (e1 + e2)) for e1, e2 in zip(edges[:-1], edges[1:],
                                                                    strict=True)
                        if e2 - e1 > 1.0 * dof]
            if not gaps:
                break
            _, mid = max(gaps)
            if self._near(mid, 0.5 * dof):
                break
            yield self._fresh([mid])
        z_top = self._fine_peak(centre, window, final=False)
        if z_top is not None and abs(z_top - z_m) >= 2.5 * dof:
            return (yield from self._bracket(z_top, centre, window))
        return Refined(None, math.inf, None, 0.0, False, "no second plane")

    def _asymmetry_candidates(self, z_m: float, known: list[float]) -> list[float]:
        """Capture samples ≥ 3 DOF from the peak at `z_m` rising more than
        `ASYMMETRY_RATIO` times as far above the baseline as the curve does at
        their mirror position (interpolated).

        A single focal plane blurs symmetrically, so its capture curve is about
        symmetric; a second plane nearby lifts one side. Samples within 2 DOF of
        a known candidate are skipped. Highest excess first.
        """
        dof = self.space.dof
        z, c, noise = self._capture_points()
        if z.size < 3:
            return []
        base, level = self._threshold(c, noise)
        out = []
        for zj, cj in zip(z, c, strict=True):
            d = float(zj - z_m)
            if abs(d) < 3.0 * dof or cj <= level:
                continue
            if any(abs(zj - k) < 2.0 * dof for k in known):
                continue
            zm = z_m - d
            # Beyond the sampled range the outermost sample bounds the mirror value from
            # above (the curve falls away from the peak).
            mirror = float(np.interp(zm, z, c))
            if cj - base > ASYMMETRY_RATIO * max(mirror - base, level - base):
                out.append((float(cj - mirror), float(zj)))
        out.sort(reverse=True)
        return [zj for _, zj in out]
