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


@dataclass(frozen=True)
class PairHead:
    """Logistic model: is frame b closer to focus than frame a (same field, same side)?

    Inputs per frame: `frame_bands` (12,) the frame-averaged log band energies
    relative to the detail energy, log(E_b / V), and `contrast` log(V / μ²) (both
    graph `features` channels), and `m` the predicted log-distance. Pair features:
    Δ = log-energy change relative to brightness (b − a, so the specimen cancels),
    Δ·(mean spectral shape), Δ·(mean m), m_b − m_a; divided by `scale`, dotted
    with `weights`: the log-odds that b is closer. Antisymmetric by
    construction (no bias). `max_gap_dof` the largest |z_b − z_a| it was trained on.
    """

    weights: np.ndarray
    scale: np.ndarray
    max_gap_dof: float = 3.0

    @staticmethod
    def features(bands_a: np.ndarray, contrast_a: float, m_a: float, bands_b: np.ndarray,
                 contrast_b: float, m_b: float) -> np.ndarray:
        """The unscaled pair feature vector (37,) for frames a → b."""
        dl = (bands_b + contrast_b) - (bands_a + contrast_a)
        shape = 0.5 * (bands_a + bands_b)
        return np.concatenate([dl, dl * shape, dl * 0.5 * (m_a + m_b), [m_b - m_a]])

    def logodds(self, bands_a: np.ndarray, contrast_a: float, m_a: float,
                bands_b: np.ndarray, contrast_b: float, m_b: float) -> float:
        """Log-odds that frame b is closer to focus than frame a."""
        x = self.features(bands_a, contrast_a, m_a, bands_b, contrast_b, m_b)
        return float(np.dot(x / self.scale, self.weights))

    @classmethod
    def from_card(cls, section: dict | None) -> PairHead | None:
        """The pair head stored in a model card's `pair_head` section (None when absent)."""
        if not section:
            return None
        return cls(np.asarray(section["weights"], np.float64),
                   np.asarray(section["scale"], np.float64),
                   float(section.get("max_gap_dof", 3.0)))


def fit_focus(z_um: np.ndarray, distance_um: np.ndarray, sigma_um: np.ndarray,
              weight: np.ndarray | None = None,
              pairs: list[tuple[int, int, float]] | None = None) -> FocusFit:
    """Signed focus z (µm) from stage positions `z_um` and unsigned distances `distance_um`.

    `sigma_um` is each distance's one-sigma uncertainty (µm, > 0); `weight` an
    optional extra factor per frame in [0, 1] (e.g. 1 − no-specimen
    probability; frames with weight 0 are ignored). The uncertainty of the
    result is the fit's (1/Σw)^½, widened to cover the best solution on the
    other side of the frames when that fits nearly as well (Δχ² < 4), since
    the sign is then not settled. `pairs` (i, j, log-odds that frame j is
    closer to focus than frame i), e.g. from `PairHead`, add −2·log p of the
    order each candidate implies (zf on j's side of the midpoint or not): the
    band-energy change between two frames of one field settles the side that
    unsigned distances leave open. Raises `ValueError` for arrays of unequal
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
    # Pair terms: (midpoint, +1 when j lies above i, −2 log p(j closer), −2 log p(i closer)).
    pair_terms = []
    for i, j, lo in pairs or ():
        if ok[i] and ok[j] and z[i] != z[j] and math.isfinite(lo):
            p = 1.0 / (1.0 + math.exp(-max(min(lo, 30.0), -30.0)))
            pair_terms.append((0.5 * (z[i] + z[j]), 1.0 if z[j] > z[i] else -1.0,
                               -2.0 * math.log(max(p, 1e-12)),
                               -2.0 * math.log(max(1.0 - p, 1e-12))))
    z, d, w = z[ok], np.maximum(d[ok], 0.0), w[ok]
    if np.unique(np.round(z, 9)).size < 2:
        return FocusFit(None, None)
    knots = np.unique(np.concatenate([z, [t[0] for t in pair_terms]]))
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
        for midpoint, up, cost_j, cost_i in pair_terms:
            # zf above the midpoint makes the upper frame the closer one.
            j_closer = (zf - midpoint) * up > 0
            cost += cost_j if j_closer else cost_i
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


__all__ = ["FocusFit", "PairHead", "fit_focus"]
