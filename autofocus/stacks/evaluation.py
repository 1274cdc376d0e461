"""Score z-stacks offline and judge scorers against labelled stacks.

`score_stack` gives the focus curve of one stack for one scorer.
`evaluate_corpus` runs several scorers over a corpus folder (a `manifest.csv`
with labels, as in `shared/data/real`, or plain sub-folders of z-named images)
and reports, per scorer and stack, which plane it would choose and how that
compares with the label:

* `within_tolerance`: |chosen z − best z| ≤ tolerance_um (the manifest's);
* `top0`: the chosen plane is the labelled plane (the plane nearest best z);
* `top1`: the chosen plane is within one plane index of it;
* `spearman`: Spearman rank correlation of the scores with −|z − best z|
  (1 = the curve falls monotonically away from focus; None when undefined,
  e.g. a constant curve).

Unlabelled stacks are scored (their chosen z is reported) but excluded from
the counts. Every stack's images are loaded once and shared by all scorers.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from scipy.stats import spearmanr

from autofocus.errors import AutofocusError, StackError
from autofocus.scoring.base import Scorer
from autofocus.scoring.registry import canonical_scorer_name, get_scorer, is_model_path
from autofocus.stacks.readers import StackLabel, ZStack, iter_corpus, read_stack

ProgressCallback = Callable[[str, int, int], None]
"""`progress(stack_name, stacks_done, stacks_total)`; called with ("", 0, total) first."""

# Float slack when comparing an error with a tolerance: manifest z values are
# decimal strings, so 0.05 - 0.0 may compare as 0.0500000001 > 0.05.
_TOL_SLACK_UM = 1e-9


def _finite_or_none(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


def _best_index(scores: np.ndarray, where: str) -> int:
    if scores.size == 0 or not np.isfinite(scores).any():
        raise AutofocusError(f"{where}: the scorer returned no finite score")
    return int(np.nanargmax(np.where(np.isfinite(scores), scores, np.nan)))


def _margin(scores: np.ndarray) -> float | None:
    """Relative lead of the best score over the runner-up ((s1 − s2) / |s1|), a flatness gauge."""
    finite = np.sort(scores[np.isfinite(scores)])
    if finite.size < 2 or finite[-1] == 0:
        return None
    return float((finite[-1] - finite[-2]) / abs(finite[-1]))


def _spearman(scores: np.ndarray, closeness: np.ndarray) -> float | None:
    if scores.size < 3 or np.ptp(scores) == 0 or np.ptp(closeness) == 0:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rho = spearmanr(scores, closeness).statistic
    return _finite_or_none(float(rho))


def judge_curve(
    z_um: np.ndarray,
    scores: np.ndarray,
    best_z_um: float | None,
    tolerance_um: float | None,
) -> dict[str, Any]:
    """Judge one focus curve against a label; all positions in µm.

    Returns `chosen_index`, `chosen_z_um`, `margin` and, when `best_z_um` and
    `tolerance_um` are given, `labelled_index` (plane nearest best z),
    `error_um` (chosen − best, signed), `within_tolerance`, `top0`, `top1`,
    `spearman`; those are None for an unlabelled curve. Raises `AutofocusError`
    when no score is finite.
    """
    z = np.asarray(z_um, dtype=np.float64)
    s = np.asarray(scores, dtype=np.float64)
    idx = _best_index(s, "focus curve")
    out: dict[str, Any] = {
        "chosen_index": idx,
        "chosen_z_um": float(z[idx]),
        "margin": _margin(s),
        "labelled_index": None,
        "error_um": None,
        "within_tolerance": None,
        "top0": None,
        "top1": None,
        "spearman": None,
    }
    if best_z_um is None or tolerance_um is None:
        return out
    label_idx = int(np.argmin(np.abs(z - best_z_um)))
    error = float(z[idx] - best_z_um)
    out.update(
        labelled_index=label_idx,
        error_um=error,
        within_tolerance=bool(abs(error) <= tolerance_um + _TOL_SLACK_UM),
        top0=idx == label_idx,
        top1=abs(idx - label_idx) <= 1,
        spearman=_spearman(s, -np.abs(z - best_z_um)),
    )
    return out


def score_stack(
    path: str | Path,
    scorer_name: str = "tenengrad",
    *,
    pattern: str | None = None,
    z_step_um: float | None = None,
    scorer_options: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Score every plane of the stack at `path` and pick the sharpest.

    `path`, `pattern` and `z_step_um` are as for `autofocus.stacks.readers.read_stack`;
    `scorer_name` names a registered scorer, built with `scorer_options`.
    Returns `{stack, source, scorer, best_z_um, best_path, best_page,
    best_index, best_score, margin, skipped, planes: [{path, page, z_um,
    score}]}` (z in µm, planes in z order). Raises `StackError` for an unusable
    stack (see `ZStack.validate`), `UnknownNameError` for an unknown scorer,
    `ImageError` for a bad image.
    """
    scorer = get_scorer(scorer_name, **dict(scorer_options or {}))
    stack = read_stack(path, pattern=pattern, z_step_um=z_step_um).validate()
    scores = np.asarray(scorer.score(stack.images()), dtype=np.float64)
    idx = _best_index(scores, f"stack {stack.name!r}")
    best = stack.planes[idx]
    return {
        "stack": stack.name,
        "source": stack.source,
        "scorer": scorer_label(canonical_scorer_name(scorer_name), scorer),
        "best_z_um": best.z_um,
        "best_path": best.path,
        "best_page": best.page,
        "best_index": idx,
        "best_score": float(scores[idx]),
        "margin": _margin(scores),
        "skipped": list(stack.skipped),
        "planes": [
            {"path": p.path, "page": p.page, "z_um": p.z_um, "score": _finite_or_none(s)}
            for p, s in zip(stack.planes, scores.tolist(), strict=True)
        ],
    }


def _stack_entry(
    stack: ZStack, label: StackLabel | None, scores: np.ndarray, score_s: float
) -> dict[str, Any]:
    z = stack.z_um
    best = label.best_z_um if label is not None and label.labelled else None
    tol = label.tolerance_um if label is not None else None
    verdict = judge_curve(z, scores, best, tol if best is not None else None)
    return {
        "stack": stack.name,
        "planes": len(stack),
        "label": label.label if label is not None else "none",
        "modality": label.modality if label is not None else "",
        "source": label.source if label is not None else "",
        "best_z_um": best,
        "tolerance_um": tol,
        "chosen_path": stack.planes[verdict["chosen_index"]].path,
        **verdict,
        "score_s": score_s,
        "z_um": z.tolist(),
        "scores": [_finite_or_none(v) for v in scores.tolist()],
    }


def stack_counts(entries: Sequence[Mapping[str, Any]],
                 flags: Sequence[str] = ("within_tolerance", "top0", "top1")) -> dict[str, Any]:
    """Counts over the labelled stack entries of an evaluation: `{labeled, FLAG...,
    mean_spearman}`, each FLAG the number of labelled entries where it is true
    (unlabelled entries are not counted)."""
    labelled = [e for e in entries if e["best_z_um"] is not None]
    rhos = [e["spearman"] for e in labelled if e["spearman"] is not None]
    return {
        "labeled": len(labelled),
        **{flag: sum(bool(e[flag]) for e in labelled) for flag in flags},
        "mean_spearman": float(np.mean(rhos)) if rhos else None,
    }


def _summarise(entries: list[dict[str, Any]], score_s: float) -> dict[str, Any]:
    return {**stack_counts(entries), "score_s": score_s, "stacks": entries}


def evaluate_corpus(
    directory: str | Path,
    scorer_names: Sequence[str],
    *,
    progress: ProgressCallback | None = None,
    scorer_options: Mapping[str, Mapping[str, Any]] | None = None,
    pattern: str | None = None,
) -> dict[str, Any]:
    """Run each scorer over every stack of a corpus folder and judge it against the labels.

    `directory` holds a `manifest.csv` (labels) or sub-folders of z-named
    images (unlabelled; `pattern` as for `read_stack`). `scorer_names` are
    registered names or aliases (duplicates after resolving aliases are
    dropped; results are keyed by the canonical name); `scorer_options` maps a
    name to keyword options for it. `progress(stack, done, total)` is called
    before the first and after each stack.

    Returns `{"corpus", "stacks", "labeled", "scorers": {NAME: {"labeled",
    "within_tolerance", "top0", "top1", "mean_spearman", "score_s", "stacks":
    [per-stack dicts: stack, planes, label, modality, source, chosen_index,
    chosen_z_um, chosen_path, best_z_um, tolerance_um, labelled_index,
    error_um, within_tolerance, top0, top1, spearman, margin, score_s, z_um,
    scores]}}}` — plain JSON types, None where undefined. Raises
    `UnknownNameError` for an unknown scorer before any image is read,
    `StackError` for an unreadable or unusable stack, `ImageError` for a bad
    image, `ValueError` when no scorer is given.
    """
    if not scorer_names:
        raise ValueError("give at least one scorer name")
    options = {canonical_scorer_name(k): dict(v) for k, v in (scorer_options or {}).items()}
    names: list[str] = []
    for name in scorer_names:
        key = canonical_scorer_name(name)
        if key not in names:
            names.append(key)
    scorers: dict[str, Scorer] = {n: get_scorer(n, **options.get(n, {})) for n in names}

    corpus = list(iter_corpus(directory, pattern=pattern))
    if not corpus:
        raise StackError(f"{directory} holds no stacks")
    total = len(corpus)
    if progress is not None:
        progress("", 0, total)
    entries: dict[str, list[dict[str, Any]]] = {n: [] for n in names}
    timings = dict.fromkeys(names, 0.0)
    for done, (stack, label) in enumerate(corpus, start=1):
        stack.validate()
        images = stack.images()
        for name, scorer in scorers.items():
            t0 = time.perf_counter()
            scores = np.asarray(scorer.score(images), dtype=np.float64)
            elapsed_s = time.perf_counter() - t0
            timings[name] += elapsed_s
            entries[name].append(_stack_entry(stack, label, scores, elapsed_s))
        del images
        if progress is not None:
            progress(stack.name, done, total)
    n_labelled = sum(1 for _, label in corpus if label is not None and label.labelled)
    return {
        "corpus": str(directory),
        "stacks": total,
        "labeled": n_labelled,
        "scorers": {scorer_label(n, scorers[n]): {**_summarise(entries[n], timings[n]),
                                            **_model_fields(n, scorers[n])} for n in names},
    }


def scorer_label(key: str, scorer: Scorer) -> str:
    """A model file is reported by its file name and card id (`Scorer.name` of a model
    opened by path), a registered scorer by its name."""
    return str(getattr(scorer, "name", key)) if is_model_path(key) else key


def _model_fields(key: str, scorer: Scorer) -> dict[str, Any]:
    if not is_model_path(key):
        return {}
    describe = getattr(scorer, "describe", None)
    info = describe() if callable(describe) else {}
    return {"model_path": info.get("model_path", key), "model_id": info.get("model_id")}


__all__ = ["ProgressCallback", "evaluate_corpus", "judge_curve", "score_stack", "scorer_label",
           "stack_counts"]
