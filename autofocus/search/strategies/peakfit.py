"""Sub-step peak estimation on sampled focus curves, noise estimates and confidence.

Pure numpy/scipy helpers shared by the search strategies. Positions are in
micrometres, scores are whatever the scorer returns (higher = sharper). All
functions ignore non-finite scores.

Peak models (`w_um` is the half-width at half maximum in all three):

- Lorentzian: ``score = b + a / (1 + ((z - z0) / w)²)`` — the heavy-tailed shape
  of gradient-energy focus measures;
- Gaussian:   ``score = b + a · 2^(-((z - z0) / w)²)``;
- flat-top:   ``score = b + a / (1 + |(z − z0) / w|^p)``, p ≥ 2 (p = 2: Lorentzian);
- parabola:   ``score = c2 z² + c1 z + c0`` through the top points only.

Confidence (`confidence`) combines the peak's prominence over the curve noise
with the fit quality; see its docstring.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.optimize import OptimizeWarning, curve_fit

_LN2 = math.log(2.0)
# Points used to draw a fitted curve in `PeakFit.to_dict()["curve"]`.
_CURVE_SAMPLES = 41


def lorentzian(z: np.ndarray, b: float, a: float, z0: float, w: float) -> np.ndarray:
    """Lorentzian peak: baseline `b`, height `a`, centre `z0` (µm), half-width `|w|` (µm)."""
    u = (np.asarray(z, dtype=float) - z0) / w
    return b + a / (1.0 + u * u)


def gaussian(z: np.ndarray, b: float, a: float, z0: float, w: float) -> np.ndarray:
    """Gaussian peak: baseline `b`, height `a`, centre `z0` (µm), half-width at half max `|w|`."""
    u = (np.asarray(z, dtype=float) - z0) / w
    return b + a * np.exp(-_LN2 * u * u)


def _lorentzian_jac(z: np.ndarray, b: float, a: float, z0: float, w: float) -> np.ndarray:
    u = (np.asarray(z, dtype=float) - z0) / w
    peak = 1.0 / (1.0 + u * u)
    slope = 2.0 * a * u * peak * peak / w
    return np.column_stack([np.ones_like(u), peak, slope, slope * u])


def _gaussian_jac(z: np.ndarray, b: float, a: float, z0: float, w: float) -> np.ndarray:
    u = (np.asarray(z, dtype=float) - z0) / w
    peak = np.exp(-_LN2 * u * u)
    slope = 2.0 * _LN2 * a * u * peak / w
    return np.column_stack([np.ones_like(u), peak, slope, slope * u])


def flat_top(z: np.ndarray, b: float, a: float, z0: float, w: float, q: float) -> np.ndarray:
    """Flat-topped peak ``b + a / (1 + |u|^p)``, u = (z − z0)/w, p = 2 (1 + q²) ≥ 2.

    p = 2 is the Lorentzian; larger p flattens the top and steepens the walls
    (a saturated or clipped focus curve). `|w|` is the half-width at half maximum.
    """
    u2 = ((np.asarray(z, dtype=float) - z0) / w) ** 2
    return b + a / (1.0 + u2 ** (1.0 + q * q))


def _flat_top_jac(z: np.ndarray, b: float, a: float, z0: float, w: float, q: float) -> np.ndarray:
    u = (np.asarray(z, dtype=float) - z0) / w
    v = u * u
    m = 1.0 + q * q
    vm = v**m
    inv = 1.0 / (1.0 + vm)
    slope = 2.0 * a * m * v ** (m - 1.0) * u * inv * inv / w
    log_v = np.log(np.where(v > 0, v, 1.0))
    d_q = -a * inv * inv * vm * log_v * 2.0 * q
    return np.column_stack([np.ones_like(u), inv, slope, slope * u, d_q])


_MODELS = {"lorentzian": lorentzian, "gaussian": gaussian, "flat-top": flat_top}
# AIC handicap of the flat-top model: it must fit clearly better than the 4-parameter
# shapes to be chosen, as its extra freedom costs precision on ordinary peaks.
FLAT_TOP_PENALTY = 6.0
# Analytic Jacobians: several times fewer model evaluations than finite differences.
_JACOBIANS = {"lorentzian": _lorentzian_jac, "gaussian": _gaussian_jac, "flat-top": _flat_top_jac}


@dataclass
class PeakFit:
    """A fitted peak: where (`z_um`), how high (`score`), how well (`r2`).

    `kind` is "lorentzian", "gaussian", "parabola", "half-max" (midpoint of the
    half-maximum crossings) or "argmax" (no fit, the best sample). `params`
    holds the model parameters (b, a, z0_um, w_um for the peak models; coeffs
    [c2, c1, c0] for the parabola). `z_sigma_um` is the standard
    error of `z_um` from the fit covariance and `resid_sigma` the standard
    deviation of the fit residuals (None when unknown). `z_min_um` ..
    `z_max_um` is the span of the points used.
    """

    kind: str
    z_um: float
    score: float
    r2: float
    params: dict[str, Any]
    z_min_um: float
    z_max_um: float
    n_points: int
    z_sigma_um: float | None = None
    resid_sigma: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def evaluate(self, z_um: np.ndarray | float) -> np.ndarray:
        """The fitted score at `z_um` (µm); the argmax "fit" is a single spike."""
        z = np.asarray(z_um, dtype=float)
        p = self.params
        if self.kind == "flat-top":
            q = math.sqrt(max(p["p"] / 2.0 - 1.0, 0.0))
            return flat_top(z, p["b"], p["a"], p["z0_um"], p["w_um"], q)
        if self.kind in _MODELS:
            return _MODELS[self.kind](z, p["b"], p["a"], p["z0_um"], p["w_um"])
        if self.kind == "parabola":
            return np.polyval(p["coeffs"], z)
        return np.where(np.isclose(z, self.z_um), self.score, np.nan)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready description for `SearchOutcome.fit`, with a sampled curve to plot.

        Keys: kind, z_um, score, r2, z_sigma_um, z_min_um, z_max_um, n_points,
        params (model parameters; "coeffs" [c2, c1, c0] for a parabola, so
        score = c2 z² + c1 z + c0) and curve {"z_um": [...], "score": [...]}.
        """
        out: dict[str, Any] = {
            "kind": self.kind,
            "z_um": float(self.z_um),
            "score": float(self.score),
            "r2": float(self.r2),
            "z_sigma_um": None if self.z_sigma_um is None else float(self.z_sigma_um),
            "z_min_um": float(self.z_min_um),
            "z_max_um": float(self.z_max_um),
            "n_points": int(self.n_points),
            "params": {
                k: ([float(c) for c in v] if isinstance(v, (list, tuple, np.ndarray)) else float(v))
                for k, v in self.params.items()
            },
        }
        if self.kind == "parabola":
            out["coeffs"] = list(out["params"]["coeffs"])
        if self.kind not in ("argmax", "half-max") and self.z_max_um > self.z_min_um:
            zs = np.linspace(self.z_min_um, self.z_max_um, _CURVE_SAMPLES)
            out["curve"] = {"z_um": zs.tolist(), "score": self.evaluate(zs).tolist()}
        return out


def finite_points(z_um: Any, scores: Any) -> tuple[np.ndarray, np.ndarray]:
    """The (z, score) pairs with a finite score, sorted by z, as float arrays."""
    z = np.asarray(z_um, dtype=float).ravel()
    s = np.asarray(scores, dtype=float).ravel()
    ok = np.isfinite(z) & np.isfinite(s)
    order = np.argsort(z[ok], kind="stable")
    return z[ok][order], s[ok][order]


def _resid_sigma(s: np.ndarray, model: np.ndarray, n_params: int) -> float | None:
    dof = s.size - n_params
    if dof <= 0:
        return None
    return float(math.sqrt(float(np.sum((s - model) ** 2)) / dof))


def r_squared(s: np.ndarray, model: np.ndarray) -> float:
    """Coefficient of determination of `model` for `s` (0 when `s` is flat; never below 0)."""
    sst = float(np.sum((s - s.mean()) ** 2))
    ssr = float(np.sum((s - model) ** 2))
    if sst <= 0.0:
        return 0.0
    return max(0.0, 1.0 - ssr / sst)


def argmax_peak(z_um: Any, scores: Any) -> PeakFit | None:
    """The best finite sample as a degenerate "argmax" fit (None when there is none)."""
    z, s = finite_points(z_um, scores)
    if z.size == 0:
        return None
    i = int(np.argmax(s))
    return PeakFit("argmax", float(z[i]), float(s[i]), 0.0, {}, float(z[i]), float(z[i]), 1)


def fit_parabola(z_um: Any, scores: Any) -> PeakFit | None:
    """Least-squares parabola through the given points; None unless it opens downwards.

    The vertex is returned even when it lies outside the points' span (callers
    decide whether to trust an extrapolation). Needs at least 3 finite points.
    """
    z, s = finite_points(z_um, scores)
    if z.size < 3 or z[-1] - z[0] <= 0:
        return None
    zc = float(z.mean())
    scale = float(z[-1] - z[0])
    u = (z - zc) / scale  # centred and scaled for a well-conditioned fit
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # RankWarning on nearly collinear points
        c2, c1, c0 = np.polyfit(u, s, 2)
    if not c2 < 0:
        return None
    u_v = -c1 / (2.0 * c2)
    z_v = zc + u_v * scale
    s_v = c0 - c1 * c1 / (4.0 * c2)
    # Back to coefficients in z: score = C2 z² + C1 z + C0.
    big_c2 = c2 / scale**2
    big_c1 = c1 / scale - 2.0 * c2 * zc / scale**2
    big_c0 = c0 - c1 * zc / scale + c2 * zc**2 / scale**2
    model = np.polyval([c2, c1, c0], u)
    return PeakFit(
        "parabola",
        float(z_v),
        float(s_v),
        r_squared(s, model),
        {"coeffs": [float(big_c2), float(big_c1), float(big_c0)]},
        float(z[0]),
        float(z[-1]),
        int(z.size),
        resid_sigma=_resid_sigma(s, model, 3),
    )


def fit_model(
    z_um: Any,
    scores: Any,
    kind: str,
    *,
    z_guess_um: float | None = None,
    w_guess_um: float | None = None,
) -> PeakFit | None:
    """Least-squares fit of a peak model plus baseline: `kind` is "lorentzian" or
    "gaussian" (4 parameters) or "flat-top" (5, see `flat_top`).

    Needs at least 5 finite points (6 for flat-top). Returns None when the fit
    does not converge or is not a peak (height ≤ 0, a width below 1/1000 of the
    points' span, centre far outside the points).
    The centre may lie up to half the points' span outside them, so a peak just
    beyond the searched range is reported as such rather than pulled inside.
    """
    model = _MODELS[kind]
    n_params = 5 if kind == "flat-top" else 4
    z, s = finite_points(z_um, scores)
    if z.size < n_params + 1:
        return None
    span = float(z[-1] - z[0])
    if span <= 0:
        return None
    s_min, s_max = float(s.min()), float(s.max())
    if s_max <= s_min:
        return None
    z0 = float(z[int(np.argmax(s))]) if z_guess_um is None else float(z_guess_um)
    w0 = span / 4.0 if not w_guess_um or w_guess_um <= 0 else float(w_guess_um)
    p0 = [s_min, s_max - s_min, z0, w0] + ([1.0] if n_params == 5 else [])
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", OptimizeWarning)
            warnings.simplefilter("ignore", RuntimeWarning)
            popt, pcov = curve_fit(model, z, s, p0=p0, jac=_JACOBIANS[kind], maxfev=100)
    except (RuntimeError, ValueError, np.linalg.LinAlgError):
        return None
    b, a, zc, w = (float(v) for v in popt[:4])
    w = abs(w)
    if not (np.all(np.isfinite(popt)) and a > 0 and w > 0):
        return None
    if w < 1e-3 * span:  # a spike through one point is not a peak
        return None
    # A very large w with a large negative b is the model degenerating to a parabola
    # (e.g. on a flat-topped peak); its centre is still meaningful, so it is kept.
    if not (z[0] - 0.5 * span <= zc <= z[-1] + 0.5 * span):
        return None
    fitted = model(z, *popt)
    r2 = r_squared(s, fitted)
    sigma = None
    if pcov is not None and np.all(np.isfinite(pcov)) and pcov[2, 2] >= 0:
        sigma = float(math.sqrt(pcov[2, 2]))
    params = {"b": b, "a": a, "z0_um": zc, "w_um": w}
    if n_params == 5:
        params["p"] = 2.0 * (1.0 + float(popt[4]) ** 2)
    return PeakFit(
        kind,
        zc,
        b + a,
        r2,
        params,
        float(z[0]),
        float(z[-1]),
        int(z.size),
        z_sigma_um=sigma,
        resid_sigma=_resid_sigma(s, fitted, n_params),
        extra={"ssr": float(np.sum((s - fitted) ** 2)), "n_params": n_params},
    )


def fit_best_model(
    z_um: Any,
    scores: Any,
    *,
    z_guess_um: float | None = None,
    w_guess_um: float | None = None,
    kinds: tuple[str, ...] = ("lorentzian", "gaussian", "flat-top"),
) -> PeakFit | None:
    """Fit each peak model in `kinds`; keep the lowest AIC (None if all fail).

    AIC = n·ln(SSR/n) + 2k (k parameters), plus `FLAT_TOP_PENALTY` for the
    flat-top model, so it wins only where a flat top fits clearly better than a
    Lorentzian or Gaussian.
    """
    best: PeakFit | None = None
    best_aic = math.inf
    for kind in kinds:
        fit = fit_model(z_um, scores, kind, z_guess_um=z_guess_um, w_guess_um=w_guess_um)
        if fit is None:
            continue
        n = fit.n_points
        ssr = max(float(fit.extra["ssr"]), 1e-300 * n)
        aic = n * math.log(ssr / n) + 2 * int(fit.extra["n_params"])
        if kind == "flat-top":
            aic += FLAT_TOP_PENALTY
        if best is None or aic < best_aic:
            best, best_aic = fit, aic
    return best


def top_points_fit(
    z_um: Any, scores: Any, *, n_points: int = 5, kind: str = "parabola"
) -> PeakFit | None:
    """Sub-sample peak from the `n_points` consecutive samples around the best one.

    `kind` "parabola" fits score; "gaussian" fits a parabola to log(score − min)
    (exact for a Gaussian peak on a known baseline). Returns None when the fit
    does not open downwards or its vertex falls outside the points used — the
    caller then falls back to the argmax.
    """
    z, s = finite_points(z_um, scores)
    if z.size < 3:
        return None
    n = max(3, min(n_points, z.size))
    i = int(np.argmax(s))
    lo_i = min(max(0, i - n // 2), z.size - n)
    zw, sw = z[lo_i : lo_i + n], s[lo_i : lo_i + n]
    if kind == "gaussian":
        floor = float(s.min())
        lifted = sw - floor
        if np.any(lifted <= 0):
            # The global minimum is inside the window: a Gaussian vertex is meaningless.
            return fit_parabola(zw, sw) if n >= 3 else None
        log_fit = fit_parabola(zw, np.log(lifted))
        if log_fit is None or not (zw[0] <= log_fit.z_um <= zw[-1]):
            return None
        c2, c1, _ = log_fit.params["coeffs"]
        w = math.sqrt(_LN2 / -c2)
        height = math.exp(log_fit.score)
        fit = PeakFit(
            "gaussian",
            log_fit.z_um,
            floor + height,
            r_squared(sw, gaussian(zw, floor, height, log_fit.z_um, w)),
            {"b": floor, "a": height, "z0_um": log_fit.z_um, "w_um": w},
            float(zw[0]),
            float(zw[-1]),
            n,
        )
        return fit
    fit = fit_parabola(zw, sw)
    if fit is None or not (zw[0] <= fit.z_um <= zw[-1]):
        return None
    return fit


def level_crossings(
    z: np.ndarray, s: np.ndarray, i: int, level: float, top: float
) -> tuple[float | None, float | None]:
    """Where the curve falls below `level` left and right of sample i (µm, interpolated).

    Walks outwards from i while the scores stay at or above `level`; a side
    where the curve never falls below it gives None. Scores above `top` count
    as `top` (a fitted peak may lie below the highest sample).
    """
    sides: list[float | None] = []
    for step in (-1, 1):
        j = i
        while 0 <= j + step < z.size and s[j + step] >= level:
            j += step
        k = j + step
        if not 0 <= k < z.size:
            sides.append(None)
            continue
        hi_s, lo_s = min(float(s[j]), top), float(s[k])
        frac = 0.5 if hi_s <= lo_s else (hi_s - level) / (hi_s - lo_s)
        sides.append(float(z[j] + (z[k] - z[j]) * min(max(frac, 0.0), 1.0)))
    return sides[0], sides[1]


def half_max_centre(z_um: Any, scores: Any) -> PeakFit | None:
    """Midpoint of the two half-maximum crossings around the best sample ("half-max" fit).

    Half maximum is halfway between the lowest and the highest score; the
    crossings are interpolated linearly. Unbiased for any symmetric peak,
    flat-topped ones included, and precise because the curve is steep there.
    None when the curve does not fall to half maximum on both sides.
    """
    z, s = finite_points(z_um, scores)
    if z.size < 3:
        return None
    i = int(np.argmax(s))
    floor, top = float(s.min()), float(s[i])
    if top <= floor:
        return None
    level = floor + 0.5 * (top - floor)
    left, right = level_crossings(z, s, i, level, top)
    if left is None or right is None:
        return None
    crossings = [left, right]
    centre = 0.5 * (crossings[0] + crossings[1])
    half = 0.5 * abs(crossings[1] - crossings[0])
    return PeakFit(
        "half-max",
        centre,
        top,
        0.0,
        {"level": level, "half_width_um": half},
        float(min(crossings)),
        float(max(crossings)),
        int(z.size),
    )


def noise_sigma(z_um: Any, scores: Any) -> float:
    """Robust estimate of the score noise (standard deviation, score units).

    Each interior sample is compared with the straight line through its two
    neighbours; the median absolute deviation of those residuals, scaled for
    Gaussian noise, is robust to the few samples on a peak. Returns 0.0 with
    fewer than 3 finite samples.
    """
    z, s = finite_points(z_um, scores)
    if z.size < 3:
        return 0.0
    z0, z1, z2 = z[:-2], z[1:-1], z[2:]
    gap = z2 - z0
    ok = gap > 0
    if not np.any(ok):
        return 0.0
    wl = np.where(ok, (z2 - z1) / np.where(ok, gap, 1.0), 0.5)
    wr = 1.0 - wl
    d = s[1:-1] - (wl * s[:-2] + wr * s[2:])
    # Var(d) = σ² (1 + wl² + wr²) for independent noise of std σ.
    scale = np.sqrt(1.0 + wl * wl + wr * wr)
    return float(1.4826 * np.median(np.abs(d[ok]) / scale[ok]))


def prominence(scores: Any) -> tuple[float, float]:
    """(peak − baseline, baseline) of a curve; the baseline is its 20th percentile."""
    s = np.asarray(scores, dtype=float)
    s = s[np.isfinite(s)]
    if s.size == 0:
        return 0.0, 0.0
    base = float(np.percentile(s, 20))
    return float(s.max()) - base, base


def contrast(scores: Any) -> float:
    """Relative variation (max − min) / |max| of the finite scores, in [0, ∞); 0 if none."""
    s = np.asarray(scores, dtype=float)
    s = s[np.isfinite(s)]
    if s.size == 0:
        return 0.0
    top = float(np.max(np.abs(s)))
    if top == 0.0:
        return 0.0
    return float(s.max() - s.min()) / top


def confidence(prom: float, sigma: float, r2: float | None) -> float:
    """Confidence in [0, 1] that the reported peak is real and well located.

    ``snr = prominence / noise`` (peak height above the curve's 20th percentile,
    over the robust noise estimate of `noise_sigma`); the prominence term is
    ``snr / (snr + 10)`` (0.5 at snr 10, 0.9 at snr 90, 1 when noiseless). The fit
    term is ``0.5 + 0.5·R²`` of the final peak fit (0.5 when no fit was
    possible). Confidence is their product: a clean, well-fitted peak scores near
    1, a peak barely above the noise or fitted badly scores low.
    """
    if not math.isfinite(prom) or prom <= 0:
        return 0.0
    if not math.isfinite(sigma) or sigma <= 0:
        c_prom = 1.0
    else:
        snr = prom / sigma
        c_prom = snr / (snr + 10.0)
    c_fit = 0.5 if r2 is None or not math.isfinite(r2) else 0.5 + 0.5 * min(max(r2, 0.0), 1.0)
    return float(min(max(c_prom * c_fit, 0.0), 1.0))
