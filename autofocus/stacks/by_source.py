"""Judge scorers by source: the leave-one-source-out (LOSO) view of an evaluation.

The shared corpus comes in near-duplicate groups (three tiles of one wafer, three
stacks of one light-sheet microscope): a stack held out alone is rarely new to a
recipe that saw its siblings. Grouping by the manifest's `source` (the repository
a stack came from: one instrument, one modality) makes each group one unseen
instrument. For a scorer that was never fitted on the corpus (the classical
measures, a model trained on synthetic stacks only) every source is held out by
construction, and the per-source table below *is* its leave-one-source-out figure.
A model card may list the real stacks it was trained on (`real_training_stacks`):
those entries are flagged `seen` and counted apart, so a trained-on figure is never
passed off as held out.

`by_source(result)` takes what `evaluate_corpus` returns; `default_decision`
applies the service's rule for replacing the classical default with a model.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from autofocus.stacks.evaluation import stack_counts


def source_key(source: str) -> str:
    """The group a manifest `source` belongs to: its repository (`github:owner/name`).

    Two stacks from different paths of one repository are one instrument (the
    DFNN `data/test` stacks, the wafer tiles); an empty source is its own group "".
    """
    return source.strip().split()[0] if source.strip() else ""


def _group(entries: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    return {**stack_counts(entries, flags=("within_tolerance", "top0")),
            "stacks": [e["stack"] for e in entries]}


def by_source(result: Mapping[str, Any],
              seen: Mapping[str, Sequence[str]] | None = None) -> dict[str, Any]:
    """Per-scorer, per-source counts from an `evaluate_corpus` result.

    `seen` maps a scorer name to the stack names it was trained on (excluded
    from its `held_out` totals and flagged per source). Returns `{"sources":
    [{source, modality, stacks, labeled}], "scorers": {NAME: {"sources": {SOURCE:
    {labeled, within_tolerance, top0, mean_spearman, stacks, seen}}, "held_out":
    {labeled, within_tolerance, top0, mean_spearman, sources}, "all": {...}}}}`.
    Mean Spearman in `held_out`/`all` is the mean over stacks (as `autofocus eval`);
    `mean_spearman_by_source` is the mean of the per-source means (each
    instrument weighs the same). Unlabelled stacks are listed but not counted.
    """
    seen = {k: set(v) for k, v in (seen or {}).items()}
    sources: dict[str, dict[str, Any]] = {}
    out: dict[str, Any] = {"sources": [], "scorers": {}}
    for name, summary in result["scorers"].items():
        groups: dict[str, list[Mapping[str, Any]]] = {}
        for e in summary["stacks"]:
            key = source_key(str(e.get("source", "")))
            groups.setdefault(key, []).append(e)
            info = sources.setdefault(key, {"source": key, "modality": e.get("modality", ""),
                                            "stacks": [], "labeled": 0})
            if e["stack"] not in info["stacks"]:
                info["stacks"].append(e["stack"])
                info["labeled"] += e["best_z_um"] is not None
        seen_here = seen.get(name, set())
        per_source = {}
        for key, entries in groups.items():
            g = _group(entries)
            g["seen"] = sorted(seen_here & set(g["stacks"]))
            per_source[key] = g
        held = [e for e in summary["stacks"] if e["stack"] not in seen_here]
        totals = {}
        for label, entries in (("held_out", held), ("all", list(summary["stacks"]))):
            g = _group(entries)
            del g["stacks"]
            means = [_group([e for e in entries if source_key(str(e.get("source", ""))) == k]
                            )["mean_spearman"] for k in groups]
            means = [m for m in means if m is not None]
            g["mean_spearman_by_source"] = float(np.mean(means)) if means else None
            g["sources"] = len({source_key(str(e.get("source", ""))) for e in entries
                                if e["best_z_um"] is not None})
            totals[label] = g
        out["scorers"][name] = {"sources": per_source, **totals}
    out["sources"] = sorted(sources.values(), key=lambda s: (-s["labeled"], s["source"]))
    return out


def default_decision(report: Mapping[str, Any], model: str, classical: Sequence[str],
                     fallback: str = "tenengrad") -> dict[str, Any]:
    """Whether `model` may replace the classical default (issue 21 item 5), on held-out figures.

    The model must be within tolerance at least as often and on the labelled
    plane (top-0) at least as often as the best classical measure, and have the
    higher mean Spearman; otherwise `fallback` stays the default. The best
    classical measure is the one with most within-tolerance, then top-0, then
    mean Spearman. Returns `{"default",
    "model", "best_classical", "figures": {name: held_out totals}, "reasons"}`.
    """
    scorers = report["scorers"]

    def key(name: str) -> tuple[float, float, float]:
        h = scorers[name]["held_out"]
        return (h["within_tolerance"], h["top0"], h["mean_spearman"] or -2.0)

    best = max(classical, key=key)
    m, c = scorers[model]["held_out"], scorers[best]["held_out"]
    reasons = []
    if m["labeled"] != c["labeled"]:
        reasons.append(f"{model} is held out on {m['labeled']} stacks, {best} on {c['labeled']}")
    if m["within_tolerance"] < c["within_tolerance"]:
        reasons.append(f"within tolerance {m['within_tolerance']} < {c['within_tolerance']}")
    if m["top0"] < c["top0"]:
        reasons.append(f"top-0 {m['top0']} < {c['top0']}")
    if (m["mean_spearman"] or -2.0) <= (c["mean_spearman"] or -2.0):
        reasons.append(f"mean Spearman {m['mean_spearman']:.3f} <= {c['mean_spearman']:.3f}")
    return {
        "default": fallback if reasons else model,
        "model": model,
        "best_classical": best,
        "figures": {model: dict(m), best: dict(c)},
        "reasons": reasons,
    }


def seen_stacks(scorer_names: Sequence[str]) -> dict[str, list[str]]:
    """For each model among `scorer_names`, the real stacks its card says it was trained on.

    Reads the card's `real_training_stacks` (absent = none); classical measures
    and models that cannot be opened are left out (they saw nothing).
    """
    import re
    from pathlib import Path

    from autofocus.errors import AutofocusError
    from autofocus.scoring.model import card_path_for, default_model_path, load_card, shipped_models

    out: dict[str, list[str]] = {}
    shipped = shipped_models()
    for name in scorer_names:
        m = re.fullmatch(r"focusnet-v(\d+)", name)
        if name == "focusnet":
            path = default_model_path()
        elif m and int(m.group(1)) in shipped:
            path = shipped[int(m.group(1))]
        elif name.endswith(".onnx"):
            path = Path(name)
        else:
            continue
        try:
            card = load_card(card_path_for(path))
        except AutofocusError:
            continue
        stacks = card.get("real_training_stacks") or []
        if stacks:
            out[name] = [str(s) for s in stacks]
    return out


__all__ = ["by_source", "default_decision", "seen_stacks", "source_key"]
