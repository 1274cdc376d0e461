"""The guided search's classical path: a coarse capture sweep, candidates, refinement.

`CapturePath._classical_path` works with any scorer: a coarse pass stepped
from the optics (densified while nothing rises), the rising local maxima of
the wide-capture curve as candidates, each refined (`Refinement`), then the
rival checks (`RivalChecks`), a walk up a capture curve that still rises
through the found peak (`_follow_capture`), with a defocus estimator a look
where the model says focus is when it puts the found peak far from it
(`_model_check`), and the verdict (`Verdict`).
Steps 1–5 of the algorithm in `autofocus.search.strategies.guided.strategy`.
"""

from __future__ import annotations

import math

import numpy as np

from autofocus.search.reasons import FailureReason
from autofocus.search.strategies.common import (
    FrameBudgetExhausted,
    Search,
    Step,
    too_few_reason,
)
from autofocus.search.strategies.guided.inversion import InversionCheck
from autofocus.search.strategies.guided.rivals import RivalChecks
from autofocus.search.strategies.guided.shape import Refined, coarse_step_um, strongest
from autofocus.search.strategies.guided.verdict import Verdict
from autofocus.search.trust import RIVAL_MIN_SEPARATION_DOF

# With a defocus estimator, a found peak the model itself puts farther than this many DOF
# from focus is cross-checked at that distance on both sides.
MODEL_NEAR_DOF = 1.5
MODEL_CHECK_MAX_DOF = 4.0
# The capture curve rising through a found peak by more than this (relative, over
# 2 DOF) is followed, at most this many frames.
CAPTURE_FOLLOW_SLOPE = 0.3
CAPTURE_FOLLOW_FRAMES = 4
# With nothing rising, the coarse spacing is halved at most this many times, and no
# further once the gaps are this many DOF.
MAX_DENSIFY_ROUNDS = 3
DENSIFY_MIN_GAP_DOF = 5.0
# A range up to this many DOF is sampled every 2 DOF at least.
SHORT_RANGE_FINE_DOF = 16.0
# A recorded stack shorter than this many DOF is swept every other plane.
SHORT_RANGE_DOF = 6.0


class CapturePath(RivalChecks, InversionCheck, Verdict):
    """The guided search with any scorer, guided by the wide-capture curve."""

    def _classical_path(self) -> Search:
        space, dof = self.space, self.space.dof
        lo, hi = space.lo_um, space.hi_um
        width = hi - lo
        h = coarse_step_um(width, dof, self.step_factor)
        if space.coarse_step_um:
            h = float(space.coarse_step_um)
        n = max(3, int(math.ceil(width / h - 1e-9)))
        if width <= SHORT_RANGE_FINE_DOF * dof:
            # A short range (e.g. re-focusing near a known plane) lies within the capture
            # curve's width: sample it at the fine peak's scale instead.
            n = max(n, int(math.ceil(width / (2.0 * dof) - 1e-9)))
        n = min(n, max(3, space.max_frames - 6))
        cell = width / n
        grid = [lo + (k + 0.5) * cell for k in range(n)]
        planes = [p for p in (space.planes_um or ()) if lo - 1e-9 <= p <= hi + 1e-9]
        if planes and width < SHORT_RANGE_DOF * dof and len(planes) > n:
            # A short recorded stack lies entirely within the capture curve's width, which
            # then cannot point anywhere: take every other plane instead.
            grid = planes[::2] if len(planes) % 2 else planes[::2] + [planes[-1]]
            cell = 2.0 * width / max(len(planes) - 1, 1)
        self.details.setdefault("path", "capture")
        self.details["coarse_step_um"] = cell
        yield grid
        yield from self._retake_unusable(grid)
        rising = self._rising() or self._fine_rising()
        coarse = sorted(grid)
        rounds = 0
        # Nothing rose: halve the spacing until something does, or until the gaps are
        # narrower than the capture curve of a weak specimen (about ±2 DOF) can hide in.
        while not rising and rounds < MAX_DENSIFY_ROUNDS:
            gaps = [b - a for a, b in zip(coarse[:-1], coarse[1:], strict=True)]
            if rounds > 0 and max(gaps, default=0.0) <= DENSIFY_MIN_GAP_DOF * dof:
                break
            mids = [0.5 * (a + b) for a, b in zip(coarse[:-1], coarse[1:], strict=True)]
            if rounds == 0:
                mids += [lo, hi]
            mids = [m for m in mids if not self.is_known(self.clamp(m))]
            if not mids or len(mids) > self.frames_left - 4:
                break
            rounds += 1
            self.details["densified"] = rounds
            yield mids
            yield from self._retake_unusable(mids)
            coarse = sorted(set(coarse) | {self.clamp(m) for m in mids})
            rising = self._rising() or self._fine_rising()
        usable = int(self.points()[0].size)
        if usable < 3:
            return self.fail(too_few_reason(usable, self.frames),
                             code=FailureReason.FLAT_CURVE.value, **self.details)
        if not rising:
            return self.fail(self._flat_sentence(), code=FailureReason.FLAT_CURVE.value,
                             **self.details)
        cands = self._candidates()
        self.details["candidates_um"] = [float(z) for z, _ in cands]
        refined: list[Refined] = []
        for k, (z_c, _) in enumerate(cands):
            others = [z for j, (z, _) in enumerate(cands) if j != k]
            try:
                refined.append((yield from self._refine(z_c, cell, others)))
            except FrameBudgetExhausted:
                if refined and any(r.peak is not None for r in refined):
                    self.details["budget_stopped_candidates"] = True
                    break
                raise
        # A second plane close to the first can hide in its capture curve: a capture
        # sample far above its mirror image across the found peak points at it.
        found = [r.peak for r in refined if r.peak is not None]
        if found:
            main = max(found, key=lambda p: p.height)
            known = [p.z_um for p in found]
            for z_c in self._asymmetry_candidates(main.z_um, known)[:2]:
                try:
                    refined.append((yield from self._refine_rival(z_c, main.z_um, cell)))
                except FrameBudgetExhausted:
                    self.details["budget_stopped_candidates"] = True
                    break
        if self.rival_check == "full":
            refined = yield from self._full_rival_check(refined, cell)
        if not space.planes_um:
            refined = yield from self._follow_capture(refined, cell)
        refined = yield from self._confirm_dips(refined, cell)
        refined = yield from self._model_check(refined, cell)
        refined = yield from self._inversion_check(refined)
        if "contrast_inversion" in self.details:
            # The inverted plane's centre moved: what is its flank from there (a capture
            # candidate's unbracketed top) meets the dip test again.
            refined = yield from self._confirm_dips(refined, cell)
        return self._verdict(refined, reference=space.reference_z_um)

    def _model_check(self, refined: list[Refined], cell: float) -> Step:
        """With a defocus estimator, the model must itself place the found peak near focus.

        When the frames within DOF/2 of the strongest peak read, by the model's
        median distance, more than `MODEL_NEAR_DOF` DOF from focus, the peak may be
        a wiggle on the far tail of the learned score: both sides are measured every
        0.75 DOF from 1.25 DOF out to that distance (+0.75, at most
        `MODEL_CHECK_MAX_DOF`), skipping measured spots. When a frame there is
        sharper than the peak, the peak is dropped (a bump on that plane's flank)
        and the sharpest such frame on each side is refined as a candidate.
        """
        main = strongest(refined)
        if main is None or not self.estimates:
            return refined
        dof = self.space.dof
        z_m = main.peak.z_um
        dist = self._model_distance_dof(z_m)
        if dist is None or dist <= MODEL_NEAR_DOF:
            return refined
        self.details["model_distance_at_peak_dof"] = dist
        lo, hi = self.bounds()
        ks = np.arange(1.25, min(dist, MODEL_CHECK_MAX_DOF) + 0.76, 0.75)
        probes = [z_m + sign * k * dof for k in ks for sign in (-1.0, 1.0)]
        probes = [p for p in self._fresh([p for p in probes if lo <= p <= hi])
                  if not self._near(p, 0.35 * dof)]
        if probes:
            yield probes
        sharper = [z for z in probes if self.score_at(z) > main.peak.score]
        if not sharper:
            return refined
        # The found peak is a bump on the flank of a sharper plane, as the model said: it is
        # no plane of its own (kept, it would stand as that plane's "rival"). The sharpest
        # probe on each side is refined instead.
        self.details["model_check_dropped_um"] = z_m
        refined = [r for r in refined
                   if r.peak is None or abs(r.peak.z_um - z_m) > self.space.dof]
        others = [r.peak.z_um for r in refined if r.peak is not None]
        for side in (-1.0, 1.0):
            mine = [z for z in sharper if (z - z_m) * side > 0]
            if mine:
                z_best = max(mine, key=self.score_at)
                refined.append((yield from self._refine(z_best, cell, others)))
        return refined

    def _model_distance_dof(self, z_um: float) -> float | None:
        """Median of the model's distance estimates (DOF) of frames within DOF/2 of `z_um`."""
        near = [d for z, d in self._estimated("distance_dof")
                if abs(z - z_um) <= 0.5 * self.space.dof]
        return float(np.median(near)) if near else None

    def _follow_capture(self, refined: list[Refined], cell: float) -> Step:
        """The capture curve must peak where the fine peak is.

        If it still rises through the found peak (the focus measure's peak is a
        local one, e.g. a learned score's, and focus lies further out), walk up
        the capture curve in 2-DOF steps while it keeps rising (at most
        `CAPTURE_FOLLOW_FRAMES`), and refine a candidate where it tops out when
        that is ≥ 3 DOF away: two planes are then judged by the rival rule.
        """
        dof = self.space.dof
        main = strongest(refined)
        if main is None:
            return refined
        zm = main.peak.z_um
        z, c, noise = self._capture_points()
        near = np.abs(z - zm) <= 2.0 * dof
        if int(np.count_nonzero(near)) < 3:
            return refined
        zi, ci = z[near], c[near]
        slope = float(np.polyfit(zi - zm, ci, 1)[0])
        rel = abs(slope) * 2.0 * dof / max(float(np.max(ci)), 1e-300)
        if rel < CAPTURE_FOLLOW_SLOPE:
            return refined
        direction = 1.0 if slope > 0 else -1.0
        lo, hi = self.bounds()
        best_z = float(zi[np.argmax(ci)])
        best_c = float(np.max(ci))
        pos = float(zi.max() if direction > 0 else zi.min())
        for _ in range(CAPTURE_FOLLOW_FRAMES):
            pos += direction * 2.0 * dof
            if not lo <= pos <= hi or self._near(pos, 0.5 * dof):
                break
            yield self._fresh([pos])
            cp = self.capture_at(self.clamp(pos))
            if not math.isfinite(cp) or cp <= best_c:
                break
            best_z, best_c = self.clamp(pos), cp
        self.details["capture_followed_to_um"] = best_z
        if abs(best_z - zm) >= RIVAL_MIN_SEPARATION_DOF * dof:
            refined.append((yield from self._refine(best_z, cell, [zm])))
        return refined

    def _flat_sentence(self) -> str:
        z, c, _ = self._capture_points()
        if z.size == 0:
            return "no focus signal: no frame of the search could be scored"
        i = int(np.argmax(c))
        base = float(np.min(c))
        rise = 100.0 * (float(c[i]) / base - 1.0) if base > 0 else math.inf
        return (
            f"no focus signal: no frame over {self.space.lo_um:.1f}..{self.space.hi_um:.1f} µm "
            f"stood out of the noise (largest rise {rise:.0f} % at z = {float(z[i]):.2f} µm, "
            f"within what noise gives)"
        )

    def _candidates(self) -> list[tuple[float, float]]:
        """Candidate positions, best evidence first (≤ max_candidates).

        First the coarse frames whose fine score stands ≥ 6 noise sigmas above its
        baseline and tops its neighbours, sharpest first: the fine measure is the
        judge, and on some cameras the wide-capture curve rises away from focus
        (DemoCamera's beads grow brighter and wider with defocus, so its capture
        maximum lies ±15 µm from a plane the fine score already shows). Then the
        rising local maxima of the capture curve, highest first, that are neither
        within `RIVAL_MIN_SEPARATION_DOF` DOF of a fine candidate nor its
        immediate coarse neighbour (the same peak seen from its flank).
        """
        z, c, noise = self._capture_points()
        dof = self.space.dof
        zf, sf = self.points()
        fbase, fsigma = self._fine_noise()
        fine: list[tuple[float, float]] = []
        for i in range(zf.size):
            left = sf[i - 1] if i > 0 else -math.inf
            right = sf[i + 1] if i < zf.size - 1 else -math.inf
            if sf[i] >= left and sf[i] >= right and (sf[i] - fbase) / fsigma >= 6.0:
                fine.append((float(zf[i]), float(sf[i])))
        fine.sort(key=lambda t: -t[1])
        keep: list[tuple[float, float]] = []
        for zz, _ in fine:
            # Two neighbouring samples equally sharp are one peak between them.
            if all(abs(zz - k[0]) > RIVAL_MIN_SEPARATION_DOF * dof or self._sample_between(
                    zf, zz, k[0]) for k in keep):
                keep.append((zz, math.nan))
        fine_z = [k[0] for k in keep]
        maxima = []
        base, level = self._threshold(c, noise) if c.size else (0.0, math.inf)
        for i in range(z.size):
            if c[i] <= level:
                continue
            left = c[i - 1] if i > 0 else -math.inf
            right = c[i + 1] if i < z.size - 1 else -math.inf
            if c[i] >= left and c[i] >= right:
                maxima.append((float(z[i]), float(c[i]), i))
        maxima.sort(key=lambda t: -t[1])
        top = (maxima[0][1] - base) if maxima else 0.0
        kept_idx: list[int] = []
        for zz, cc, i in maxima:
            # Two neighbouring samples equally high are one peak between them, not two.
            if cc - base < self.candidate_ratio * top or any(abs(i - j) <= 1 for j in kept_idx):
                continue
            near_fine = any(
                abs(zz - fz) <= RIVAL_MIN_SEPARATION_DOF * dof
                or not self._sample_between(z, zz, fz)
                for fz in fine_z
            )
            if not near_fine:
                keep.append((zz, cc))
                kept_idx.append(i)
        return keep[: self.max_candidates]

    @staticmethod
    def _sample_between(z: np.ndarray, a: float, b: float) -> bool:
        """True when some position of `z` lies strictly between `a` and `b`."""
        lo, hi = min(a, b), max(a, b)
        return bool(np.count_nonzero((z > lo + 1e-9) & (z < hi - 1e-9)))
