"""What the guided search has measured so far, seen the ways its steps need it.

`GuidedSamples` is the base of the guided strategy's parts: it declares the
state they share and answers questions about the frames measured so far —
the wide-capture curve (`_capture_points`, `_threshold`, `_rising`), the
fine scores and their noise floor (`_fine_points`, `_fine_noise`,
`_fine_rising`, `_fine_snr`), and where a next frame may go (`_near`,
`_fresh`, `_retake_unusable`). It asks for no frame itself except to retake
unusable ones.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from autofocus.search.strategies.common import SAME_Z_UM, SearchStrategy, Step
from autofocus.search.strategies.peakfit import noise_sigma
from autofocus.search.trust import Peak, rivals

# A frame that could not be scored is re-taken at most this many times.
RETAKE_ROUNDS = 3


class GuidedSamples(SearchStrategy):
    """The measured frames of a guided search: capture curve, fine scores, their noise.

    The attributes are set by `Guided.__init__` (the options) and by the
    search steps (the state).
    """

    # Options (see `Guided`).
    step_factor: float
    min_rise: float
    max_candidates: int
    candidate_ratio: float
    bracket_dof: float
    max_estimate_sigma_dof: float
    centre_probe: bool
    rival_check: str
    estimates_offered: bool
    # State of the search.
    _excluded: list[float]  # positions whose frames proved unusable
    _near_focus_only: bool  # estimate path: every frame is close to focus
    _span: tuple[float, float] | None  # where the current candidate may lie
    details: dict[str, Any]

    def bounds(self) -> tuple[float, float]:
        """The searched interval widened by the space's edge extension (inside the limits)."""
        return self.space.ext_lo_um, self.space.ext_hi_um

    def _estimated(self, name: str, fallback: str | None = None) -> list[tuple[float, float]]:
        """(z µm, value) of every frame's finite per-frame estimate `name` (a
        `DefocusEstimate` field such as `distance_dof`; `fallback` where an estimate lacks
        it), over all estimates so far; [] without a defocus estimator."""
        out = []
        for zs, est in self.estimates:
            values = getattr(est, name, None)
            if values is None and fallback is not None:
                values = getattr(est, fallback, None)
            if values is None:
                continue
            out += [(float(z), float(v)) for z, v in zip(zs, np.asarray(values, dtype=float),
                                                         strict=False) if math.isfinite(v)]
        return out

    def _retake_unusable(self, zs: list[float]) -> Step:
        """Re-take every frame in `zs` that could not be scored, a tenth of a DOF further away
        each time, up to `RETAKE_ROUNDS` times (corrupted transfers can come in runs)."""
        dof = self.space.dof
        todo = [(self.clamp(z), self.clamp(z)) for z in zs]  # (asked, last tried)
        for k in range(1, RETAKE_ROUNDS + 1):
            redo = []
            for z0, zc in todo:
                if math.isfinite(self.score_at(zc)) and math.isfinite(self.capture_at(zc)):
                    continue
                self._excluded.append(zc)
                alt = self.clamp(z0 + 0.1 * k * dof)
                if not self.is_known(alt):
                    redo.append((z0, alt))
            if not redo or len(redo) > self.frames_left:
                break
            self.details["retaken"] = self.details.get("retaken", 0) + len(redo)
            yield [alt for _, alt in redo]
            todo = redo
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
        z, s = self.points()
        if s.size == 0:
            return 0.0, math.inf
        low = np.sort(s)[: max(3, s.size // 3)]
        base = float(np.median(low))
        mad = float(np.median(np.abs(low - base))) * 1.4826
        # On a smooth curve the lowest samples spread by the curve's slope, not by noise;
        # the scatter about straight lines through neighbours is the noise then.
        if z.size >= 5:
            mad = min(mad, noise_sigma(z, s))
        return base, max(mad, 0.01 * abs(base), 1e-12)

    def _rivals(
        self, peaks: list[Peak], *, distinct: bool = False
    ) -> tuple[Peak | None, list[Peak]]:
        """`trust.rivals` of `peaks` at this search's DOF and measured fine-score noise."""
        return rivals(peaks, self.space.dof, distinct=distinct, noise_sigma=self._fine_noise()[1])

    def _fine_snr(self, z_um: float) -> float:
        """How many noise sigmas the fine score at `z_um` stands above the fine baseline."""
        base, sigma = self._fine_noise()
        s = self.score_at(self.clamp(z_um))
        return (s - base) / sigma if math.isfinite(s) else 0.0
