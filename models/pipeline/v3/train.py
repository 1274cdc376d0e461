"""Train focusnet-v3's head (torch) on precomputed front-end features.

Per patch an MLP 26→H→H→4 (score logit s, log-distance mean m, its log-variance
lv, specimen logit q), pooled as the ONNX graph pools (see
`autofocus_models.pipeline.v3.graph`). Loss, per batch of stacks plus a batch of
no-specimen frames:

* score: MSE(sigmoid(logit), 1/(1+(dz/DOF)²)) + RankNet over within-stack pairs
  (closer vs farther by > 0.1 DOF) — as v1/v2;
* distance: Gaussian NLL of t = log(|dz|/DOF + DIST_OFFSET) under N(m, exp(lv)),
  plus the same ranking pairs on −m (closer frames must get smaller m: the
  signed estimate from two frames relies on distance *differences*);
* specimen: BCE of the specimen logit, 1 for stack frames within `specimen_max_dof`
  of focus (low-light stacks left out: their specimen may be invisible), 0 for
  no-specimen frames.

Deterministic for a seed and thread count.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F
from autofocus_models.pipeline.labels import focus_label
from autofocus_models.pipeline.train import channel_last, pair_mask, rank_loss
from autofocus_models.pipeline.v3 import graph
from autofocus_models.pipeline.v3.data import FeatureStack
from torch import nn


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of v3 head training (defaults = the shipped model's)."""

    hidden: int = 32
    epochs: int = 120
    batch_stacks: int = 32
    lr: float = 3e-3
    weight_decay: float = 1e-4
    rank_weight: float = 1.0
    dist_weight: float = 0.5
    dist_rank_weight: float = 0.5
    specimen_weight: float = 1.0
    specimen_max_dof: float = 5.0
    min_gap_dof: float = 0.1
    seed: int = 0
    threads: int = 1
    topk_div: int = graph.TOPK_DIV

    def as_dict(self) -> dict:
        """Plain dict (model card)."""
        return asdict(self)


class HeadV3(nn.Module):
    """The v3 head on channel-last features (..., n_patches, 26) → per-patch (..., P, 4)."""

    def __init__(self, hidden: int = 24, topk_div: int = graph.TOPK_DIV) -> None:
        super().__init__()
        self.hidden = hidden
        self.topk_div = topk_div
        self.register_buffer("feature_mean", torch.zeros(graph.N_FEATURES))
        self.register_buffer("feature_std", torch.ones(graph.N_FEATURES))
        self.l1 = nn.Linear(graph.N_FEATURES, hidden)
        self.l2 = nn.Linear(hidden, hidden)
        self.out = nn.Linear(hidden, graph.N_OUT)

    def hidden_layer(self, x: torch.Tensor) -> torch.Tensor:
        h = (x - self.feature_mean) / self.feature_std
        return F.relu(self.l2(F.relu(self.l1(h))))

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Pooled outputs for (..., P, 26): logit, m, lv, specimen_logit (each (...))."""
        o = self.out(self.hidden_layer(x))
        s, m, lv, q = o.unbind(-1)
        k = max(1, s.shape[-1] // self.topk_div)
        top_s, idx = torch.topk(s, k, dim=-1)
        return {
            "logit": top_s.mean(-1),
            "m": torch.gather(m, -1, idx).mean(-1),
            "lv": torch.gather(lv, -1, idx).mean(-1),
            "specimen_logit": torch.topk(
                q, max(1, q.shape[-1] // graph.TOPK_Q_DIV), dim=-1).values.mean(-1),
        }

    def weights(self) -> dict[str, np.ndarray]:
        """Weights under the names `graph.build_onnx` expects."""
        def a(t: torch.Tensor) -> np.ndarray:
            return t.detach().cpu().numpy().astype(np.float32)
        return {"feature_mean": a(self.feature_mean), "feature_std": a(self.feature_std),
                "l1.weight": a(self.l1.weight), "l1.bias": a(self.l1.bias),
                "l2.weight": a(self.l2.weight), "l2.bias": a(self.l2.bias),
                graph.OUT_WEIGHT: a(self.out.weight), graph.OUT_BIAS: a(self.out.bias)}


def _stack_tensors(stacks: Sequence[FeatureStack], min_gap_dof: float,
                   specimen_max_dof: float = 5.0):
    x = channel_last(np.stack([s.features for s in stacks]))        # (S, P, n, 26)
    dz_dof = np.stack([np.abs(s.dz_um) / s.dof_um for s in stacks])
    y = torch.from_numpy(np.stack([focus_label(s.dz_um, s.dof_um) for s in stacks])
                         .astype(np.float32))
    t = torch.from_numpy(np.log(dz_dof + graph.DIST_OFFSET).astype(np.float32))
    # Frames that surely show a specimen: within `specimen_max_dof` of focus and not from a
    # low-light stack (whose specimen may be invisible even in focus).
    spec_ok = torch.from_numpy(np.stack([
        (np.abs(s.dz_um) / s.dof_um <= specimen_max_dof)
        & (s.meta.get("condition") != "low_light") for s in stacks]))
    return x, y, t, pair_mask(stacks, min_gap_dof), spec_ok


def fit_head(stacks: Sequence[FeatureStack], blank_features: np.ndarray,
             config: TrainConfig = TrainConfig(), *, log: bool = False
             ) -> tuple[HeadV3, dict]:
    """Train a `HeadV3` on `stacks` (equal plane count and grid) and no-specimen features.

    `blank_features` (B, 26, gh, gw) with the stacks' patch grid. Returns the
    head (eval mode) and a history dict. Raises `ValueError` for no stacks.
    """
    if not stacks:
        raise ValueError("no training stacks")
    torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    gen = np.random.default_rng(config.seed)
    x, y, t, mask, spec_ok = _stack_tensors(stacks, config.min_gap_dof,
                                            config.specimen_max_dof)
    xb = channel_last(blank_features)                                # (B, n, 26)
    head = HeadV3(config.hidden, config.topk_div)
    flat = torch.cat([x.reshape(-1, graph.N_FEATURES), xb.reshape(-1, graph.N_FEATURES)])
    head.feature_mean.copy_(flat.mean(0))
    head.feature_std.copy_(flat.std(0).clamp(min=1e-2))
    opt = torch.optim.AdamW(head.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    steps = max(1, int(np.ceil(len(stacks) / config.batch_stacks)))
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=config.lr,
                                                total_steps=config.epochs * steps)
    blank_per_step = max(8, int(np.ceil(xb.shape[0] / steps)))
    history: dict = {"epoch_loss": []}
    t0 = time.perf_counter()
    head.train()
    for epoch in range(config.epochs):
        order = gen.permutation(len(stacks))
        border = gen.permutation(xb.shape[0])
        total_epoch = 0.0
        for b in range(steps):
            idx = torch.from_numpy(order[b * config.batch_stacks:(b + 1) * config.batch_stacks])
            out = head(x[idx])
            bi = torch.from_numpy(border[(b * blank_per_step) % xb.shape[0]:][:blank_per_step])
            out_b = head(xb[bi])
            mse = F.mse_loss(torch.sigmoid(out["logit"]), y[idx])
            rank = rank_loss(out["logit"], mask[idx])
            lv = out["lv"].clamp(-8.0, 6.0)
            nll = 0.5 * (lv + (t[idx] - out["m"]) ** 2 * torch.exp(-lv)).mean()
            drank = rank_loss(-out["m"] * 3.0, mask[idx])
            sure = out["specimen_logit"][spec_ok[idx]]
            spec_logits = torch.cat([sure, out_b["specimen_logit"]])
            spec_y = torch.cat([torch.ones(sure.numel()),
                                torch.zeros(out_b["specimen_logit"].numel())])
            bce = F.binary_cross_entropy_with_logits(spec_logits, spec_y)
            total = (mse + config.rank_weight * rank + config.dist_weight * nll
                     + config.dist_rank_weight * drank + config.specimen_weight * bce)
            opt.zero_grad()
            total.backward()
            opt.step()
            sched.step()
            total_epoch += float(total.detach())
        history["epoch_loss"].append(total_epoch / steps)
        if log and (epoch % 5 == 0 or epoch == config.epochs - 1):
            print(f"  epoch {epoch:3d} loss {total_epoch / steps:.4f} "
                  f"(mse {float(mse.detach()):.4f} "
                  f"rank {float(rank.detach()):.3f} nll {float(nll.detach()):.3f} "
                  f"drank {float(drank.detach()):.3f} bce {float(bce.detach()):.4f})",
                  flush=True)
    history["train_s"] = time.perf_counter() - t0
    head.eval()
    return head, history


def predict(head: HeadV3, features: np.ndarray) -> dict[str, np.ndarray]:
    """Pooled head outputs for features (n, 26, gh, gw) as float64 numpy arrays."""
    with torch.no_grad():
        out = head(channel_last(features))
    return {k: v.numpy().astype(np.float64) for k, v in out.items()}
