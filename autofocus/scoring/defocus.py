"""Signed focus from unsigned per-frame distances: the V-fit with inverse-variance weights.

A learned scorer estimates, per frame, the distance |z − z_focus| to focus (in
depth-of-field units) with a one-sigma uncertainty, but not its sign: a frame
1 DOF above focus looks like one 1 DOF below. Frames at two or more distinct
stage positions break the tie: the focal plane `zf` is the one that makes the
"V" |z_i − zf| closest to the measured distances D_i, each weighted by 1/σ_i².
The cost is piecewise quadratic in zf (the sign of z_i − zf is fixed between
consecutive z), so the minimum is found exactly by solving each piece.

Pure numpy; no model here, so strategies and tests can use it on any numbers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class FocusFit:
    """Result of `fit_focus`: focal plane (µm), its one-sigma uncertainty (µm), and the fit.

    `focus_z_um`/`focus_sigma_um` are None when fewer than two usable frames
    at distinct z were given. `chi2` is the weighted residual sum of squares
    of the best fit; `rival_z_um` the best solution on the other side of the
    frames (None when there is none), whose cost is `rival_chi2`.
    """

    focus_z_um: float | None
    focus_sigma_um: float | None
    chi2: float = math.nan
    rival_z_um: float | None = None
    rival_chi2: float = math.nan


def fit_focus(z_um: np.ndarray, distance_um: np.ndarray, sigma_um: np.ndarray,
              weight: np.ndarray | None = None) -> FocusFit:
    """Signed focus z (µm) from stage positions `z_um` and unsigned distances `distance_um`.

    `sigma_um` is each distance's one-sigma uncertainty (µm, > 0); `weight` an
    optional extra factor per frame in [0, 1] (e.g. 1 − no-specimen
    probability; frames with weight 0 are ignored). The uncertainty of the
    result is the fit's (1/Σw)^½, widened to cover the best solution on the
    other side of the frames when that fits nearly as well (Δχ² < 4), since
    the sign is then not settled. Raises `ValueError` for arrays of unequal
    length.
    """
    z = np.asarray(z_um, np.float64).ravel()
    d = np.asarray(distance_um, np.float64).ravel()
    s = np.asarray(sigma_um, np.float64).ravel()
    if not (z.size == d.size == s.size):
        raise ValueError(f"z, distance and sigma differ in length: {z.size}, {d.size}, {s.size}")
    w = 1.0 / np.maximum(s, 1e-9) ** 2
    if weight is not None:
        w = w * np.clip(np.asarray(weight, np.float64).ravel(), 0.0, 1.0)
    ok = np.isfinite(z) & np.isfinite(d) & np.isfinite(w) & (w > 0)
    z, d, w = z[ok], np.maximum(d[ok], 0.0), w[ok]
    if np.unique(np.round(z, 9)).size < 2:
        return FocusFit(None, None)
    knots = np.unique(z)
    bounds = [(-math.inf, knots[0])]
    bounds += [(knots[k], knots[k + 1]) for k in range(knots.size - 1)]
    bounds.append((knots[-1], math.inf))
    candidates: list[tuple[float, float]] = []  # (cost, zf)
    for lo, hi in bounds:
        mid = (lo + hi) / 2 if math.isfinite(lo) and math.isfinite(hi) else (
            lo + 1.0 if math.isfinite(lo) else hi - 1.0)
        sign = np.sign(z - mid)
        zf = float(np.sum(w * (z - sign * d)) / np.sum(w))
        zf = min(max(zf, lo), hi)
        cost = float(np.sum(w * (np.abs(z - zf) - d) ** 2))
        candidates.append((cost, zf))
    candidates.sort()
    best_cost, best_z = candidates[0]
    sigma = 1.0 / math.sqrt(float(np.sum(w)))
    # The best solution on the far side of the frames' centre from the winner.
    centre = float(np.average(z, weights=w))
    rival = [(c, zf) for c, zf in candidates[1:] if (zf - centre) * (best_z - centre) < 0]
    rival_cost, rival_z = rival[0] if rival else (math.nan, None)
    if rival_z is not None and rival_cost - best_cost < 4.0:
        sigma = max(sigma, abs(rival_z - best_z) / 2.0)
    return FocusFit(best_z, sigma, best_cost, rival_z, rival_cost)


__all__ = ["FocusFit", "fit_focus"]
