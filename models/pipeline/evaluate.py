"""Evaluation: per-stack curve metrics, grouped cross-validation, real stacks, robustness.

Metrics of one focus curve (scores over planes with known defocus dz):

* `spearman`: rank correlation of the scores with −|dz| (1 = falls monotonically
  away from focus);
* `pearson`: linear correlation of the scores with the label 1/(1+(dz/DOF)²);
* `top0`: the best-scoring plane is the plane nearest focus; `top1`: within one
  plane of it;
* `in_focus`: the chosen plane is within max(DOF/2, nearest plane's |dz|) of focus.

Cross-validation is grouped by stack (a stack's planes never straddle train and
test). Real stacks are judged with `autofocus.stacks.evaluation.judge_curve`, the same
judge `autofocus eval` uses.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from autofocus_models.pipeline.data import FeatureStack, RealStack, front_features, model_inputs
from autofocus_models.pipeline.labels import focus_label
from autofocus_models.pipeline.synth import make_stack
from scipy.stats import pearsonr, spearmanr

from autofocus.stacks.evaluation import judge_curve


def _corr(fn: Callable, a: np.ndarray, b: np.ndarray) -> float:
    if a.size < 3 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(fn(a, b)[0])


def curve_metrics(scores: np.ndarray, dz_um: np.ndarray, dof_um: float) -> dict[str, float]:
    """Metrics (see module doc) of one curve: `scores` and `dz_um` (µm) per plane, DOF in µm."""
    s = np.asarray(scores, np.float64)
    dz = np.asarray(dz_um, np.float64)
    best = int(np.nanargmax(np.where(np.isfinite(s), s, -np.inf)))
    nearest = int(np.argmin(np.abs(dz)))
    return {
        "spearman": _corr(spearmanr, s, -np.abs(dz)),
        "pearson": _corr(pearsonr, s, focus_label(dz, dof_um)),
        "top0": float(best == nearest),
        "top1": float(abs(best - nearest) <= 1),
        "in_focus": float(abs(dz[best]) <= max(0.5 * dof_um, abs(dz[nearest])) + 1e-12),
        "error_dof": float(abs(dz[best]) / dof_um),
    }


def summarise(rows: Sequence[Mapping[str, float]]) -> dict[str, float]:
    """Means of per-stack metrics (NaN correlations skipped) and the stack count."""
    out: dict[str, float] = {"stacks": float(len(rows))}
    for key in ("spearman", "pearson", "top0", "top1", "in_focus", "error_dof"):
        vals = [r[key] for r in rows if math.isfinite(r[key])]
        out[key] = float(np.mean(vals)) if vals else float("nan")
    out["median_error_dof"] = float(np.median([r["error_dof"] for r in rows])) if rows else 0.0
    return out


def grouped_cv(stacks: Sequence[FeatureStack], config: Any, *, folds: int = 5,
               seed: int = 0) -> dict[str, Any]:
    """K-fold cross-validation grouped by stack: train the head on k−1 folds, test on the rest.

    Returns {"folds": k, "overall": summary, "per_fold": [summaries]}.
    """
    from autofocus_models.pipeline.train import fit_ensemble, predict_logits

    order = np.random.default_rng(seed).permutation(len(stacks))
    parts = np.array_split(order, folds)
    rows_all: list[dict[str, float]] = []
    per_fold = []
    for k, test_idx in enumerate(parts):
        train = [stacks[i] for i in order if i not in set(test_idx.tolist())]
        head, _ = fit_ensemble(train, config)
        rows = [curve_metrics(predict_logits(head, stacks[i].features), stacks[i].dz_um,
                              stacks[i].dof_um) for i in test_idx]
        rows_all += rows
        per_fold.append(summarise(rows))
        print(f"  fold {k}: {_fmt(per_fold[-1])}", flush=True)
    return {"folds": folds, "overall": summarise(rows_all), "per_fold": per_fold}


def _fmt(s: Mapping[str, float]) -> str:
    return (f"spearman {s['spearman']:+.3f} pearson {s['pearson']:+.3f} top0 {s['top0']:.2f} "
            f"top1 {s['top1']:.2f} in-focus {s['in_focus']:.2f}")


def judge_real(scores_by_stack: Mapping[str, np.ndarray],
               stacks: Sequence[RealStack]) -> dict[str, Any]:
    """Judge per-stack scores on real stacks like `autofocus eval` (labelled stacks only)."""
    rows = {}
    for st in stacks:
        if st.best_z_um is None:
            continue
        rows[st.name] = judge_curve(st.z_um, scores_by_stack[st.name], st.best_z_um,
                                    st.tolerance_um)
    rhos = [r["spearman"] for r in rows.values() if r["spearman"] is not None]
    return {
        "labelled": len(rows),
        "within_tolerance": sum(bool(r["within_tolerance"]) for r in rows.values()),
        "top0": sum(bool(r["top0"]) for r in rows.values()),
        "top1": sum(bool(r["top1"]) for r in rows.values()),
        "mean_spearman": float(np.mean(rhos)) if rhos else None,
        "stacks": rows,
    }


def real_logits_torch(head: Any, stacks: Sequence[RealStack]) -> dict[str, np.ndarray]:
    """Frame logits of every real stack through the torch head (quick check while iterating)."""
    from autofocus_models.pipeline.train import predict_logits

    return {st.name: predict_logits(head, front_features(model_inputs(st.images)))
            for st in stacks}


def robustness(scorers: Mapping[str, Any], conditions: Sequence[str], *, stacks_per: int,
               seed0: int, shape: tuple[int, int] = (256, 256),
               n_planes: int = 21) -> dict[str, dict[str, dict[str, float]]]:
    """Score held-out synthetic stacks of each condition with every scorer.

    Seeds `seed0 .. seed0 + stacks_per − 1` (keep them disjoint from training
    seeds). Returns {condition: {scorer: summary}}.
    """
    table: dict[str, dict[str, dict[str, float]]] = {}
    for condition in conditions:
        rows: dict[str, list[dict[str, float]]] = {n: [] for n in scorers}
        for seed in range(seed0, seed0 + stacks_per):
            st = make_stack(seed, condition, shape=shape, n_planes=n_planes)
            frames = list(st.frames)
            for name, scorer in scorers.items():
                rows[name].append(curve_metrics(scorer.score(frames), st.dz_um, st.dof_um))
        table[condition] = {n: summarise(r) for n, r in rows.items()}
        print(f"  {condition}: " + "; ".join(
            f"{n} top0 {s['top0']:.2f} in {s['in_focus']:.2f} rho {s['spearman']:+.2f}"
            for n, s in table[condition].items()), flush=True)
    return table
