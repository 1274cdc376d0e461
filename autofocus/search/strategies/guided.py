"""`guided`: find focus with few frames, using what the scorer and the optics tell.

Two paths, chosen by what the engine passes in (`configure`):

**With a defocus estimate** (a scorer that offers `DefocusEstimator`):
probe two frames one DOF apart around the start; if both say "no specimen"
fail with `no_specimen` before sweeping an empty field. Fuse every signed
focal-plane estimate so far by inverse-variance weighting, jump there and
bracket it with 3 frames (± `bracket_dof` DOF), fit the fine scores, and add
a frame at the fitted centre when no sample lies within DOF/4 of it. When the
fused estimate is uncertain (σ above `max_estimate_sigma_dof` DOF), lies
outside the range, or the bracket disagrees with it, the classical path
below takes over with every frame measured so far.

**Classical** (any scorer): the engine also measures each frame's
wide-capture score (`autofocus.search.frames.capture_score`), which rises
several DOF from focus where fine measures are still at their noise floor.

1. Coarse pass, one batch: ⌈range / h⌉ positions at the centres of equal
   cells, h = `step_factor` (2.4) × DOF × √(range / DOF) — from the optics, growing
   with the square root of the range. A frame that could not be scored is
   re-taken once a tenth of a DOF away.
2. Where the capture score rises by more than `min_rise` (relative, and at
   least 6 noise sigmas) above the lowest one, the curve is "rising". No
   rising sample: halve the spacing (up to 3 times, not below 5 DOF); still none:
   `flat_curve`.
3. Candidates: the rising local maxima (up to `max_candidates`), highest
   first; a candidate whose capture rise is below `candidate_ratio` of the
   best one's is not refined.
4. Each candidate is localised by bisecting the capture curve around it
   (vertex of a log-parabola) until a fine score rises, then bracketed and
   fitted with the fine scores (log-parabola through the top three, plus a
   frame at the centre when none lies within DOF/4 of it).
5. Verdict (`autofocus.search.trust`): the peak's half-width must be
   plausible for the DOF (`implausible_peak`), a candidate whose fine score
   never rises is dropped, two confirmed peaks ≥ 3 DOF apart with the
   smaller at least 12 % of the larger are rivals — the space's `rival`
   policy fails (`rival_peak`, naming both) or picks one. A peak at an end of
   the searched interval is followed up to `space.edge_extension_um` beyond
   it (inside the limits); still at the end: `edge_peak`.

`details` records the path taken, the coarse step, the candidates and peaks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from autofocus.search.reasons import FailureReason
from autofocus.search.strategies.base import SearchSpace
from autofocus.search.strategies.common import (
    SAME_Z_UM,
    FrameBudgetExhausted,
    Search,
    SearchStrategy,
    Step,
    edge_reason,
    jsonable,
    too_few_reason,
)
from autofocus.search.strategies.peakfit import (
    fit_best_model,
    gaussian,
    level_crossings,
    noise_sigma,
    r_squared,
)
from autofocus.search.trust import (
    MIN_HWHM_DOF,
    RIVAL_MIN_RATIO,
    RIVAL_MIN_SEPARATION_DOF,
    Peak,
    choose,
    peak_confidence,
    rival_sentence,
    rivals,
    width_plausible,
)

LN2 = math.log(2.0)
# A capture sample this many times higher (above baseline) than its mirror image across
# the found peak suggests a second plane on its side.
ASYMMETRY_RATIO = 1.4
# A fine score this many noise sigmas above its baseline is bracketed without waiting
# for the capture curve to agree.
STRONG_FINE_SNR = 30.0
# The capture curve rising through a found peak by more than this (relative, over
# 2 DOF) is followed, at most this many frames.
CAPTURE_FOLLOW_SLOPE = 0.3
CAPTURE_FOLLOW_FRAMES = 4
# Both probe frames must be at least this likely empty before the search stops with
# `no_specimen` (a far-defocused sparse field can look empty to the model).
NO_SPECIMEN_P = 0.97
# A gap next to the top wider than this many bracket spacings is filled before a fit.
FILL_GAP = 1.4
# A peak whose neighbours stay above this fraction of its height is flat-topped.
FLAT_TOP_LEVEL = 0.9
# Frames spent looking for such a second plane.
RIVAL_PROBES = 4
# With nothing rising, the coarse spacing is halved at most this many times, and no
# further once the gaps are this many DOF.
MAX_DENSIFY_ROUNDS = 3
DENSIFY_MIN_GAP_DOF = 5.0
# A range up to this many DOF is sampled every 2 DOF at least.
SHORT_RANGE_FINE_DOF = 16.0
# A recorded stack shorter than this many DOF is swept every other plane.
SHORT_RANGE_DOF = 6.0
# Without known optics (DOF guessed as 4 × tolerance) the width rule is this much laxer.
UNKNOWN_OPTICS_WIDTH_FACTOR = 0.5


@dataclass
class _Refined:
    """A candidate after refinement: its peak (None when the fine score never rose)."""

    peak: Peak | None
    spacing_dof: float
    r2: float | None
    snr: float
    at_edge: bool
    note: str = ""
    width_unresolved: bool = False  # recorded planes too far apart to measure the width


_NO_RISE = _Refined(None, math.inf, None, 0.0, False, "no fine rise")


def _strongest(refined: list[_Refined]) -> _Refined | None:
    """The refined candidate with the highest fine peak, or None when none has a peak."""
    found = [r for r in refined if r.peak is not None]
    return max(found, key=lambda r: r.peak.height) if found else None  # type: ignore[union-attr]


def coarse_step_um(range_um: float, dof_um: float, factor: float = 1.0) -> float:
    """The coarse spacing (µm) for a range: factor × DOF × √(range / DOF), within [2 DOF, range/2].

    Grows with the square root of the range: a wider range costs more frames,
    but fewer per µm.
    """
    h = factor * dof_um * math.sqrt(max(range_um / dof_um, 1.0))
    return float(min(max(h, 2.0 * dof_um), max(range_um / 2.0, 1e-9)))


def log_parabola(z: np.ndarray, s: np.ndarray) -> tuple[float, float] | None:
    """(vertex, half-width at half maximum) of a Gaussian through 3+ positive points, or None.

    Fits a parabola to log(s); None when a score is ≤ 0 or it does not open
    downwards.
    """
    if z.size < 3 or np.any(s <= 0) or not np.all(np.isfinite(s)):
        return None
    zc = float(z.mean())
    scale = float(z.max() - z.min()) or 1.0
    u = (z - zc) / scale
    try:
        c2, c1, _ = np.polyfit(u, np.log(s), 2)
    except (np.linalg.LinAlgError, ValueError):
        return None
    if not c2 < 0:
        return None
    v = zc - c1 / (2.0 * c2) * scale
    hwhm = math.sqrt(LN2 / -c2) * scale
    return float(v), float(hwhm)


class Guided(SearchStrategy):
    """Few-frame focus search: estimate-guided when the scorer can, capture-guided otherwise.

    Options: `step_factor` (2.4) scales the coarse step; `min_rise` (0.5) the
    relative capture rise that counts as "rising"; `max_candidates` (3);
    `candidate_ratio` (0.1); `bracket_dof` (0.7) the half-spacing of the fine
    bracket in DOF; `max_estimate_sigma_dof` (1.0). See the module docstring.
    """

    name = "guided"
    wants_capture = True

    def __init__(
        self,
        space: SearchSpace,
        *,
        step_factor: float = 2.4,
        min_rise: float = 0.5,
        max_candidates: int = 3,
        candidate_ratio: float = 0.1,
        bracket_dof: float = 0.7,
        max_estimate_sigma_dof: float = 1.0,
        centre_probe: bool = True,
    ) -> None:
        super().__init__(space)
        if not step_factor > 0:
            raise ValueError(f"step_factor must be positive, got {step_factor}")
        if not min_rise > 0:
            raise ValueError(f"min_rise must be positive, got {min_rise}")
        if max_candidates < 1:
            raise ValueError(f"max_candidates must be ≥ 1, got {max_candidates}")
        if not bracket_dof > 0:
            raise ValueError(f"bracket_dof must be positive, got {bracket_dof}")
        self.step_factor = float(step_factor)
        self.min_rise = float(min_rise)
        self.max_candidates = int(max_candidates)
        self.candidate_ratio = float(candidate_ratio)
        self.bracket_dof = float(bracket_dof)
        self.max_estimate_sigma_dof = float(max_estimate_sigma_dof)
        self.centre_probe = bool(centre_probe)
        self.rival_check = space.rival_check  # checked by SearchSpace
        self.estimates_offered = False
        self._excluded: list[float] = []  # positions whose frames proved unusable
        self._near_focus_only = False  # estimate path: every frame is close to focus
        self._span: tuple[float, float] | None = None  # where the current candidate may lie
        self.details: dict[str, Any] = {}

    def configure(self, *, estimates: bool) -> None:
        """Tell the strategy whether the engine will pass defocus estimates (before `ask`)."""
        self.estimates_offered = bool(estimates)

    def bounds(self) -> tuple[float, float]:
        """The searched interval widened by the space's edge extension (inside the limits)."""
        return self.space.ext_lo_um, self.space.ext_hi_um

    # -- the search ------------------------------------------------------------------------
    def _search(self) -> Search:
        dof = self.space.dof
        self.details = {"dof_um": dof}
        if self.estimates_offered:
            result = yield from self._estimate_path()
            if result is not None:
                return result
        return (yield from self._classical_path())

    # -- estimate path ------------------------------------------------------------------------
    def _estimate_path(self) -> Step:
        """Probe, jump, bracket, fit; returns an outcome, or None to fall back."""
        space, dof = self.space, self.space.dof
        z0 = min(max(space.center_z_um, space.lo_um + 0.5 * dof), space.hi_um - 0.5 * dof)
        probe = [z0 - 0.5 * dof, z0 + 0.5 * dof]
        yield probe
        self.details["path"] = "estimate"
        no_spec = self._no_specimen_p()
        if no_spec is not None and no_spec >= NO_SPECIMEN_P:
            return self.fail(
                f"no usable specimen: the defocus estimate gives {100 * no_spec:.0f} % probability "
                "that the field is blank, empty, saturated or noise only",
                code=FailureReason.NO_SPECIMEN.value,
                **self.details,
            )
        fused = self._fused_focus()
        if fused is None:
            self.details["fallback"] = "no signed estimate"
            return None
        zf, sig = fused
        self.details["fused_um"] = [zf, sig]
        if sig > self.max_estimate_sigma_dof * dof:
            self.details["fallback"] = f"estimate too uncertain (σ {sig:.2f} µm)"
            return None
        if not space.ext_lo_um <= zf <= space.ext_hi_um:
            self.details["fallback"] = f"estimate {zf:.2f} µm outside the range"
            return None
        b = self.bracket_dof * dof
        yield self._fresh([zf - b, zf, zf + b])
        # Every frame here is near focus: the fine baseline is not seen, so the fit
        # takes half the lowest score as baseline (a wider, never narrower, peak).
        self._near_focus_only = True
        window = 3.0 * dof
        z_top = self._fine_peak(zf, window, final=False)
        got = None if z_top is None else (yield from self._bracket(z_top, zf, window))
        self._near_focus_only = False
        if got is None or got.peak is None:
            self.details["fallback"] = "no peak where the estimate pointed"
            return None
        refused = self._fused_focus()
        zf2, sig2 = refused if refused is not None else (zf, sig)
        self.details["fused_final_um"] = [zf2, sig2]
        if abs(got.peak.z_um - zf2) > 3.0 * max(sig2, 0.5 * dof):
            self.details["fallback"] = "the bracket disagrees with the estimate"
            return None
        return self._verdict([got], reference=zf2)

    def _no_specimen_p(self) -> float | None:
        ps = []
        for _, est in self.estimates:
            p = np.asarray(getattr(est, "no_specimen_p", []), dtype=float)
            ps.extend(p[np.isfinite(p)].tolist())
        return float(min(ps)) if ps else None

    def _fused_focus(self) -> tuple[float, float] | None:
        """Inverse-variance fusion of every signed focal-plane estimate so far (µm, σ µm)."""
        zs, ws = [], []
        for _, est in self.estimates:
            z, sig = getattr(est, "focus_z_um", None), getattr(est, "focus_sigma_um", None)
            if z is None or sig is None or not (math.isfinite(z) and math.isfinite(sig)):
                continue
            sig = max(float(sig), 1e-6)
            zs.append(float(z))
            ws.append(1.0 / sig**2)
        if not zs:
            return None
        w = np.asarray(ws)
        z = float(np.sum(w * np.asarray(zs)) / np.sum(w))
        sig = float(1.0 / math.sqrt(np.sum(w)))
        # Estimates that disagree beyond their errors widen the fused uncertainty.
        if len(zs) >= 2:
            chi2 = float(np.sum(w * (np.asarray(zs) - z) ** 2)) / (len(zs) - 1)
            sig *= math.sqrt(max(chi2, 1.0))
        return z, sig

    # -- classical path -----------------------------------------------------------------------
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
        cands = self._candidates(rising)
        self.details["candidates_um"] = [float(z) for z, _ in cands]
        refined: list[_Refined] = []
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
        return self._verdict(refined, reference=space.reference_z_um)

    def _follow_capture(self, refined: list[_Refined], cell: float) -> Step:
        """The capture curve must peak where the fine peak is.

        If it still rises through the found peak (the focus measure's peak is a
        local one, e.g. a learned score's, and focus lies further out), walk up
        the capture curve in 2-DOF steps while it keeps rising (at most
        `CAPTURE_FOLLOW_FRAMES`), and refine a candidate where it tops out when
        that is ≥ 3 DOF away: two planes are then judged by the rival rule.
        """
        dof = self.space.dof
        main = _strongest(refined)
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

    def _full_rival_check(self, refined: list[_Refined], cell: float) -> Step:
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
        main = _strongest(refined)
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
        room = self.frames_left - 2
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
                _, rival_list = rivals([r.peak for r in refined if r.peak is not None], dof)
                if rival_list:
                    self.details["rival_check"].update(
                        complete=False, note="stopped early: a rival plane was found",
                    )
                    return refined
                peaks_z = [r.peak.z_um for r in refined if r.peak is not None]
        return refined

    def _bracket_rising(
        self, refined: list[_Refined], peaks_z: list[float], step: float
    ) -> Step:
        """Bracket every sample ≥ 6 noise sigmas up that tops its neighbours and lies
        more than 3 DOF from a known peak; returns (refined, peak positions)."""
        dof = self.space.dof
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
                res = yield from self._bracket(zi, zi, max(1.5 * dof, 0.5 * step))
                if res.peak is not None:
                    refined.append(res)
                    peaks_z = [*peaks_z, res.peak.z_um]
        return refined, peaks_z

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

    def _confirm_dips(self, refined: list[_Refined], cell: float) -> Step:
        """Two peaks are two planes only if the curve dips between them.

        For each rival pair without a measured sample clearly below both in
        between, the midpoint is measured: if it is sharper than the lower peak
        there is no dip and the lower one is a flank of the same plane (dropped);
        if it is sharper than both, the plane lies between them and is refined
        there. Returns the surviving refinements.
        """
        dof = self.space.dof
        for _ in range(3):
            peaks = [r.peak for r in refined if r.peak is not None]
            best, rival_list = rivals(peaks, dof)
            if best is None or not rival_list:
                return refined
            z, s = self.points()
            todo: list[tuple[float, Peak, Peak]] = []
            for q in rival_list:
                a, b = sorted((best.z_um, q.z_um))
                inside = s[(z > a + 1e-9) & (z < b - 1e-9)]
                dip = min(best.score, q.score) - 0.3 * min(best.height, q.height)
                if inside.size == 0 or float(inside.min()) > dip:
                    mid = self._fresh([0.5 * (a + b)])[0]
                    if not self.is_known(mid):
                        todo.append((mid, best, q))
            if not todo:
                return refined
            yield [m for m, _, _ in todo]
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
            excess = dict(pts)
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
            del excess
            if self._near(mid, 0.5 * dof):
                break
            yield self._fresh([mid])
        z_top = self._fine_peak(centre, window, final=False)
        if z_top is not None and abs(z_top - z_m) >= 2.5 * dof:
            return (yield from self._bracket(z_top, centre, window))
        return _Refined(None, math.inf, None, 0.0, False, "no second plane")

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

    def _retake_unusable(self, zs: list[float]) -> Step:
        """Re-take once, a tenth of a DOF away, every frame in `zs` that could not be scored."""
        redo = []
        for z in zs:
            zc = self.clamp(z)
            if not math.isfinite(self.score_at(zc)) or not math.isfinite(self.capture_at(zc)):
                self._excluded.append(zc)
                alt = self.clamp(zc + 0.1 * self.space.dof)
                if not self.is_known(alt):
                    redo.append(alt)
        if redo and len(redo) <= self.frames_left:
            self.details["retaken"] = self.details.get("retaken", 0) + len(redo)
            yield redo
        return None

    def _capture_points(self) -> tuple[np.ndarray, np.ndarray, float]:
        """(z, capture) of usable frames sorted by z, and their typical relative noise."""
        pts = [(z, c, n) for z, c, n in self._capture if math.isfinite(c)]
        if not pts:
            return np.array([]), np.array([]), math.nan
        pts.sort()
        z = np.array([p[0] for p in pts])
        c = np.array([p[1] for p in pts])
        noise = [p[2] for p in pts if math.isfinite(p[2])]
        return z, c, (float(np.median(noise)) if noise else math.nan)

    def _threshold(self, c: np.ndarray, rel_noise: float) -> tuple[float, float]:
        """(baseline, rising level) of the capture curve."""
        base = float(np.min(c))
        rel = self.min_rise
        if math.isfinite(rel_noise):
            rel = max(min(rel, 8.0 * rel_noise), 6.0 * rel_noise, 0.05)
        return base, base * (1.0 + rel) if base > 0 else base + rel * abs(float(np.max(c)))

    def _rising(self) -> list[tuple[float, float]]:
        z, c, noise = self._capture_points()
        if z.size < 3:
            return []
        base, level = self._threshold(c, noise)
        return [(float(zz), float(cc)) for zz, cc in zip(z, c, strict=True) if cc > level]

    def _fine_rising(self) -> list[tuple[float, float]]:
        """Samples whose fine score stands ≥ 6 noise sigmas above the fine baseline."""
        z, s = self.points()
        if z.size < 3:
            return []
        base, sigma = self._fine_noise()
        return [
            (float(a), float(b)) for a, b in zip(z, s, strict=True) if (b - base) / sigma >= 6.0
        ]

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

    def _candidates(self, rising: list[tuple[float, float]]) -> list[tuple[float, float]]:
        """Rising local maxima of the capture curve, highest first (≤ max_candidates)."""
        z, c, noise = self._capture_points()
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
        keep: list[tuple[float, float]] = []
        kept_idx: list[int] = []
        for zz, cc, i in maxima:
            # Two neighbouring samples equally high are one peak between them, not two.
            if cc - base >= self.candidate_ratio * top and all(abs(i - j) > 1 for j in kept_idx):
                keep.append((zz, cc))
                kept_idx.append(i)
        # A coarse frame whose fine score stands out is a candidate too: a plane can sit
        # close to one coarse sample and still leave the capture curve's maximum elsewhere.
        zf, sf = self.points()
        fbase, fsigma = self._fine_noise()
        dof = self.space.dof
        for i in range(zf.size):
            left = sf[i - 1] if i > 0 else -math.inf
            right = sf[i + 1] if i < zf.size - 1 else -math.inf
            if sf[i] >= left and sf[i] >= right and (sf[i] - fbase) / fsigma >= 6.0:
                # Far from every candidate, and with a sample between them (not the
                # other flank of the same peak).
                far = all(abs(zf[i] - k[0]) > RIVAL_MIN_SEPARATION_DOF * dof for k in keep)
                apart = all(
                    int(np.count_nonzero((zf > min(zf[i], k[0]) + 1e-9)
                                         & (zf < max(zf[i], k[0]) - 1e-9))) > 0
                    for k in keep
                )
                if far and apart:
                    keep.append((float(zf[i]), math.nan))
        return keep[: self.max_candidates]

    # -- refinement ---------------------------------------------------------------------------
    def _refine(self, z_c: float, cell: float, others: list[float]) -> Step:
        """Localise one candidate with capture bisection, then bracket and fit the fine peak.

        Everything stays within a window around `z_c` that ends halfway to the
        other candidates, so two planes are refined separately.
        """
        dof = self.space.dof
        window = max(cell, 3.0 * dof)
        if others:
            window = max(min(window, 0.5 * min(abs(o - z_c) for o in others)), 1.5 * dof)
        below = [0.5 * (o + z_c) for o in others if o < z_c]
        above = [0.5 * (o + z_c) for o in others if o > z_c]
        self._span = (max(below) if below else -math.inf, min(above) if above else math.inf)
        try:
            return (yield from self._refine_in(z_c, window))
        finally:
            self._span = None

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
        return _Refined(None, math.inf, None, 0.0, False, "no fine rise")

    def _bracket(self, z_top: float, z_c: float, window: float) -> Step:
        """Bracket the risen fine score at `z_top` and fit it; follow the peak if it walks."""
        dof = self.space.dof
        b = self.bracket_dof * dof
        lo, hi = self.bounds()
        probed_centre = False
        walked = 0
        walk_dir = 0
        last_top: float | None = None
        res: _Refined | None = None
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
                return _NO_RISE
            z, s = self._fine_points(centre, window)
            i = int(np.argmax(s))
            top = float(z[i])
            if self._span is not None:
                centre = top
            below = z[z < top]
            above = z[z > top]
            asks = []
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
            asks = [p for _, p in wanted]
            asks = [p for p in asks if not self._near(p, 0.3 * dof)]
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
        return res if res is not None else _NO_RISE

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
            return _Refined(None, math.inf, None, 0.0, False, "no fine rise")
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
        return _Refined(
            Peak(top, float(s[i]), height, hwhm), spacing, r2, snr, at_edge,
            "plane", width_unresolved=unresolved,
        )

    def _near(self, z_um: float, dist_um: float) -> bool:
        """True when a frame that could be scored lies within `dist_um` of `z_um`."""
        zc = self.clamp(z_um)
        return any(abs(z - zc) < dist_um for z, s in self.history if math.isfinite(s))

    def _fresh(self, zs: list[float]) -> list[float]:
        """`zs`, each moved a little (+0.15 DOF steps) off a position whose frame was unusable.

        The base class answers a known position from memory, so a position whose
        frame could not be scored (a corrupted transfer) is re-taken next to it.
        """
        out = []
        for z in zs:
            p = self.clamp(z)
            for k in range(1, 4):
                if not (self.is_known(p) and not math.isfinite(self.score_at(p))):
                    break
                p = self.clamp(z + 0.15 * k * self.space.dof)
            out.append(p)
        return out

    def _capture_vertex(self, centre: float, window: float) -> float | None:
        z, c, _ = self._capture_points()
        keep = np.abs(z - centre) <= window * 1.01
        z, c = z[keep], c[keep]
        if z.size < 3:
            return None
        i = int(np.argmax(c))
        j = min(max(i, 1), z.size - 2)
        got = log_parabola(z[j - 1 : j + 2], c[j - 1 : j + 2] - 0.0)
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
        gap = float(z[1] - z[0]) if z.size > 1 else 0.5 * window
        if i in (0, z.size - 1) and z.size > 1:
            step = 0.5 * (float(z[1] - z[0]) if i == 0 else float(z[-1] - z[-2]))
            out = float(z[i]) + (-step if i == 0 else step)
            out = min(max(out, lo), hi)
            if abs(out - z[i]) > 0.5 * dof and not self._near(out, 0.5 * dof):
                return self.clamp(out)
        del gap
        v = self._capture_vertex(centre, window)
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
            lo, hi = self.bounds()
            for p in (z[i] - 0.5 * window, z[i] + 0.5 * window):
                if lo <= p <= hi and not self._near(p, 0.5 * dof):
                    return self.clamp(p)
            return None
        options.sort(key=lambda t: -t[0])
        for _, mid, gap in options:
            if gap > 1.0 * dof and not self._near(mid, 0.5 * dof):
                return self.clamp(mid)
        return None

    def _fine_points(self, centre: float, window: float) -> tuple[np.ndarray, np.ndarray]:
        z, s = self.points()
        keep = np.abs(z - centre) <= window * 1.01
        if self._span is not None:  # the candidate's share of the range (see `_refine`)
            keep &= (z >= self._span[0] - 1e-9) & (z <= self._span[1] + 1e-9)
        for x in self._excluded:
            keep &= np.abs(z - x) > SAME_Z_UM
        return z[keep], s[keep]

    def _fine_noise(self) -> tuple[float, float]:
        """(baseline, noise sigma) of the fine scores, from the lowest third of the samples.

        Fine measures sit on their noise floor a few DOF from any plane, so the
        lowest samples are baseline; the noise is never taken below 1 % of the
        baseline (a handful of samples can agree by chance).
        """
        _, s = self.points()
        if s.size == 0:
            return 0.0, math.inf
        low = np.sort(s)[: max(3, s.size // 3)]
        base = float(np.median(low))
        mad = float(np.median(np.abs(low - base))) * 1.4826
        # On a smooth curve the lowest samples spread by the curve's slope, not by noise;
        # the scatter about straight lines through neighbours is the noise then.
        z, _ = self.points()
        if z.size >= 5:
            mad = min(mad, noise_sigma(z, s))
        return base, max(mad, 0.01 * abs(base), 1e-12)

    def _fine_snr(self, z_um: float) -> float:
        """How many noise sigmas the fine score at `z_um` stands above the fine baseline."""
        base, sigma = self._fine_noise()
        s = self.score_at(self.clamp(z_um))
        return (s - base) / sigma if math.isfinite(s) else 0.0

    def _fine_peak(self, centre: float, window: float, *, final: bool = True) -> Any:
        """With final=False: the z of a fine score risen above the noise near `centre`, or None.

        With final=True: a `_Refined` from the top three fine samples around the
        best one (None when nothing rose).
        """
        dof = self.space.dof
        z, s = self._fine_points(centre, window)
        if z.size == 0:
            return None
        base, sigma = self._fine_noise()
        if self._near_focus_only:
            # No frame far from focus: no baseline and no noise floor were measured.
            base = 0.5 * float(np.min(s))
            sigma = max(0.02 * float(np.max(np.abs(s))), 1e-12)
        i = int(np.argmax(s))
        height = float(s[i]) - base
        snr = height / sigma
        if snr < 6.0 or height <= 0:
            return None
        if not final:
            return float(z[i])
        # The top and every sample around it (its nearest neighbours may be far; the
        # bracket fills gaps wider than the bracket spacing before it accepts a fit).
        zn, sn = z, s
        k = int(np.argmax(sn))
        at_edge = k == 0 or k == zn.size - 1
        if zn.size < 3 or at_edge:
            gap = math.inf
            return _Refined(
                Peak(float(z[i]), float(s[i]), height, None), gap, None, snr, at_edge,
                "top not bracketed",
            )
        trio_z, trio_s = zn[k - 1 : k + 2], sn[k - 1 : k + 2]
        level = base + FLAT_TOP_LEVEL * height
        if trio_s[0] >= level or trio_s[2] >= level:
            # Flat top: the midpoint of where the curve crosses the level on both sides.
            left, right = level_crossings(zn, sn, k, level, float(sn[k]))
            if left is not None and right is not None:
                v = 0.5 * (left + right)
                hwhm_est = max(0.5 * (right - left), MIN_HWHM_DOF * dof)
                around = zn[(zn >= left - 2 * dof) & (zn <= right + 2 * dof)]
                spacing = float(np.max(np.diff(around), initial=0.0)) / dof
                return _Refined(Peak(v, float(sn[k]), height, hwhm_est), min(spacing, 1.0),
                                None, snr, False, "flat top")
        lifted = trio_s - base + 0.05 * height
        got = log_parabola(trio_z, np.maximum(lifted, 1e-12 * height))
        spacing = float(max(trio_z[1] - trio_z[0], trio_z[2] - trio_z[1])) / dof
        if got is None:
            return _Refined(
                Peak(float(zn[k]), float(sn[k]), height, None), spacing, None, snr, False,
                "no peak shape",
            )
        v, hwhm = got
        v = float(min(max(v, trio_z[0]), trio_z[2]))
        # R² of the log-parabola on the top points and their neighbours.
        r2 = self._gauss_r2(zn, sn, base, v, hwhm, height)
        # With enough samples on the peak, a peak model with its own baseline (Lorentzian,
        # Gaussian or flat-top) beats three points: flat tops and long tails bias those.
        model = self._model_fit(z, s, v, hwhm)
        if model is not None:
            v, hwhm, r2 = model
        return _Refined(Peak(v, float(sn[k]), height, hwhm), spacing, r2, snr, False)

    def _model_fit(
        self, z: np.ndarray, s: np.ndarray, v: float, hwhm: float
    ) -> tuple[float, float, float] | None:
        """(centre, HWHM, R²) of the best peak model on the ≥ 6 samples within 3 HWHM of `v`,
        when it fits well (R² ≥ 0.9), is precise (σ ≤ DOF/8) and stays among them."""
        dof = self.space.dof
        near = np.abs(z - v) <= 3.0 * max(hwhm, 0.5 * dof)
        if int(np.count_nonzero(near)) < 6:
            return None
        zz, ss = z[near], s[near]
        fit = fit_best_model(zz, ss, z_guess_um=v, w_guess_um=hwhm)
        if fit is None or fit.r2 < 0.9 or fit.z_sigma_um is None:
            return None
        if not (fit.z_sigma_um <= dof / 8 and zz.min() <= fit.z_um <= zz.max()):
            return None
        w = float(fit.params.get("w_um", hwhm))
        return float(fit.z_um), w, float(fit.r2)

    @staticmethod
    def _gauss_r2(z: np.ndarray, s: np.ndarray, base: float, v: float, w: float,
                  height: float) -> float | None:
        if z.size < 4 or w <= 0 or float(np.ptp(s)) == 0.0:
            return None  # a flat curve has no fit quality (None, not 0: peak_confidence)
        return r_squared(s, gaussian(z, base, height, v, w))

    def _centre_probe(self, res: _Refined) -> float | None:
        """A frame at the fitted centre when no sample lies within DOF/4 of it."""
        assert res.peak is not None
        dof = self.space.dof
        p = self.clamp(res.peak.z_um)
        if not self.centre_probe or self._near(p, 0.25 * dof) or self.frames_left < 2:
            return None
        return p

    # -- verdict ------------------------------------------------------------------------------
    def _verdict(self, refined: list[_Refined], *, reference: float | None) -> Any:
        space, dof = self.space, self.space.dof
        found: list[_Refined] = []
        for r in refined:  # two candidates can lead to the same plane: keep it once
            if r.peak is not None and all(
                abs(r.peak.z_um - f.peak.z_um) > dof for f in found if f.peak is not None
            ):
                found.append(r)
        self.details["peaks"] = [r.peak.to_dict() for r in found if r.peak is not None]
        if not found:
            return self.fail(
                "no focus signal: the wide-capture curve rose but no frame near it was sharper "
                "than the noise of the focus measure",
                code=FailureReason.FLAT_CURVE.value,
                **self.details,
            )
        peaks = [r.peak for r in found if r.peak is not None]
        best, rival_list = rivals(peaks, dof)
        assert best is not None
        if reference is None:
            reference = space.center_z_um
        chosen_peak = choose(best, rival_list, space.rival, reference_z_um=reference)
        if rival_list:
            self.details["rivals"] = [p.to_dict() for p in [best, *rival_list]]
        if chosen_peak is None:
            out = self.fail(rival_sentence([best, *rival_list]),
                            code=FailureReason.RIVAL_PEAK.value, **self.details)
            out.details["candidates"] = jsonable([p.to_dict() for p in [best, *rival_list]])
            return out
        res = next(r for r in found if r.peak is chosen_peak)
        p = chosen_peak
        lo, hi = space.lo_um, space.hi_um
        ext_lo, ext_hi = space.ext_lo_um, space.ext_hi_um
        if res.width_unresolved and not res.at_edge:
            pass  # recorded planes too far apart to measure a width: the plane is the answer
        elif res.at_edge or p.hwhm_um is None:
            z_edge = p.z_um
            if z_edge <= ext_lo + 0.5 * dof or z_edge >= ext_hi - 0.5 * dof:
                return self.fail(edge_reason(z_edge), code=FailureReason.EDGE_PEAK.value,
                                 **self.details)
            return self.fail(
                f"not a focal plane: the sharpest frame at z = {p.z_um:.2f} µm has no measured "
                "peak around it (its neighbours could not bracket it)",
                code=FailureReason.IMPLAUSIBLE_PEAK.value,
                **self.details,
            )
        width_dof = dof if space.dof_um else UNKNOWN_OPTICS_WIDTH_FACTOR * dof
        if not res.width_unresolved and not width_plausible(p.hwhm_um, width_dof):
            return self.fail(
                f"not a focal plane: the peak at z = {p.z_um:.2f} µm is {2 * p.hwhm_um:.2f} µm "
                f"wide (full width at half maximum) where the depth of field is {dof:.2f} µm",
                code=FailureReason.IMPLAUSIBLE_PEAK.value,
                **self.details,
            )
        if not (ext_lo < p.z_um < ext_hi):
            return self.fail(edge_reason(p.z_um), code=FailureReason.EDGE_PEAK.value,
                             **self.details)
        self.details["extended_beyond_range"] = not (lo <= p.z_um <= hi)
        conf = peak_confidence(
            res.snr, r2=res.r2, spacing_dof=res.spacing_dof, width_ok=True
        )
        best_z = p.z_um
        if space.planes_um:
            best_z = self.clamp(best_z)
        return self.finish(
            success=True,
            best_z_um=best_z,
            best_score=p.score,
            details={**self.details, "snr": res.snr, "r2": res.r2,
                     "spacing_dof": res.spacing_dof, "hwhm_um": p.hwhm_um},
            confidence_value=conf,
        )
