"""The channels focusnet-v4 computes from a frame: the numpy reference of its ONNX graph.

Input: the frame as `autofocus.scoring.model.model_input(frame, "2", 64)` gives it
(grey, camera units, not normalised; centre-cropped to whole 64-px patches).

Band energy at scale k (k = 0…LEVELS-1): with x_0 the frame and x_{k+1} its 2×2
block mean, d_k = mean over each 2×2 block of x_k² minus x_{k+1}² — the energy
of the Haar detail between scale 2^k and 2^{k+1} px (at k = 0 the pixel-level
gradient energy, the Tenengrad analogue: the mean squared difference of
neighbouring pixels within each 2×2 block, halved). Scales 0 and 2 are sampled
on a checkerboard of 2×2 blocks (the two diagonal blocks of every 4×4 block,
`DIAGONAL_SUBBLOCKS`: the graph computes two scales per pass and this keeps it at 10
channels). Each d_k map is averaged over the 64-px patches (a (H/64, W/64)
grid of patch energies P_k).

Channels per scale, un-normalised and as logs (natural log of camera units²):
* `mean_k` = log(mean over patches of P_k + EPS): the frame's band energy;
* `top_k` = log of the power-4 mean of the patch energies (a soft top-k: the
  few most detailed patches dominate; SparseFocus-like on sparse fields),
  computed as (logsumexp(4·log(P_k + EPS)) − log n) / 4.
Plus `level` = log(mean intensity + EPS). So 2·LEVELS + 1 channels in all;
`CLASSICAL` indexes the mean-pooled ones and the level (the ablation's input).
"""

from __future__ import annotations

import numpy as np

LEVELS = 5
DIAGONAL_SUBBLOCKS = (0, 1)
"""Scales 0 and 2 are sampled on the 2×2 blocks (y, x) with y = x within each 4×4 block."""
PATCH_PX = 64
EPS = 1e-3
TOP_POWER = 4.0

NAMES = ([f"mean_{k}" for k in range(LEVELS)] + [f"top_{k}" for k in range(LEVELS)]
         + ["level"])
CLASSICAL = [*range(LEVELS), 2 * LEVELS]
"""Indices of the classical channels: mean-pooled band energies and the mean level."""


def _block_mean(x: np.ndarray, b: int) -> np.ndarray:
    h, w = x.shape[-2] // b, x.shape[-1] // b
    return x[..., : h * b, : w * b].reshape(*x.shape[:-2], h, b, w, b).mean(axis=(-3, -1))


def patch_energies(img: np.ndarray) -> list[np.ndarray]:
    """The per-patch band energies P_k, k = 0…LEVELS-1, each (H/64, W/64) float64."""
    x = np.asarray(img, dtype=np.float64)
    if x.shape[0] % PATCH_PX or x.shape[1] % PATCH_PX:
        raise ValueError(f"frame {x.shape} is not whole {PATCH_PX}-px patches")
    out = []
    for k in range(LEVELS):
        nxt = _block_mean(x, 2)
        d = _block_mean(x * x, 2) - nxt * nxt
        if k % 2 == 0 and k + 1 < LEVELS:  # the graph's paired scales: diagonal sub-blocks
            d = (d[0::2, 0::2] + d[1::2, 1::2]) / 2
            out.append(_block_mean(d, PATCH_PX >> (k + 2)))
        else:
            out.append(_block_mean(d, PATCH_PX >> (k + 1)))
        x = nxt
    return out


def features(img: np.ndarray) -> np.ndarray:
    """The 2·LEVELS + 1 channels of one model-input image (see module doc), float64."""
    energies = patch_energies(img)
    mean = [np.log(e.mean() + EPS) for e in energies]
    top = []
    for e in energies:
        lp = TOP_POWER * np.log(e + EPS)
        m = lp.max()
        lse = m + np.log(np.exp(lp - m).sum())
        top.append((lse - np.log(e.size)) / TOP_POWER)
    level = np.log(float(np.mean(img, dtype=np.float64)) + EPS)
    return np.array([*mean, *top, level], dtype=np.float64)


__all__ = ["CLASSICAL", "DIAGONAL_SUBBLOCKS", "EPS", "LEVELS", "NAMES", "PATCH_PX",
           "TOP_POWER", "features", "patch_energies"]
