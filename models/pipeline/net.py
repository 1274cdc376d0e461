"""focusnet in torch: the fixed multi-scale front end and the small learned head.

The front end (`FrontEnd`) has no trainable parameters; its per-patch features can
be computed once per training frame, so training only runs the head (`Head`).
`FocusNet` chains both and is what the parity check compares with the ONNX
graph built by `autofocus_models.pipeline.export`. See `autofocus_models.pipeline.spec` for the
architecture. Needs torch (the `train` extra).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from autofocus_models.pipeline import spec
from torch import nn


class FrontEnd(nn.Module):
    """Image (N, 1, H, W) float32 → per-patch features (N, N_FEATURES, H//64, W//64).

    Features (see `spec.feature_names`): 12 log band energies (levels A, B, C ×
    4 bands), the patch mean, the log frame mean and the 12 frame-averaged log
    band energies, not yet standardised. H and W must be ≥ 64; the bottom/right
    remainder below a multiple of 64 is ignored (the scorer centres the crop).
    """

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("bank", torch.from_numpy(spec.walsh_filter_bank()))
        self.register_buffer("pairing", torch.from_numpy(spec.band_pairing()))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        level_in = image
        energies = []
        mean = None
        for level in range(spec.N_LEVELS):
            c = F.conv2d(level_in, self.bank, stride=spec.LEVEL_STRIDE)
            pool = spec.level_pool_px(level)
            sq = c * c
            if pool > 1:
                sq = F.avg_pool2d(sq, pool, stride=pool)
            energies.append(F.conv2d(sq, self.pairing))
            level_in = c[:, 0:1]
            mean = level_in
        assert mean is not None
        bands = torch.cat(energies, dim=1)
        logs = torch.log(bands + spec.LOG_EPS)
        frame_bands = torch.log(bands.mean(dim=(2, 3), keepdim=True) + spec.LOG_EPS)
        frame_mean = torch.log(F.relu(mean.mean(dim=(2, 3), keepdim=True))
                               + spec.FRAME_MEAN_EPS)
        return torch.cat([logs, mean, frame_mean.expand_as(mean),
                          frame_bands.expand_as(logs)], dim=1)


class Head(nn.Module):
    """Per-patch MLP ensemble (1×1 convolutions) and top-k pooling: features → frame logit.

    `members` independent MLPs F→hidden→hidden→1 (grouped convolutions) whose
    patch logits are averaged; `feature_mean`/`feature_std` (N_FEATURES,)
    standardise the front-end features (fixed from the training set, stored in
    the model). Members are trained one by one (`members=1`) and merged with
    `merge_heads`; averaging them removes most of the seed-to-seed variance.
    `topk_div`: the frame logit is the mean of the top max(1, n_patches // topk_div)
    patch logits (8 in focusnet-v1).
    """

    def __init__(self, hidden: int = 16, members: int = 1,
                 topk_div: int = spec.TOPK_DIV) -> None:
        super().__init__()
        self.hidden = hidden
        self.members = members
        self.topk_div = int(topk_div)
        self.register_buffer("feature_mean", torch.zeros(spec.N_FEATURES))
        self.register_buffer("feature_std", torch.ones(spec.N_FEATURES))
        self.conv1 = nn.Conv2d(spec.N_FEATURES, hidden * members, 1)
        self.conv2 = nn.Conv2d(hidden * members, hidden * members, 1, groups=members)
        self.conv3 = nn.Conv2d(hidden * members, members, 1, groups=members)

    def patch_logits(self, features: torch.Tensor) -> torch.Tensor:
        """(N, F, gh, gw) features → (N, 1, gh, gw) patch logits (mean over members)."""
        mean = self.feature_mean.view(1, -1, 1, 1)
        inv_std = (1.0 / self.feature_std).view(1, -1, 1, 1)
        h = (features - mean) * inv_std
        h = F.relu(self.conv1(h))
        h = F.relu(self.conv2(h))
        return self.conv3(h).mean(dim=1, keepdim=True)

    def patch_logits_last(self, features: torch.Tensor) -> torch.Tensor:
        """Same maths on features with the channel axis last: (..., F) → (...).

        The 1×1 (grouped) convolutions as matrix products; training uses it
        because it avoids convolutions over tiny patch grids.
        """
        m, hd = self.members, self.hidden
        h = (features - self.feature_mean) / self.feature_std
        h = F.relu(F.linear(h, self.conv1.weight[:, :, 0, 0], self.conv1.bias))
        h = h.unflatten(-1, (m, hd))
        w2 = self.conv2.weight[:, :, 0, 0].view(m, hd, hd)
        h = F.relu(torch.einsum("...mi,moi->...mo", h, w2) + self.conv2.bias.view(m, hd))
        w3 = self.conv3.weight[:, :, 0, 0].view(m, hd)
        out = torch.einsum("...mi,mi->...m", h, w3) + self.conv3.bias
        return out.mean(dim=-1)

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns (frame logits (N,), patch logits (N, 1, gh, gw))."""
        patches = self.patch_logits(features)
        flat = patches.flatten(1)
        k = spec.topk_count(flat.shape[1], self.topk_div)
        top = torch.topk(flat, k, dim=1).values
        return top.mean(dim=1), patches


def merge_heads(heads: list[Head]) -> Head:
    """One `Head` averaging the patch logits of single-member `heads` (same hidden, same stats).

    Raises `ValueError` when the heads differ in width or feature statistics.
    """
    if not heads or any(h.members != 1 or h.hidden != heads[0].hidden
                        or h.topk_div != heads[0].topk_div for h in heads):
        raise ValueError("merge_heads needs single-member heads of one width and pooling")
    ref = heads[0]
    if any(not torch.equal(h.feature_mean, ref.feature_mean)
           or not torch.equal(h.feature_std, ref.feature_std) for h in heads):
        raise ValueError("merged heads must share their feature standardisation")
    merged = Head(ref.hidden, len(heads), ref.topk_div)
    with torch.no_grad():
        merged.feature_mean.copy_(ref.feature_mean)
        merged.feature_std.copy_(ref.feature_std)
        for name in ("conv1", "conv2", "conv3"):
            getattr(merged, name).weight.copy_(
                torch.cat([getattr(h, name).weight for h in heads], dim=0))
            getattr(merged, name).bias.copy_(torch.cat([getattr(h, name).bias for h in heads]))
    merged.eval()
    return merged


class FocusNet(nn.Module):
    """The whole model: image (N, 1, H, W) → (score (N,), logit (N,), patch logits).

    `score = sigmoid(logit)` is the estimated label 1/(1+(dz/σ)²) in [0, 1];
    higher is sharper.
    """

    def __init__(self, hidden: int = 16, members: int = 1,
                 topk_div: int = spec.TOPK_DIV) -> None:
        super().__init__()
        self.front = FrontEnd()
        self.head = Head(hidden, members, topk_div)

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        logit, patches = self.head(self.front(image))
        return torch.sigmoid(logit), logit, patches


def head_weights(head: Head) -> dict[str, np.ndarray]:
    """The head's parameters and buffers as float32 numpy arrays (for ONNX export)."""
    return {k: v.detach().cpu().numpy().astype(np.float32) for k, v in head.state_dict().items()}
