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

import functools
import math
from dataclasses import dataclass

import numpy as np

SPECTRUM_TILE_PX = 192
"""Side (px) of the square tiles whose radial power spectra feed the pair head (version 2)."""
SPECTRUM_BANDS = 16
"""Radial frequency bands of `frame_spectrum`, log-spaced from 2 cycles per tile to Nyquist."""
SPECTRUM_MAX_TILES = 16
"""At most this many tiles (from the frame centre outwards) are averaged per frame."""
FRAME_BANDS = slice(12, 24)
"""Where a v3 graph's `features` keep the 12 frame-averaged log band energies (pair head input)."""
FRAME_CONTRAST = 24
"""… and the frame contrast log(V / μ²) (pair head input)."""
SIDE_SETTLED_DCHI2 = 4.0
"""The side of focus counts as settled when the best solution on the other side of the frames
costs at least this much more (Δχ²; side probability ≥ 1/(1+e⁻²) ≈ 0.88) …"""
SIDE_SETTLED_PAIR_LOGODDS = 2.0
"""… or when the pair terms alone back the chosen side with summed log-odds ≥ this (the same
0.88; the V-fit of two noisy distances often pulls Δχ² below 4 although the pairs agree)."""


@functools.lru_cache(maxsize=8)
def _spectrum_tables(t: int) -> tuple[np.ndarray, float, np.ndarray, np.ndarray]:
    """Hann window, its power, the radial band of each rfft2 bin and bins per band, for t px."""
    win = np.outer(np.hanning(t), np.hanning(t))
    ky = np.fft.fftfreq(t)[:, None]
    kx = np.fft.rfftfreq(t)[None, :]
    band = np.digitize(np.sqrt(ky ** 2 + kx ** 2),
                       np.geomspace(2.0 / t, 0.5, SPECTRUM_BANDS + 1)) - 1
    band[band < 0] = SPECTRUM_BANDS  # below the lowest band (DC): not counted
    band = band.ravel()
    counts = np.bincount(band, minlength=SPECTRUM_BANDS + 2)[:SPECTRUM_BANDS]
    for a in (win, band, counts):
        a.flags.writeable = False
    return win, float((win ** 2).sum()), band, counts


def frame_spectrum(grey: np.ndarray) -> np.ndarray:
    """Radial power spectrum of a grey frame (camera units): (SPECTRUM_BANDS + 1,) float64.

    Entries 0…SPECTRUM_BANDS−1: mean power (Hann-windowed periodogram of the
    mean-subtracted tile, per pixel) in log-spaced radial frequency bands,
    averaged over up to `SPECTRUM_MAX_TILES` non-overlapping
    `SPECTRUM_TILE_PX`-px tiles nearest the frame centre (one centred tile of
    the shorter side when the frame is smaller); the last entry is the mean
    intensity. Defocus multiplies a field's spectrum by the optical transfer
    function, so the band-power ratio of two frames of one field cancels the
    specimen (`PairHead` version 2). Raises `ValueError` for a frame that is
    not 2-D or smaller than 8 px.
    """
    f = np.asarray(grey)
    if f.ndim != 2 or min(f.shape) < 8:
        raise ValueError(f"frame_spectrum needs a 2-D frame of at least 8 px, got {f.shape}")
    h, w = f.shape
    t = min(SPECTRUM_TILE_PX, h, w)
    ny, nx = h // t, w // t
    y0, x0 = (h - ny * t) // 2, (w - nx * t) // 2
    centres = sorted(((iy - (ny - 1) / 2) ** 2 + (ix - (nx - 1) / 2) ** 2, iy, ix)
                     for iy in range(ny) for ix in range(nx))[:SPECTRUM_MAX_TILES]
    win, norm, band, counts = _spectrum_tables(t)
    power = np.zeros(SPECTRUM_BANDS)
    for _, iy, ix in centres:
        tile = f[y0 + iy * t:y0 + (iy + 1) * t, x0 + ix * t:x0 + (ix + 1) * t].astype(np.float64)
        p = np.abs(np.fft.rfft2((tile - tile.mean()) * win)) ** 2 / norm
        power += np.bincount(band, weights=p.ravel(),
                             minlength=SPECTRUM_BANDS + 2)[:SPECTRUM_BANDS]
    power /= np.maximum(counts, 1) * len(centres)
    return np.concatenate([power, [float(f.mean(dtype=np.float64))]])


def _band_terms(spec_a: np.ndarray, spec_b: np.ndarray
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, float, float]:
    """What the pair features and their context share, from two `frame_spectrum`s: band
    powers pa, pb, their logs la, lb, the noise floor (the weaker frame's mean power in the
    top three bands) and dmu, the change of log mean² from a to b (0 for a non-positive mean)."""
    pa, pb = spec_a[:-1], spec_b[:-1]
    ma, mb = spec_a[-1], spec_b[-1]
    floor = max(min(pa[-3:].mean(), pb[-3:].mean()), 1e-12)
    dmu = 2.0 * math.log(mb / ma) if ma > 0 and mb > 0 else 0.0
    return pa, pb, np.log(pa + 1e-12), np.log(pb + 1e-12), floor, dmu


def spectrum_pair_features(spec_a: np.ndarray, spec_b: np.ndarray) -> np.ndarray:
    """Antisymmetric features (4·SPECTRUM_BANDS,) of two `frame_spectrum`s, frames a → b.

    dl = change of log band power relative to the squared mean (exposure and
    bleaching cancel, and the specimen cancels band by band); the noise floor
    (the weaker frame's mean power in the top three bands) is subtracted for a
    second version of dl; each is also weighted by the band's signal-to-floor
    ratio snr (log), so bands lost in noise count less.
    """
    pa, pb, la, lb, floor, dmu = _band_terms(spec_a, spec_b)
    dl = lb - la - dmu
    dl_floor = (np.log(np.maximum(pb - floor, 1e-3 * floor))
                - np.log(np.maximum(pa - floor, 1e-3 * floor)) - dmu)
    snr = 0.5 * (la + lb) - math.log(floor)
    t = np.tanh(snr / 2.0)
    return np.concatenate([dl, dl * t, dl * snr, dl_floor * t])


@dataclass(frozen=True)
class FocusFit:
    """Result of `fit_focus`: focal plane (µm), its one-sigma uncertainty (µm), and the fit.

    `focus_z_um`/`focus_sigma_um` are None when fewer than two usable frames
    at distinct z were given. `chi2` is the weighted residual sum of squares
    of the best fit; `rival_z_um` the best solution on the other side of the
    frames (None when there is none), whose cost is `rival_chi2`.
    `pair_support` the summed pair log-odds in favour of the order
    `focus_z_um` implies (negative when the pairs disagree). `side_p` =
    the larger of 1/(1+exp(−Δχ²/2)) and 1/(1+exp(−pair_support)), the
    probability given to focus lying on `focus_z_um`'s side rather than the
    rival's (1.0 without a rival); `side_settled` is True when Δχ² ≥
    `SIDE_SETTLED_DCHI2` or pair_support ≥ `SIDE_SETTLED_PAIR_LOGODDS`.
    """

    focus_z_um: float | None
    focus_sigma_um: float | None
    chi2: float = math.nan
    rival_z_um: float | None = None
    rival_chi2: float = math.nan
    pair_support: float = 0.0

    @property
    def side_p(self) -> float | None:
        """Probability (0.5–1) that focus lies on `focus_z_um`'s side; None without a fit."""
        if self.focus_z_um is None:
            return None
        if self.rival_z_um is None or not math.isfinite(self.rival_chi2):
            return 1.0
        fit_p = 1.0 / (1.0 + math.exp(-min(max(self.rival_chi2 - self.chi2, 0.0), 60.0) / 2.0))
        pair_p = 1.0 / (1.0 + math.exp(-min(max(self.pair_support, -60.0), 60.0)))
        return max(fit_p, pair_p)

    @property
    def side_settled(self) -> bool | None:
        """True when the other side of the frames is ruled out (Δχ² ≥ SIDE_SETTLED_DCHI2)."""
        if self.focus_z_um is None:
            return None
        return (self.rival_z_um is None or not math.isfinite(self.rival_chi2)
                or self.rival_chi2 - self.chi2 >= SIDE_SETTLED_DCHI2
                or self.pair_support >= SIDE_SETTLED_PAIR_LOGODDS)


def pair_context_features(bands_a: np.ndarray, contrast_a: float, m_a: float,
                          bands_b: np.ndarray, contrast_b: float, m_b: float,
                          spec_a: np.ndarray, spec_b: np.ndarray) -> np.ndarray:
    """Swap-invariant context (2·SPECTRUM_BANDS + 12 + 4 = 48,) of two frames for version 3.

    Per band: the signal-to-floor ratio snr (log, as in `spectrum_pair_features`) and the
    mean log band power relative to the squared mean intensity (the specimen's spectral
    shape); the mean of the 12 version-1 band energies, of the predicted log-distances and
    of the contrasts; the log noise floor relative to the squared mean; |change of log
    mean²|. Every entry is symmetric in a ↔ b, so the version-3 head stays antisymmetric.
    """
    _, _, la, lb, floor, dmu = _band_terms(spec_a, spec_b)
    lm = 0.5 * math.log(max(spec_a[-1] * spec_b[-1], 1e-12))
    level = 0.5 * (la + lb)
    return np.concatenate([level - math.log(floor), level - 2.0 * lm, 0.5 * (bands_a + bands_b),
                           [0.5 * (m_a + m_b), 0.5 * (contrast_a + contrast_b),
                            math.log(floor) - 2.0 * lm, abs(dmu)]])


@dataclass(frozen=True)
class PairHead:
    """Is frame b closer to focus than frame a (same field, same side)? As log-odds.

    Version 1 inputs per frame: `frame_bands` (12,) the frame-averaged log band
    energies relative to the detail energy, log(E_b / V), and `contrast`
    log(V / μ²) (both graph `features` channels), and `m` the predicted
    log-distance. Pair features (37): Δ = log-energy change relative to
    brightness (b − a, so the specimen cancels), Δ·(mean spectral shape),
    Δ·(mean m), m_b − m_a. Version 2 puts `spectrum_pair_features` of the two
    frames' `frame_spectrum` (finer radial bands, noise floor removed) in
    front of those 37. Versions 1–2 are logistic: features divided by `scale`
    and dotted with `weights`.

    Version 3 is an antisymmetric one-hidden-layer tanh MLP on the same 101
    features x (divided by `scale`) and the swap-invariant context c
    (`pair_context_features`, standardised by `context_mean`/`context_scale`):
    log-odds = weights · (tanh(W [x, c] + b) − tanh(W [−x, c] + b)) with
    W = `hidden_weights` (hidden, len(x) + len(c)), b = `hidden_bias` (an
    output bias would cancel). Trained with the logistic loss, so its output is
    a log-odds like versions 1–2 (`fit_focus` uses it unchanged).

    Every version is antisymmetric by construction (swapping the frames negates
    the log-odds). `max_gap_dof` the largest |z_b − z_a| it was trained on.
    """

    weights: np.ndarray
    scale: np.ndarray
    max_gap_dof: float = 3.0
    version: int = 1
    hidden_weights: np.ndarray | None = None
    hidden_bias: np.ndarray | None = None
    context_mean: np.ndarray | None = None
    context_scale: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.version not in (1, 2, 3):
            raise ValueError(f"unknown pair head version {self.version!r} (known: 1, 2, 3)")
        if self.version == 3:
            parts = (self.hidden_weights, self.hidden_bias, self.context_mean, self.context_scale)
            if any(p is None for p in parts):
                raise ValueError("a version-3 pair head needs hidden_weights, hidden_bias, "
                                 "context_mean and context_scale")
            w, b, cm, cs = (np.asarray(p) for p in parts)
            n_x, n_c, hidden = self.scale.size, cm.size, self.weights.size
            if w.shape != (hidden, n_x + n_c) or b.shape != (hidden,) or cs.shape != (n_c,):
                raise ValueError(f"version-3 pair head shapes disagree: hidden_weights "
                                 f"{w.shape}, hidden_bias {b.shape}, weights ({hidden},), "
                                 f"scale ({n_x},), context_mean ({n_c},), "
                                 f"context_scale {cs.shape}")

    @property
    def needs_spectra(self) -> bool:
        """True when `logodds` needs each frame's `frame_spectrum` (versions 2 and 3)."""
        return self.version >= 2

    @staticmethod
    def features(bands_a: np.ndarray, contrast_a: float, m_a: float, bands_b: np.ndarray,
                 contrast_b: float, m_b: float) -> np.ndarray:
        """The unscaled version-1 pair feature vector (37,) for frames a → b."""
        dl = (bands_b + contrast_b) - (bands_a + contrast_a)
        shape = 0.5 * (bands_a + bands_b)
        return np.concatenate([dl, dl * shape, dl * 0.5 * (m_a + m_b), [m_b - m_a]])

    def pair_features(self, bands_a: np.ndarray, contrast_a: float, m_a: float,
                      bands_b: np.ndarray, contrast_b: float, m_b: float,
                      spec_a: np.ndarray | None = None,
                      spec_b: np.ndarray | None = None) -> np.ndarray:
        """The unscaled antisymmetric feature vector of this head's version for frames a → b
        (versions 2 and 3 share it)."""
        v1 = self.features(bands_a, contrast_a, m_a, bands_b, contrast_b, m_b)
        if not self.needs_spectra:
            return v1
        if spec_a is None or spec_b is None:
            raise ValueError(f"this pair head (version {self.version}) needs both frames' "
                             "frame_spectrum")
        return np.concatenate([spectrum_pair_features(spec_a, spec_b), v1])

    def logodds_of(self, x: np.ndarray, c: np.ndarray | None = None) -> np.ndarray:
        """Log-odds (n,) from unscaled pair features x (n, k) and, for version 3, the
        context c (n, m) of `pair_context_features`; one row per pair."""
        xs = np.atleast_2d(np.asarray(x, np.float64)) / self.scale
        if self.version < 3:
            return xs @ self.weights
        if c is None:
            raise ValueError("a version-3 pair head needs the pair context features")
        cs = (np.atleast_2d(np.asarray(c, np.float64)) - self.context_mean) / self.context_scale
        w, b = self.hidden_weights, self.hidden_bias
        n_x = xs.shape[1]
        ctx = cs @ w[:, n_x:].T + b  # type: ignore[index,operator]
        lin = xs @ w[:, :n_x].T  # type: ignore[index]
        return (np.tanh(ctx + lin) - np.tanh(ctx - lin)) @ self.weights

    def logodds(self, bands_a: np.ndarray, contrast_a: float, m_a: float,
                bands_b: np.ndarray, contrast_b: float, m_b: float,
                spec_a: np.ndarray | None = None, spec_b: np.ndarray | None = None) -> float:
        """Log-odds that frame b is closer to focus than frame a."""
        x = self.pair_features(bands_a, contrast_a, m_a, bands_b, contrast_b, m_b,
                               spec_a, spec_b)
        c = (pair_context_features(bands_a, contrast_a, m_a, bands_b, contrast_b, m_b,
                                   spec_a, spec_b)  # type: ignore[arg-type]
             if self.version >= 3 else None)
        return float(self.logodds_of(x[None], None if c is None else c[None])[0])

    @classmethod
    def from_card(cls, section: dict | None) -> PairHead | None:
        """The pair head stored in a model card's `pair_head` section (None when absent).

        Raises `ValueError` for an unknown version or a version-3 section whose arrays are
        missing or do not fit together.
        """
        if not section:
            return None
        version = int(section.get("version", 1))
        extra = {}
        if version >= 3:
            try:
                extra = {k: np.asarray(section[k], np.float64) for k in
                         ("hidden_weights", "hidden_bias", "context_mean", "context_scale")}
            except KeyError as exc:
                raise ValueError(f"version-3 pair head section lacks {exc}") from None
        return cls(np.asarray(section["weights"], np.float64),
                   np.asarray(section["scale"], np.float64),
                   float(section.get("max_gap_dof", 3.0)), version, **extra)


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
    # Pair terms: (midpoint, +1 when j lies above i, −2 log p(j closer), −2 log p(i closer),
    # log-odds j closer).
    pair_terms = []
    for i, j, lo in pairs or ():
        if ok[i] and ok[j] and z[i] != z[j] and math.isfinite(lo):
            p = 1.0 / (1.0 + math.exp(-max(min(lo, 30.0), -30.0)))
            pair_terms.append((0.5 * (z[i] + z[j]), 1.0 if z[j] > z[i] else -1.0,
                               -2.0 * math.log(max(p, 1e-12)),
                               -2.0 * math.log(max(1.0 - p, 1e-12)), float(lo)))
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
        for midpoint, up, cost_j, cost_i, _ in pair_terms:
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
    # Summed pair log-odds for the order the winner implies (zf above the midpoint: j closer).
    support = sum((lo if (best_z - midpoint) * up > 0 else -lo)
                  for midpoint, up, _, _, lo in pair_terms)
    fit = FocusFit(best_z, sigma, best_cost, rival_z, rival_cost, float(support))
    if not fit.side_settled and rival_z is not None:
        # The side is not settled: widen the uncertainty to span the mirror solution.
        fit = FocusFit(best_z, max(sigma, abs(rival_z - best_z) / 2.0), best_cost, rival_z,
                       rival_cost, float(support))
    return fit


__all__ = ["FRAME_BANDS", "FRAME_CONTRAST", "SIDE_SETTLED_DCHI2", "SIDE_SETTLED_PAIR_LOGODDS",
           "FocusFit", "PairHead", "fit_focus", "frame_spectrum", "pair_context_features",
           "spectrum_pair_features"]
