"""Train focusnet's head on precomputed front-end features.

Loss = MSE between the frame score sigmoid(logit) and the label
1/(1+(dz/DOF)²)  +  `rank_weight` × RankNet loss softplus(−(logit_i − logit_j))
over every pair (i closer to focus than j by more than `min_gap_dof` DOF) within
a stack. The label fixes the scale and the peak; the pairs carry the ordering
along the whole curve, including the far tails where the label is ~0.

Deterministic for a given seed and thread count (torch CPU kernels); uses
`threads` torch threads (default 1: the head is tiny, and on a shared 2-core
machine a second thread made each step ~8× slower through contention).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F
from autofocus_models.pipeline import spec
from autofocus_models.pipeline.data import FeatureStack
from autofocus_models.pipeline.labels import focus_label, ranking_pairs
from autofocus_models.pipeline.net import Head


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of head training (defaults are those of the shipped model)."""

    hidden: int = 16
    members: int = 5
    epochs: int = 60
    batch_stacks: int = 32
    lr: float = 3e-3
    weight_decay: float = 1e-4
    rank_weight: float = 1.0
    min_gap_dof: float = 0.1
    seed: int = 0
    threads: int = 1
    topk_div: int = spec.TOPK_DIV

    def as_dict(self) -> dict:
        """Plain dict (for the model card)."""
        return asdict(self)


def channel_last(features: np.ndarray) -> torch.Tensor:
    """(..., F, gh, gw) → (..., gh·gw, F) float32 tensor: channel axis last, patches flattened,
    for the per-patch linear layers."""
    f = np.asarray(features, np.float32)
    f = f.reshape(*f.shape[:-2], -1)
    return torch.from_numpy(np.ascontiguousarray(np.moveaxis(f, -2, -1)))


def _tensors(stacks: Sequence[FeatureStack], min_gap_dof: float):
    x = channel_last(np.stack([s.features for s in stacks]))  # (S, P, n_patches, F)
    y = torch.from_numpy(np.stack([focus_label(s.dz_um, s.dof_um) for s in stacks])
                         .astype(np.float32))
    return x, y, pair_mask(stacks, min_gap_dof)


def pair_mask(stacks: Sequence[FeatureStack], min_gap_dof: float) -> torch.Tensor:
    """(S, P, P) bool: [k, i, j] when plane i of stack k is closer to focus than plane j by
    more than `min_gap_dof` DOF (`labels.ranking_pairs`); the stacks share a plane count P."""
    n_planes = stacks[0].features.shape[0]
    mask = np.zeros((len(stacks), n_planes, n_planes), dtype=bool)
    for k, s in enumerate(stacks):
        closer, farther = ranking_pairs(s.dz_um, min_gap_dof * s.dof_um)
        mask[k, closer, farther] = True
    return torch.from_numpy(mask)


def rank_loss(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """RankNet loss softplus(−(v_i − v_j)) averaged over the pairs of an (S, P, P) `mask`:
    values of closer planes (rows) should exceed those of farther ones (columns)."""
    diff = values[:, :, None] - values[:, None, :]
    return (F.softplus(-diff) * mask).sum() / mask.sum().clamp(min=1)


def frame_logits(head: Head, x: torch.Tensor) -> torch.Tensor:
    """(S, P, n_patches, F) features → (S, P) frame logits (same maths as `Head.forward`)."""
    patches = head.patch_logits_last(x)
    k = spec.topk_count(patches.shape[-1], head.topk_div)
    return torch.topk(patches, k, dim=-1).values.mean(dim=-1)


def loss_terms(logits: torch.Tensor, y: torch.Tensor, mask: torch.Tensor,
               rank_weight: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(total, mse, rank) for (S, P) logits, labels and an (S, P, P) closer→farther pair mask."""
    mse = F.mse_loss(torch.sigmoid(logits), y)
    rank = rank_loss(logits, mask)
    return mse + rank_weight * rank, mse, rank


def fit_head(stacks: Sequence[FeatureStack], config: TrainConfig = TrainConfig(),
             *, log: bool = False) -> tuple[Head, dict]:
    """Train a fresh `Head` on `stacks` (all with the same plane count and patch grid).

    Returns the head (eval mode) and a history dict (per-epoch losses, seconds).
    Raises `ValueError` for an empty or ragged stack list.
    """
    if not stacks:
        raise ValueError("no training stacks")
    shapes = {s.features.shape for s in stacks}
    if len(shapes) != 1:
        raise ValueError(f"training stacks must share one feature shape, got {shapes}")
    torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    gen = np.random.default_rng(config.seed)
    x, y, mask = _tensors(stacks, config.min_gap_dof)
    head = Head(config.hidden, 1, config.topk_div)
    flat = x.reshape(-1, spec.N_FEATURES)
    head.feature_mean.copy_(flat.mean(0))
    head.feature_std.copy_(flat.std(0).clamp(min=1e-3))
    opt = torch.optim.AdamW(head.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    steps_per_epoch = max(1, int(np.ceil(len(stacks) / config.batch_stacks)))
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=config.lr,
                                                total_steps=config.epochs * steps_per_epoch)
    history: dict = {"epoch_loss": [], "epoch_mse": [], "epoch_rank": []}
    t0 = time.perf_counter()
    head.train()
    for epoch in range(config.epochs):
        order = gen.permutation(len(stacks))
        sums = np.zeros(3)
        for b in range(steps_per_epoch):
            idx = torch.from_numpy(order[b * config.batch_stacks:(b + 1) * config.batch_stacks])
            logits = frame_logits(head, x[idx])
            total, mse, rank = loss_terms(logits, y[idx], mask[idx], config.rank_weight)
            opt.zero_grad()
            total.backward()
            opt.step()
            sched.step()
            sums += [float(total.detach()), float(mse.detach()), float(rank.detach())]
        sums /= steps_per_epoch
        history["epoch_loss"].append(sums[0])
        history["epoch_mse"].append(sums[1])
        history["epoch_rank"].append(sums[2])
        if log and (epoch % 10 == 0 or epoch == config.epochs - 1):
            print(f"  epoch {epoch:3d} loss {sums[0]:.4f} mse {sums[1]:.4f} rank {sums[2]:.4f}",
                  flush=True)
    history["train_s"] = time.perf_counter() - t0
    head.eval()
    return head, history


def fit_ensemble(stacks: Sequence[FeatureStack], config: TrainConfig = TrainConfig(),
                 *, log: bool = False) -> tuple[Head, dict]:
    """Train `config.members` heads with seeds seed, seed+1, ... and merge them (`merge_heads`).

    Returns the merged head and {"members": [per-member histories], "train_s": total}.
    """
    from dataclasses import replace

    from autofocus_models.pipeline.net import merge_heads

    heads, histories = [], []
    t0 = time.perf_counter()
    for m in range(config.members):
        if log:
            print(f"  member {m + 1}/{config.members} (seed {config.seed + m})", flush=True)
        head, hist = fit_head(stacks, replace(config, seed=config.seed + m), log=log)
        heads.append(head)
        histories.append(hist)
    return merge_heads(heads), {"members": histories, "train_s": time.perf_counter() - t0}


def predict_logits(head: Head, features: np.ndarray) -> np.ndarray:
    """Frame logits (n,) for one stack's features (n, F, rows, cols), any patch grid."""
    with torch.no_grad():
        logits, _ = head(torch.from_numpy(np.asarray(features, np.float32)))
    return logits.numpy().astype(np.float64)
