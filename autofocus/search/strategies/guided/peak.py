"""The fine peak of a guided search's candidate, fitted from the samples around it.

`PeakFit._fine_peak` turns the fine scores near a candidate into a `Refined`
(log-parabola through the top three, a flat top's midpoint, or a peak model
with its own baseline when enough samples lie on the peak);
`_centre_probe` asks for a frame at the fitted centre when none lies near it.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from autofocus.search.strategies.guided.samples import GuidedSamples
from autofocus.search.strategies.guided.shape import Refined, log_parabola
from autofocus.search.strategies.peakfit import (
    fit_best_model,
    gaussian,
    level_crossings,
    r_squared,
)
from autofocus.search.trust import MIN_HWHM_DOF, Peak

# A peak whose neighbours stay above this fraction of its height is flat-topped.
FLAT_TOP_LEVEL = 0.9


class PeakFit(GuidedSamples):
    """Fits the fine peak around a candidate from the samples measured so far."""

    def _fine_peak(self, centre: float, window: float, *, final: bool = True) -> Any:
        """With final=False: the z of a fine score risen above the noise near `centre`, or None.

        With final=True: a `Refined` from the top three fine samples around the
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
        at_edge = i == 0 or i == z.size - 1
        if z.size < 3 or at_edge:
            return Refined(
                Peak(float(z[i]), float(s[i]), height, None), math.inf, None, snr, at_edge,
                "top not bracketed",
            )
        trio_z, trio_s = z[i - 1 : i + 2], s[i - 1 : i + 2]
        level = base + FLAT_TOP_LEVEL * height
        if trio_s[0] >= level or trio_s[2] >= level:
            # Flat top: the midpoint of where the curve crosses the level on both sides.
            left, right = level_crossings(z, s, i, level, float(s[i]))
            if left is not None and right is not None:
                v = 0.5 * (left + right)
                hwhm_est = max(0.5 * (right - left), MIN_HWHM_DOF * dof)
                around = z[(z >= left - 2 * dof) & (z <= right + 2 * dof)]
                spacing = float(np.max(np.diff(around), initial=0.0)) / dof
                return Refined(Peak(v, float(s[i]), height, hwhm_est), min(spacing, 1.0),
                                None, snr, False, "flat top")
        lifted = trio_s - base + 0.05 * height
        got = log_parabola(trio_z, np.maximum(lifted, 1e-12 * height))
        spacing = float(max(trio_z[1] - trio_z[0], trio_z[2] - trio_z[1])) / dof
        if got is None:
            return Refined(
                Peak(float(z[i]), float(s[i]), height, None), spacing, None, snr, False,
                "no peak shape",
            )
        v, hwhm = got
        v = float(min(max(v, trio_z[0]), trio_z[2]))
        # R² of the log-parabola on the top points and their neighbours.
        r2 = self._gauss_r2(z, s, base, v, hwhm, height)
        # With enough samples on the peak, a peak model with its own baseline (Lorentzian,
        # Gaussian or flat-top) beats three points: flat tops and long tails bias those.
        model = self._model_fit(z, s, v, hwhm)
        if model is not None:
            v, hwhm, r2 = model
        return Refined(Peak(v, float(s[i]), height, hwhm), spacing, r2, snr, False)

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

    def _centre_probe(self, res: Refined) -> float | None:
        """A frame at the fitted centre when no sample lies within DOF/4 of it."""
        assert res.peak is not None
        dof = self.space.dof
        p = self.clamp(res.peak.z_um)
        if not self.centre_probe or self._near(p, 0.25 * dof) or self.frames_left < 2:
            return None
        return p
