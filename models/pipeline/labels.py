"""Training targets: a focus label per plane and ranking pairs within a stack.

The label `1 / (1 + (dz/σ)²)` is 1 at focus and falls monotonically with the
distance |dz| from it, halving at |dz| = σ; σ is the objective's depth of field,
so the label means the same thing for a 100×/1.4 oil lens and a 4× dry lens.
Ranking pairs say "plane i is closer to focus than plane j" and carry the
ordering that the label's flat tails (far from focus) and flat top (close to
it) barely express.
"""

from __future__ import annotations

import numpy as np


def focus_label(dz_um: np.ndarray, sigma_um: float) -> np.ndarray:
    """Label in (0, 1] for defocus `dz_um` (µm) with half-width `sigma_um` (µm, > 0).

    Raises `ValueError` for a non-positive sigma.
    """
    if not sigma_um > 0:
        raise ValueError(f"sigma_um must be > 0, got {sigma_um}")
    d = np.asarray(dz_um, dtype=np.float64) / float(sigma_um)
    return 1.0 / (1.0 + d * d)


def ranking_pairs(dz_um: np.ndarray, min_gap_um: float) -> tuple[np.ndarray, np.ndarray]:
    """Index pairs (closer, farther) of planes whose |dz| differ by more than `min_gap_um`.

    Pairs closer than the gap (e.g. the two planes either side of focus at
    similar distance) are left out: their order is not a fact of the optics.
    Returns two int64 arrays of equal length.
    """
    a = np.abs(np.asarray(dz_um, dtype=np.float64))
    closer, farther = np.nonzero(a[:, None] + float(min_gap_um) < a[None, :])
    return closer.astype(np.int64), farther.astype(np.int64)
