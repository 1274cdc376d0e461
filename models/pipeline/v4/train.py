"""Fit focusnet-v4's head on synthetic stacks (numpy + scipy, no torch) and export it.

    python -m autofocus_models.pipeline.v4.train --out models/focusnet-v4.onnx [--stacks 200]

Data: `autofocus_models.pipeline.synth` stacks (the simulator's optics: twelve
objectives dry to oil, fluorescence and brightfield, debris and second layers,
sparse fields, low light, brightfield phase objects), 21 planes each. No real
image is used, so every real source is held out by construction.

Head: score = features · w + b, fitted per stack as a listwise (Plackett–Luce
top-1) log-likelihood: softmax over the stack's planes of the score against the
target q_i ∝ exp(−|dz_i| / DOF). The score is therefore the log-odds that a
plane is the stack's sharpest (differences between planes are log-odds
ratios): unbounded, never squashed, so planes near focus stay resolvable.
L2 on w, chosen on validation stacks (other seeds). The ablation fits the
same head on the classical channels alone (`features.CLASSICAL`).
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from autofocus_models.pipeline.synth import make_stacks
from autofocus_models.pipeline.v4 import features as F
from scipy.optimize import minimize

MIX = {"train": 0.3, "train_v2": 0.3, "debris": 0.1, "sparse": 0.1, "bf_phase": 0.1,
       "low_light": 0.1}
"""Share of each synthetic condition in the training and validation stacks."""

TRAIN_SEED0 = 400_000
VAL_SEED0 = 500_000
L2_GRID = (1e-4, 1e-3, 1e-2, 1e-1)


def stack_features(n_stacks: int, seed0: int, *, shape: tuple[int, int] = (256, 256),
                   ) -> list[dict[str, Any]]:
    """Feature matrix, |dz| in DOF and condition of `n_stacks` synthetic stacks (the `MIX`)."""
    from autofocus.scoring.model import model_input

    out = []
    for ci, (cond, share) in enumerate(MIX.items()):
        seeds = [seed0 + 10_000 * ci + i for i in range(max(1, round(n_stacks * share)))]
        for st in make_stacks(seeds, cond, shape=shape):
            feats = np.stack([F.features(model_input(f, "2", F.PATCH_PX)) for f in st.frames])
            out.append({"x": feats, "dz": np.abs(st.dz_um) / st.dof_um, "condition": cond,
                        "name": st.name})
    return out


def _target(dz_dof: np.ndarray) -> np.ndarray:
    q = np.exp(-dz_dof)
    return q / q.sum()


def fit_head(stacks: Sequence[dict[str, Any]], cols: Sequence[int], l2: float
             ) -> tuple[np.ndarray, float]:
    """Weights (len(NAMES),, zero outside `cols`) and bias of the listwise head."""
    xs = [s["x"][:, cols] for s in stacks]
    mu = np.mean(np.concatenate(xs), axis=0)
    xs = [x - mu for x in xs]
    qs = [_target(s["dz"]) for s in stacks]

    def loss(w: np.ndarray) -> tuple[float, np.ndarray]:
        total, grad = 0.0, np.zeros_like(w)
        for x, q in zip(xs, qs, strict=True):
            s = x @ w
            s = s - s.max()
            p = np.exp(s)
            p /= p.sum()
            total -= float(q @ np.log(p + 1e-300))
            grad += x.T @ (p - q)
        n = len(xs)
        return total / n + l2 * float(w @ w), grad / n + 2 * l2 * w

    w0 = np.zeros(len(cols))
    w0[0] = 1.0  # start from the finest band energy: the gradient-energy measure
    res = minimize(loss, w0, jac=True, method="L-BFGS-B", options={"maxiter": 500})
    w = np.zeros(len(F.NAMES))
    w[list(cols)] = res.x
    return w, float(-(res.x @ mu))


def judge(stacks: Sequence[dict[str, Any]], w: np.ndarray, b: float) -> dict[str, Any]:
    """Top-0 rate, within-1-DOF rate and mean Spearman of a head on synthetic stacks."""
    from scipy.stats import spearmanr

    top0 = within = 0
    rhos = []
    for s in stacks:
        sc = s["x"] @ w + b
        i = int(np.argmax(sc))
        top0 += i == int(np.argmin(s["dz"]))
        within += s["dz"][i] <= 1.0
        rhos.append(spearmanr(sc, -s["dz"]).statistic)
    n = len(stacks)
    return {"stacks": n, "top0": top0 / n, "within_1dof": within / n,
            "mean_spearman": float(np.nanmean(rhos))}


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=Path("models/focusnet-v4.onnx"))
    ap.add_argument("--stacks", type=int, default=300, help="training stacks (validation: half)")
    args = ap.parse_args(argv)
    t0 = time.time()
    train = stack_features(args.stacks, TRAIN_SEED0)
    val = stack_features(args.stacks // 2, VAL_SEED0)
    t_data = time.time() - t0
    report: dict[str, Any] = {"train_stacks": len(train), "val_stacks": len(val),
                              "data_s": round(t_data, 1), "heads": {}}
    tenengrad_like = np.zeros(len(F.NAMES))
    tenengrad_like[0] = 1.0
    report["heads"]["band-0 energy alone (gradient energy)"] = {
        "val": judge(val, tenengrad_like, 0.0)}
    heads = {}
    for label, cols in (("full", list(range(len(F.NAMES)))), ("classical", F.CLASSICAL)):
        best = None
        for l2 in L2_GRID:
            w, b = fit_head(train, cols, l2)
            v = judge(val, w, b)
            key = (v["top0"] + v["within_1dof"], v["mean_spearman"])
            if best is None or key > best[0]:
                best = (key, l2, w, b, v)
        _, l2, w, b, v = best
        heads[label] = (w, b)
        per_cond = {c: judge([s for s in val if s["condition"] == c], w, b) for c in MIX}
        report["heads"][label] = {"l2": l2, "weights": dict(zip(F.NAMES, w.round(5).tolist(),
                                                                 strict=True)),
                                  "bias": round(b, 5), "val": v, "val_by_condition": per_cond}
    report["heads"]["band-0 energy alone (gradient energy)"]["val_by_condition"] = {
        c: judge([s for s in val if s["condition"] == c], tenengrad_like, 0.0) for c in MIX}
    report["fit_s"] = round(time.time() - t0 - t_data, 1)
    from autofocus_models.pipeline.v4.export import export

    export(heads, report, args.out)
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
