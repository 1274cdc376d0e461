"""Fit the pair head: from two frames of one field, which is closer to focus (logistic, numpy).

Pairs come from the training stacks: planes on the same side of focus, both at
least 0.5 DOF from it, 0.3–`MAX_GAP_DOF` DOF apart. Features are
`autofocus.scoring.defocus.PairHead.features` (band-energy change relative to
brightness, so the specimen cancels; its products with the mean spectral shape
and the mean predicted log-distance; the change of predicted log-distance),
scaled by their mean magnitude; the model has no bias, so swapping the frames
flips the log-odds exactly.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
from autofocus_models.pipeline.v3.data import FeatureStack
from scipy.optimize import minimize

from autofocus.scoring.defocus import FRAME_BANDS, FRAME_CONTRAST, PairHead

MAX_GAP_DOF = 3.0


def pair_dataset(stacks: Sequence[FeatureStack], m_per_stack: Sequence[np.ndarray]
                 ) -> tuple[np.ndarray, np.ndarray]:
    """(X (n, 37), y (n,) 1 when frame b is closer) over same-side plane pairs."""
    xs, ys = [], []
    for s, m in zip(stacks, m_per_stack, strict=True):
        f = s.features[:, :, 0, 0]
        d = s.dz_um / s.dof_um
        for a, b in same_side_pairs(d, min_gap_dof=0.3):
            xs.append(PairHead.features(f[a, FRAME_BANDS], f[a, FRAME_CONTRAST], m[a],
                                        f[b, FRAME_BANDS], f[b, FRAME_CONTRAST], m[b]))
            ys.append(float(abs(d[b]) < abs(d[a])))
    return np.asarray(xs), np.asarray(ys)


def same_side_pairs(d_dof: np.ndarray, *, min_gap_dof: float) -> Iterator[tuple[int, int]]:
    """Ordered index pairs (a, b), a ≠ b, of planes at signed defocus `d_dof` (DOF units) on
    the same side of focus, both ≥ 0.5 DOF from it, `min_gap_dof`–`MAX_GAP_DOF` DOF apart."""
    for a in range(d_dof.size):
        for b in range(d_dof.size):
            gap = abs(d_dof[a] - d_dof[b])
            if (a == b or gap < min_gap_dof or gap > MAX_GAP_DOF
                    or np.sign(d_dof[a]) != np.sign(d_dof[b])
                    or min(abs(d_dof[a]), abs(d_dof[b])) < 0.5):
                continue
            yield a, b


def fit_pair_head(x: np.ndarray, y: np.ndarray, l2: float = 1e-4) -> PairHead:
    """Logistic regression without bias on scaled features; returns the `PairHead`."""
    scale = np.abs(x).mean(axis=0) + 1e-6
    xs = x / scale

    def loss(w: np.ndarray) -> tuple[float, np.ndarray]:
        z = xs @ w
        p = 1.0 / (1.0 + np.exp(-z))
        val = float(np.mean(np.logaddexp(0, -z) * y + np.logaddexp(0, z) * (1 - y)) + l2 * w @ w)
        return val, xs.T @ (p - y) / y.size + 2 * l2 * w

    w = minimize(loss, np.zeros(x.shape[1]), jac=True, method="L-BFGS-B").x
    return PairHead(w, scale, MAX_GAP_DOF)


def train_accuracy(head: PairHead, x: np.ndarray, y: np.ndarray,
                   c: np.ndarray | None = None) -> float:
    """Share of pairs (unscaled features x, version-3 context c) whose log-odds sign matches
    y (1 when frame b is closer)."""
    return float(np.mean((head.logodds_of(x, c) > 0) == (y > 0.5)))


def card_section(head: PairHead, accuracy: float, n_pairs: int) -> dict:
    """The model card's `pair_head` section."""
    return {"weights": [float(v) for v in head.weights], "scale": [float(v) for v in head.scale],
            "max_gap_dof": head.max_gap_dof, "train_pairs": n_pairs,
            "train_accuracy": accuracy,
            "features": "see autofocus.scoring.defocus.PairHead.features"}
