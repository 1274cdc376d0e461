"""`autofocus calibrate`: refit a v3 model's heads on the user's labelled z-stacks.

Refits the score row always and, where the depth of field is known (`--dof-um`,
or the optics columns of the corpus manifest, e.g. as `autofocus record-stacks`
writes them), the distance and uncertainty rows and the side-of-focus pair
head's output weights, and reports each leave-one-stack-out: distance error in
DOF and side accuracy, stock vs refit.

Reads 2–30 labelled stacks (2 with a warning: a source may have no more;
corpus folders with a `manifest.csv`; unlabelled stacks in a corpus are
skipped and listed), runs the stock model once per plane to get the frozen
per-patch hidden features, judges leave-one-stack-out (LOSO)
what a refit would do — for each stack, the output layer refitted on the
*other* stacks scores it — next to the stock model and the classical measures,
then refits on all stacks and writes the ONNX file and its card (with the LOSO
report). numpy/scipy only (`autofocus.scoring.calibration`); no torch.

Errors, each one line (`CalibrationError` is a `StackError`): a stack given
directly (not in a labelled corpus) or a corpus without labels, fewer than 2 or
more than 30 labelled stacks, planes of different pixel sizes within a stack,
unreadable files, a model that cannot be calibrated.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from autofocus.errors import ModelError, StackError
from autofocus.scoring.calibration import (
    CalStack,
    OutputLayer,
    distance_error_dof,
    fit_output_layer,
    fit_pair_head,
    patch_hidden,
    read_output_layer,
    side_accuracy,
    stack_logits,
    stack_pairs,
    write_calibrated_model,
)
from autofocus.scoring.registry import get_scorer
from autofocus.stacks.evaluation import judge_curve
from autofocus.stacks.readers import StackLabel, ZStack, iter_corpus, read_stack

MIN_STACKS = 2
FEW_STACKS = 3
"""Fewer labelled stacks than this calibrate with a warning (each LOSO fold fits on one)."""
MAX_STACKS = 30
CLASSICAL = ("tenengrad", "brenner", "nvar", "vol")


class CalibrationError(StackError):
    """Why calibration cannot run, in one sentence."""


def trained_on(card: dict[str, Any]) -> set[str]:
    """Names of real stacks a model was trained or tuned on, as its card records them
    (`training.real_stacks` and the stacks of its own `calibration`)."""
    names = set(card.get("training", {}).get("real_stacks", []) or [])
    names |= set((card.get("calibration") or {}).get("stacks", []) or [])
    return names


def collect_stacks(paths: Sequence[str | Path]) -> tuple[list[tuple[ZStack, StackLabel]],
                                                          list[str]]:
    """Labelled (stack, label) pairs from corpus folders; also the names of skipped stacks.

    Raises `CalibrationError` for a path that is a single stack (no label can
    come with it), a missing path, too few or too many labelled stacks, and
    two stacks of one name.
    """
    found: list[tuple[ZStack, StackLabel]] = []
    skipped: list[str] = []
    for raw in paths:
        path = Path(raw)
        if not path.exists():
            raise CalibrationError(f"no such file or folder: {path}")
        if not (path.is_dir() and (path / "manifest.csv").is_file()):
            stack = read_stack(path)
            raise CalibrationError(
                f"stack {stack.name!r} ({path}) is unlabelled: calibration needs labelled "
                "stacks — give a corpus folder whose manifest.csv has best_z_um and "
                "tolerance_um for each stack")
        for stack, label in iter_corpus(path):
            if label is None or not label.labelled:
                skipped.append(stack.name)
            else:
                found.append((stack, label))
    names = [s.name for s, _ in found]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise CalibrationError(f"stack name(s) {', '.join(dup)} appear more than once")
    if len(found) < MIN_STACKS:
        extra = f" (unlabelled, skipped: {', '.join(skipped)})" if skipped else ""
        raise CalibrationError(f"calibration needs at least {MIN_STACKS} labelled stacks, "
                               f"found {len(found)}{extra}")
    if len(found) > MAX_STACKS:
        raise CalibrationError(f"calibration takes at most {MAX_STACKS} labelled stacks "
                               f"(time budget), got {len(found)}: pick a representative subset")
    return found, skipped


def _summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    rhos = [r["spearman"] for r in rows if r["spearman"] is not None]
    return {"within_tolerance": sum(bool(r["within_tolerance"]) for r in rows),
            "top0": sum(bool(r["top0"]) for r in rows),
            "mean_spearman": float(np.mean(rhos)) if rhos else None,
            "stacks": len(rows)}


def _judge(stack: CalStack, scores: np.ndarray) -> dict[str, Any]:
    v = judge_curve(stack.z_um, scores, stack.best_z_um, stack.tolerance_um)
    return {"stack": stack.name, "error_um": v["error_um"],
            "within_tolerance": v["within_tolerance"], "top0": v["top0"],
            "spearman": v["spearman"]}


def calibrate(paths: Sequence[str | Path], out_path: str | Path, *, model: str | None = None,
              dof_um: float | None = None, l2: float = 1.0,
              classical: Sequence[str] = CLASSICAL,
              progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Calibrate the model `model` (None = newest shipped) on `paths`; write `out_path` + card.

    Returns the report written into the card's `calibration` section:
    stacks used and skipped, LOSO metrics (per stack and summed) of the refit
    vs the stock model vs each classical measure, seconds taken, parity of
    the written file. Raises `CalibrationError`/`StackError`/`ImageError` for bad
    input (see module doc) and `ModelError` for a model without a `hidden` output.
    """
    t0 = time.perf_counter()
    say = progress or (lambda _msg: None)
    out_path = Path(out_path)
    if out_path.suffix.lower() != ".onnx":
        raise CalibrationError(f"--out must name an .onnx file, got {out_path}")
    corpus, skipped = collect_stacks(paths)
    warnings: list[str] = []
    if len(corpus) < FEW_STACKS:
        warnings.append(f"only {len(corpus)} labelled stacks: each leave-one-out fold refits "
                        "on one stack, so the table below is a rough guide; record more "
                        "(autofocus record-stacks) if the instrument allows")
    from autofocus.scoring.defocus import frame_spectrum
    from autofocus.scoring.model import OnnxDefocusScorer, model_id, open_model, sha256_of
    from autofocus.scoring.preprocess import prepare_raw

    scorer = open_model(model, provider="cpu")
    names = {o.name for o in scorer._session.get_outputs()}
    if not isinstance(scorer, OnnxDefocusScorer) or "hidden" not in names:
        raise ModelError(f"model {scorer.model_path.name} cannot be calibrated (no hidden "
                         "output); use focusnet-v3 or a model calibrated from it")
    stock = read_output_layer(scorer)
    head = scorer.pair_head
    classic = {n: get_scorer(n) for n in classical}
    cal: list[CalStack] = []
    classical_scores: dict[str, list[np.ndarray]] = {n: [] for n in classic}
    for stack, label in corpus:
        say(f"reading {stack.name}")
        stack.validate()
        images = stack.images()
        dof = dof_um if dof_um is not None else label.dof_um
        wanted = ("hidden", "features") if dof is not None and head is not None else ("hidden",)
        out = scorer.run_outputs(images, wanted)
        features = spectra = None
        if "features" in out:
            features = np.stack([np.asarray(f, np.float64)[:, 0, 0] for f in out["features"]])
            if head.needs_spectra:  # type: ignore[union-attr]
                spectra = np.stack([frame_spectrum(prepare_raw(im)) for im in images])
        cal.append(CalStack(stack.name, [patch_hidden(h) for h in out["hidden"]],
                            np.asarray(stack.z_um, np.float64), float(label.best_z_um),
                            float(label.tolerance_um), dof, features, spectra))
        for n, sc in classic.items():
            classical_scores[n].append(np.asarray(sc.score(images), np.float64))
        del images
    no_dof = [c.name for c in cal if c.dof_um is None]
    if no_dof:
        warnings.append(f"no depth of field for {', '.join(no_dof)} (give --dof-um or record "
                        "na and wavelength_nm in the manifest): the distance rows and the "
                        "side head are refitted on the other stacks only" if len(no_dof) < len(cal)
                        else "no depth of field known (give --dof-um or record na and "
                        "wavelength_nm in the manifest): only the score row is refitted")
    per_stack: dict[str, list[dict[str, Any]]] = {"calibrated": [], "stock": []}
    per_stack.update({n: [] for n in classic})
    defocus_rows: list[dict[str, Any]] = []
    for i, held in enumerate(cal):
        say(f"LOSO fold {i + 1}/{len(cal)}: refit without {held.name}")
        others = [s for j, s in enumerate(cal) if j != i]
        layer = fit_output_layer(others, stock, dof_um=dof_um, l2=l2)
        per_stack["calibrated"].append(_judge(held, stack_logits(held, layer)))
        per_stack["stock"].append(_judge(held, stack_logits(held, stock)))
        for n in classic:
            per_stack[n].append(_judge(held, classical_scores[n][i]))
        if held.dof_um is not None:
            fold_head = _fit_head(head, others, layer, l2) if head is not None else None
            defocus_rows.append(_defocus_row(held, stock, layer, head, fold_head,
                                             scorer.dist_offset))
    say("refit on all stacks")
    final = fit_output_layer(cal, stock, dof_um=dof_um, l2=l2)
    final_head = _fit_head(head, cal, final, l2) if head is not None else None
    out_path.parent.mkdir(parents=True, exist_ok=True)
    write_calibrated_model(scorer.model_path, final, out_path)
    digest = sha256_of(out_path)  # once: the parity check's card and the final card share it
    parity = _parity(out_path, digest, scorer.card, final, corpus[0][0], cal[0])
    with_dof = any(c.dof_um is not None for c in cal)
    refit_head = final_head is not None and final_head is not head
    overlap = sorted(trained_on(scorer.card) & {s.name for s in cal})
    report = {
        "stock_model": scorer.model_path.name, "stock_sha256": scorer.card["sha256"],
        "stock_id": model_id(scorer.card, scorer.model_path),
        "stock_trained_on": overlap,
        "stacks": [s.name for s in cal], "skipped_unlabelled": skipped,
        "rows_refit": ["score"] + (["log_distance", "log_distance_var"] if with_dof else [])
        + (["pair_head.weights"] if refit_head else []),
        "dof_um": dof_um, "dof_um_per_stack": {c.name: c.dof_um for c in cal}, "l2": l2,
        "loso": {k: {"summary": _summary(v), "per_stack": v} for k, v in per_stack.items()},
        "defocus": {"per_stack": defocus_rows, "summary": _defocus_summary(defocus_rows)},
        "warnings": warnings,
        "parity_max_abs_logit_diff": parity,
        "seconds": round(time.perf_counter() - t0, 1),
    }
    _write_card(scorer.card, out_path, digest, report,
                pair_weights=final_head.weights if refit_head else None)  # type: ignore[union-attr]
    return report


def _fit_head(head: Any, stacks: Sequence[CalStack], layer: OutputLayer, l2: float) -> Any:
    """The pair head refitted on the pairs of `stacks` that have a DOF (else `head`)."""
    xs, cs, ys = [], [], []
    for s in stacks:
        if s.dof_um is None:
            continue
        x, c, y = stack_pairs(s, layer, head, s.dof_um)
        if y.size:
            xs.append(x)
            ys.append(y)
            if c is not None:
                cs.append(c)
    if not ys:
        return head
    return fit_pair_head(head, np.concatenate(xs), np.concatenate(cs) if cs else None,
                         np.concatenate(ys), l2=l2)


def _defocus_row(held: CalStack, stock: OutputLayer, layer: OutputLayer, head: Any,
                 fold_head: Any, dist_offset: float) -> dict[str, Any]:
    """Distance error (median, DOF) and side accuracy of a held-out stack, stock vs refit."""
    assert held.dof_um is not None
    row: dict[str, Any] = {
        "stack": held.name, "dof_um": held.dof_um,
        "distance_error_dof": {
            "stock": distance_error_dof(held, stock, held.dof_um, dist_offset),
            "calibrated": distance_error_dof(held, layer, held.dof_um, dist_offset)},
        "side_accuracy": {"stock": None, "calibrated": None}, "pairs": 0}
    if head is not None and held.features is not None:
        x, c, y = stack_pairs(held, stock, head, held.dof_um)
        row["side_accuracy"]["stock"] = side_accuracy(head, x, c, y)
        x, c, y = stack_pairs(held, layer, fold_head, held.dof_um)
        row["side_accuracy"]["calibrated"] = side_accuracy(fold_head, x, c, y)
        row["pairs"] = int(y.size)
    return row


def _defocus_summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {"stacks": len(rows)}
    for key in ("stock", "calibrated"):
        d = [r["distance_error_dof"][key] for r in rows]
        pairs = sum(r["pairs"] for r in rows if r["side_accuracy"][key] is not None)
        right = sum(r["side_accuracy"][key] * r["pairs"] for r in rows
                    if r["side_accuracy"][key] is not None)
        out[key] = {"median_distance_error_dof": float(np.median(d)) if d else None,
                    "side_accuracy": right / pairs if pairs else None, "pairs": pairs}
    return out


def _parity(path: Path, sha256: str, stock_card: dict, layer: OutputLayer, stack: ZStack,
            cal: CalStack) -> float:
    """Max |logit| difference between the written file (served) and the numpy maths.

    `sha256` is the written file's digest, for the provisional card the file is served with.
    """
    from autofocus.scoring.model import open_model

    card = dict(stock_card, sha256=sha256)
    tmp_card = path.with_suffix(".json")
    tmp_card.write_text(json.dumps(card))

    served = open_model(path, provider="cpu")
    frames = [stack.planes[i].load() for i in range(min(3, len(stack.planes)))]
    got = served.run(frames, "logit")
    want = np.array([stack_logits(CalStack("p", [h], np.zeros(1), 0.0, 1.0), layer)[0]
                     for h in cal.hidden[: len(frames)]])
    diff = float(np.max(np.abs(got - want)))
    if diff > 1e-3:
        raise ModelError(f"the written model disagrees with the fitted weights by {diff:.3g}")
    return diff


def _write_card(stock_card: dict, path: Path, sha256: str, report: dict[str, Any], *,
                pair_weights: np.ndarray | None = None) -> None:
    card = dict(stock_card)
    card.update(file=path.name, sha256=sha256, bytes=path.stat().st_size,
                version=f"{stock_card.get('version', 'v3')}-calibrated",
                calibration=report, parity=None)
    # The stacks the stock model was trained on stay on record: a later calibration from
    # this file must be able to say so too.
    training = dict(card.get("training") or {})
    training["real_stacks"] = sorted(trained_on(stock_card))
    card["training"] = training
    if pair_weights is not None and card.get("pair_head"):
        card["pair_head"] = dict(card["pair_head"], weights=[float(w) for w in pair_weights],
                                 calibrated_on=report["stacks"])
    path.with_suffix(".json").write_text(json.dumps(card, indent=2, sort_keys=True) + "\n")
    lines = [f"# {path.stem}: {card['version']}", "",
             f"Output layer of {report['stock_model']} refitted on {len(report['stacks'])} "
             f"labelled stacks in {report['seconds']} s (rows: {', '.join(report['rows_refit'])}).",
             "", "Leave-one-stack-out (each stack judged by a refit that never saw it):", "",
             "| scorer | within tolerance | top-0 | mean Spearman |", "|---|---|---|---|"]
    for name, v in report["loso"].items():
        s = v["summary"]
        rho = "–" if s["mean_spearman"] is None else f"{s['mean_spearman']:+.3f}"
        lines.append(f"| {row_name(name, report)} | {s['within_tolerance']}/{s['stacks']} | "
                     f"{s['top0']} | {rho} |")
    d = report["defocus"]["summary"]
    if d["stacks"]:
        lines += ["", f"Defocus estimate, leave-one-stack-out on {d['stacks']} stacks with a "
                  "known DOF:", "", "| model | median distance error (DOF) | side accuracy |",
                  "|---|---|---|"]
        for key in ("stock", "calibrated"):
            v = d[key]
            acc = "–" if v["side_accuracy"] is None else f"{v['side_accuracy']:.3f}"
            lines.append(f"| {key} | {v['median_distance_error_dof']:.2f} | {acc} |")
    path.with_suffix(".md").write_text("\n".join(lines) + "\n")


def row_name(name: str, report: dict[str, Any]) -> str:
    """The table's name for a LOSO row: the stock row says when the stock model was
    trained on (some of) these very stacks, so its figure is not held out."""
    if name != "stock":
        return name
    seen = report.get("stock_trained_on") or []
    return f"stock (trained on {len(seen)}/{len(report['stacks'])})" if seen else "stock"


__all__ = ["CalibrationError", "FEW_STACKS", "MAX_STACKS", "MIN_STACKS", "calibrate",
           "collect_stacks", "row_name", "trained_on"]
