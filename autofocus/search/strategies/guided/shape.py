"""The guided search's record of a refined candidate and its pure peak-shape helpers.

`Refined` is what refining one candidate yields (its peak, or None when the
fine score never rose); `coarse_step_um` is the coarse spacing from the
optics; `log_parabola` is the three-point Gaussian fit used throughout;
`bracket_peak` locates the peak in a small bracket of frames (tracking, the prior).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from autofocus.search.trust import Peak

LN2 = math.log(2.0)


@dataclass
class Refined:
    """A candidate after refinement: its peak (None when the fine score never rose)."""

    peak: Peak | None
    spacing_dof: float
    r2: float | None
    snr: float
    at_edge: bool
    note: str = ""
    width_unresolved: bool = False  # recorded planes too far apart to measure the width
    # Brightfield contrast inversion: focus lies within this many µm of the peak's z (half the
    # [maximum, dip] interval; see `guided.inversion`); None for an ordinary peak.
    inversion_bound_um: float | None = None


NO_RISE = Refined(None, math.inf, None, 0.0, False, "no fine rise")


def strongest(refined: list[Refined]) -> Refined | None:
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


def bracket_peak(
    z: np.ndarray, s: np.ndarray, capture_at: Callable[[float], float]
) -> tuple[float, float] | None:
    """(centre µm, HWHM µm) of the peak in a bracket of frames `z` with positive fine
    scores `s`, or None.

    The fine scores are fitted as a Gaussian in log score above 0.8 of their minimum.
    When the top frame is not the middle one the fine peak's shape is unknown there,
    so the wide-capture scores of the same frames (`capture_at(z)`, smooth near focus)
    locate the centre, the fine fit keeping the width where it has one.
    """
    got = log_parabola(z, s - 0.8 * float(s.min()))
    c = np.asarray([capture_at(zz) for zz in z], dtype=float)
    if int(np.argmax(s)) != len(s) // 2 and np.all(np.isfinite(c)) and np.all(c > 0):
        cap = log_parabola(z, c)
        if cap is not None:
            got = (cap[0], got[1] if got is not None else cap[1])
    return got
