"""The fixed, torch-free definition of the focusnet architecture.

Training (`autofocus_models.pipeline.net`, torch) and export
(`autofocus_models.pipeline.export`, ONNX)
both read their constants and fixed filters from here, so the two graphs cannot
drift apart.

The network, for a batch of preprocessed frames `image` (N, 1, H, W) float32:

1. Three levels of a 4×4 Walsh–Hadamard filter bank applied with stride 4
   (level A on the full-resolution image, B on A's 4×4 block means, C on B's):
   8 channels each — the block mean plus seven zero-mean filters (horizontal and
   vertical sequency 1, 2, 3 and the diagonal 3×3 checkerboard). Stride 4 reads
   every pixel once and writes 1/2 of the input size, which is what makes a
   2048×2048 frame cost a few milliseconds on a CPU.
2. Squared responses averaged over 64×64-pixel patches (unbiased estimates of the
   band energies at scales of 1–64 px), horizontal and vertical bands summed
   (rotation robustness): 4 energies per level, 12 per patch, plus the patch
   mean intensity. Frame context: the same 12 energies and the mean intensity
   averaged over the whole frame, given to every patch (a patch's energy
   relative to the frame's, and the frame's brightness above its 1st
   percentile, undo part of the per-frame percentile stretch).
3. log of the energies, fixed standardisation, then a per-patch MLP ensemble
   (1×1 convolutions) giving one focus logit per patch.
4. Top-k pooling: the mean of the best `max(1, n_patches // TOPK_DIV)` patch
   logits is the frame logit, so empty background patches cannot dilute it;
   `score = sigmoid(logit)` estimates the label 1/(1+(dz/σ)²).
"""

from __future__ import annotations

import numpy as np

PATCH_PX = 64
"""Side of the square patch (full-resolution pixels) that gets one logit."""

MIN_INPUT_PX = PATCH_PX
"""Smallest height/width the graph accepts (smaller frames are mirror-padded by the scorer)."""

LEVEL_STRIDE = 4
"""Each level's block size and stride (pixels of the level's input)."""

N_LEVELS = 3
"""Levels A, B, C cover scales 1–4, 4–16 and 16–64 px."""

TOPK_DIV = 8
"""k = max(1, n_patches // TOPK_DIV) patch logits are averaged into the frame logit."""

LOG_EPS = 1e-7
"""Added to band energies (normalised intensity², ~[0, 1]) before the log."""

N_BANDS = 4
"""Energies per level after pairing horizontal with vertical filters."""

N_PATCH_BANDS = N_LEVELS * N_BANDS
"""Band energies per patch (and per frame)."""

N_FEATURES = 2 * N_PATCH_BANDS + 2
"""Per-patch features: 12 log band energies, the patch mean, and frame context: the log
frame mean and the 12 log band energies averaged over the frame."""

FRAME_MEAN_EPS = 1e-3
"""Added to the frame mean intensity (normalised units) before the log."""

INPUT_NAME = "image"
OUTPUT_NAMES = ("score", "logit", "patch_logits")

# 1-D Walsh functions of length 4 in sequency order: constant, one, two and three sign changes.
_WALSH = np.array(
    [[1, 1, 1, 1], [1, 1, -1, -1], [1, -1, -1, 1], [1, -1, 1, -1]], dtype=np.float64
)

# (row sequency, column sequency) of the 7 zero-mean filters, after the block mean.
_FILTER_SEQUENCIES = ((0, 1), (1, 0), (0, 2), (2, 0), (0, 3), (3, 0), (3, 3))


def walsh_filter_bank() -> np.ndarray:
    """The (8, 1, 4, 4) float32 filter bank applied at every level with stride 4.

    Channel 0 is the 4×4 block mean (weights 1/16) feeding the next level;
    channels 1–7 are orthonormal 2-D Walsh functions (weights ±1/4), whose
    squared responses are band energies in normalised-intensity² units.
    """
    bank = np.zeros((8, 1, 4, 4), dtype=np.float64)
    bank[0, 0] = 1.0 / 16.0
    for c, (i, j) in enumerate(_FILTER_SEQUENCIES, start=1):
        bank[c, 0] = np.outer(_WALSH[i], _WALSH[j]) / 4.0
    return bank.astype(np.float32)


def band_pairing() -> np.ndarray:
    """The (4, 8, 1, 1) float32 1×1 convolution summing paired squared responses.

    Bands: sequency-1 (h+v), sequency-2 (h+v), sequency-3 (h+v), diagonal
    checkerboard. Channel 0 (the squared block mean) is ignored.
    """
    m = np.zeros((N_BANDS, 8, 1, 1), dtype=np.float32)
    for band, chans in enumerate(((1, 2), (3, 4), (5, 6), (7,))):
        for c in chans:
            m[band, c, 0, 0] = 1.0
    return m


def level_pool_px(level: int) -> int:
    """Pooling window (in the level's own pixels) that maps level `level`'s output to patches."""
    return PATCH_PX // LEVEL_STRIDE ** (level + 1)


def topk_count(n_patches: int, div: int = TOPK_DIV) -> int:
    """How many patch logits are averaged for a frame with `n_patches` patches.

    `div` is the model's pooling divisor (`TOPK_DIV` = 8 for focusnet-v1; a model
    version may use another, recorded in its graph as the `topk_div` constant).
    """
    return max(1, int(n_patches) // int(div))


def feature_names() -> list[str]:
    """Names of the per-patch features in channel order (for model cards and debugging)."""
    bands = ("seq1", "seq2", "seq3", "diag")
    names = [f"log_{lvl}_{b}" for lvl in "ABC" for b in bands]
    return [*names, "patch_mean", "log_frame_mean", *(f"frame_{n}" for n in names)]


def reference_inputs() -> dict[str, np.ndarray]:
    """Deterministic parity inputs made from formulas (no RNG), reproducible without torch.

    `structured`: (3, 1, 128, 192) smooth-to-sharp sinusoid textures with a
    spot; `ramp`: (1, 1, 64, 64) a sharp edge on a ramp.
    """
    yy, xx = np.mgrid[0:128, 0:192].astype(np.float64)
    frames = []
    for n in range(3):
        f = 0.05 + 0.1 * n
        img = 0.5 + 0.3 * np.sin(f * xx + 0.013 * yy * yy) * np.cos(0.07 * (n + 1) * yy)
        img += 0.8 * np.exp(-((yy - 40 - 10 * n) ** 2 + (xx - 100) ** 2) / (2.0 + n))
        frames.append(img)
    structured = np.stack(frames)[:, None].astype(np.float32)
    y2, x2 = np.mgrid[0:64, 0:64].astype(np.float64)
    ramp = (x2 / 64.0 + (x2 > 31) * 0.5 + 0.05 * np.sin(y2 * 1.3)).astype(np.float32)
    return {"structured": structured, "ramp": ramp[None, None]}
