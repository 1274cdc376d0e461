"""`python -m models.pipeline build` — rebuild the shipped focus model end to end.

Steps (each printed with its time): render the synthetic training stacks and
their front-end features → grouped cross-validation on them → train the head
on all of them → export ONNX + parity check + model card → evaluate the
exported file on the real stacks (side by side with the classical measures,
through `autofocus.evaluation`) and on held-out synthetic robustness
conditions → write the card's JSON and Markdown.

`python -m models.pipeline evaluate --model FILE` re-runs only the evaluation.
Everything is seeded; the training stacks use seeds `0 .. --train-stacks − 1`,
the held-out test and robustness stacks seeds from 1 000 000 on.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path
from typing import Any

from models.pipeline.train import TrainConfig

ROBUSTNESS_CONDITIONS = ("train", "low_light", "sparse", "debris", "bf_phase")
CLASSICAL = ("tenengrad", "vol", "nvar", "brenner")
HELD_OUT_SEED0 = 1_000_000
MODEL_STEM = "focusnet-v1"


def _step(msg: str, t0: float) -> None:
    print(f"[{time.perf_counter() - t0:7.1f} s] {msg}", flush=True)


def _train_features(args: argparse.Namespace, t0: float) -> list:
    from models.pipeline.data import (
        load_feature_stacks,
        save_feature_stacks,
        synth_feature_stacks,
    )

    cache = None
    if args.cache:
        cache = Path(args.cache) / f"train_{args.train_stacks}_{args.planes}.npz"
    if cache is not None and cache.is_file():
        _step(f"loading cached training features {cache}", t0)
        return load_feature_stacks(cache)
    _step(f"rendering {args.train_stacks} synthetic training stacks ({args.workers} workers)", t0)
    stacks = list(synth_feature_stacks(range(args.train_stacks), "train",
                                       n_planes=args.planes, workers=args.workers))
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        save_feature_stacks(cache, stacks)
    return stacks


def _training_summary(stacks: list) -> dict[str, Any]:
    from collections import Counter

    kinds = Counter(s.meta["kind"] for s in stacks)
    modalities = Counter(s.meta["modality"] for s in stacks)
    return {
        "source": "synthetic only (models.pipeline.synth): procedural specimens through the "
                  "simulator's optics (drivers.sim) and a camera noise chain; no real image",
        "stacks": len(stacks),
        "planes_per_stack": int(stacks[0].features.shape[0]),
        "frame_px": [256, 256],
        "seeds": [0, len(stacks) - 1],
        "specimens": dict(kinds),
        "modalities": dict(modalities),
        "label": "1/(1+(dz/DOF)^2) + within-stack ranking pairs (|dz| gap > 0.1 DOF)",
    }


def _evaluate(model_path: Path, args: argparse.Namespace, t0: float) -> dict[str, Any]:
    from autofocus.onnx_scorer import OnnxFocusScorer
    from autofocus.scorer import get_scorer
    from models.pipeline.data import default_real_dir
    from models.pipeline.evaluate import robustness

    metrics: dict[str, Any] = {}
    real_dir = Path(args.real_dir) if args.real_dir else default_real_dir()
    if (real_dir / "manifest.csv").is_file():
        from autofocus.evaluation import evaluate_corpus

        _step(f"evaluating on real stacks in {real_dir} (never trained on)", t0)
        report = evaluate_corpus(real_dir, ["focusnet", *CLASSICAL],
                                 scorer_options={"focusnet": {"model_path": model_path}})
        metrics["real"] = {
            "command": "autofocus eval ../shared/data/real --scorer focusnet --scorer tenengrad "
                       "--scorer vol --scorer nvar --scorer brenner",
            "summary": {n: {k: v for k, v in s.items() if k != "stacks"}
                        for n, s in report["scorers"].items()},
            "per_stack": {n: {e["stack"]: {"error_um": e["error_um"],
                                           "within_tolerance": e["within_tolerance"],
                                           "top0": e["top0"], "spearman": e["spearman"]}
                              for e in s["stacks"] if e["best_z_um"] is not None}
                          for n, s in report["scorers"].items()},
        }
        for n, s in metrics["real"]["summary"].items():
            print(f"    {n:10s} in-tol {s['within_tolerance']}/{s['labeled']} top0 {s['top0']} "
                  f"top1 {s['top1']} spearman {s['mean_spearman']:+.3f}", flush=True)
    else:
        print(f"    (no real corpus at {real_dir}: real-data evaluation skipped)")
    _step(f"robustness on held-out synthetic stacks ({args.robust_stacks} per condition)", t0)
    scorers = {"focusnet": OnnxFocusScorer(model_path, provider="cpu")}
    scorers.update({n: get_scorer(n) for n in CLASSICAL})
    metrics["synthetic_held_out"] = robustness(
        scorers, ROBUSTNESS_CONDITIONS, stacks_per=args.robust_stacks, seed0=HELD_OUT_SEED0,
        n_planes=args.planes)
    return metrics


KNOWN_LIMITATIONS = (
    "Trained on synthetic data only; physics outside the simulator (reflected-light "
    "interference at wafer edges, coherent fringes, JPEG blocking at scale) is not modelled.",
    "Scores are per frame: the input is percentile-normalised, so absolute contrast changes "
    "between planes (which raw classical measures use) reach the model only through the "
    "normalised band energies.",
    "Frames smaller than 64 px on a side are mirror-padded; very small fields (≤ 2 patches) "
    "give the top-k pooling little to choose from.",
)


def _limitations(metrics: dict[str, Any]) -> list[str]:
    """Honest statements derived from the measured metrics, plus the known weaknesses."""
    out = []
    real = metrics.get("real")
    if real:
        summ = real["summary"]
        fn = summ["focusnet"]
        classical = {n: s for n, s in summ.items() if n != "focusnet"}
        best_tol = max(s["within_tolerance"] for s in classical.values())
        best_top0 = max(s["top0"] for s in classical.values())
        best_rho = max((s["mean_spearman"] or -1) for s in classical.values())
        verdict = []
        verdict.append(f"within tolerance {fn['within_tolerance']}/{fn['labeled']} vs best "
                       f"classical {best_tol}/{fn['labeled']}")
        verdict.append(f"top-0 {fn['top0']} vs {best_top0}")
        verdict.append(f"mean Spearman {fn['mean_spearman']:+.3f} vs {best_rho:+.3f}")
        beats = (fn["within_tolerance"] >= best_tol and fn["top0"] > best_top0
                 and (fn["mean_spearman"] or -1) > best_rho)
        out.append(("Beats" if beats else "Does NOT beat") + " the best classical measure on "
                   "the real stacks (the goal is to be better on all three of: within "
                   "tolerance, top-0, mean Spearman): " + "; ".join(verdict) + "."
                   + ("" if beats else " Keep the best classical measure as the default."))
        failed = [st for st, e in real["per_stack"]["focusnet"].items()
                  if not e["within_tolerance"]]
        if failed:
            out.append("Outside tolerance on the real stacks: " + ", ".join(failed) + ".")
    return out + list(KNOWN_LIMITATIONS)


def cmd_build(args: argparse.Namespace) -> int:
    import torch

    from models.pipeline.card import write_markdown
    from models.pipeline.evaluate import grouped_cv
    from models.pipeline.export import export_model, write_card
    from models.pipeline.net import FocusNet
    from models.pipeline.train import fit_ensemble

    t0 = time.perf_counter()
    torch.set_num_threads(args.threads)
    config = TrainConfig(seed=args.seed, threads=args.threads, epochs=args.epochs)
    stacks = _train_features(args, t0)
    cv = None
    if args.cv_folds > 1:
        _step(f"{args.cv_folds}-fold cross-validation grouped by stack", t0)
        cv = grouped_cv(stacks, config, folds=args.cv_folds, seed=args.seed)
    _step(f"training the {config.members}-member head on all training stacks", t0)
    head, history = fit_ensemble(stacks, config, log=True)
    net = FocusNet(config.hidden, config.members)
    net.head = head
    net.eval()
    _step("exporting ONNX, parity check against torch", t0)
    real_images = _parity_images(args)
    extra = {
        "created_by": "python -m models.pipeline build",
        "training": {**_training_summary(stacks), "config": config.as_dict(),
                     "final_loss": [h["epoch_loss"][-1] for h in history["members"]],
                     "train_s": history["train_s"],
                     "torch": torch.__version__, "python": platform.python_version()},
        "metrics": {"synthetic_grouped_cv": cv},
    }
    out = Path(args.out)
    onnx_path, card = export_model(net, out, MODEL_STEM, extra, real_images)
    print(f"    wrote {onnx_path} ({card['bytes']} bytes), parity "
          f"{max(card['parity']['max_abs_logit_diff'].values()):.2e}", flush=True)
    if not args.skip_eval:
        card["metrics"].update(_evaluate(onnx_path, args, t0))
    card["limitations"] = _limitations(card["metrics"])
    card["build_s"] = round(time.perf_counter() - t0, 1)
    write_card(card, onnx_path.with_suffix(".json"))
    write_markdown(card, onnx_path.with_suffix(".md"))
    _step(f"done: {onnx_path}, {onnx_path.with_suffix('.json')}, "
          f"{onnx_path.with_suffix('.md')}", t0)
    return 0


def _parity_images(args: argparse.Namespace) -> list:
    """A few real frames (model inputs) for the parity check; inference only, never training."""
    from models.pipeline.data import default_real_dir, model_inputs

    real_dir = Path(args.real_dir) if args.real_dir else default_real_dir()
    if not (real_dir / "manifest.csv").is_file():
        return []
    from autofocus.stacks import iter_corpus

    images = []
    for stack, _ in iter_corpus(real_dir):
        images.append(model_inputs([stack.planes[len(stack.planes) // 2].load()])[0])
    return images


def cmd_evaluate(args: argparse.Namespace) -> int:
    import json

    from models.pipeline.card import write_markdown
    from models.pipeline.export import write_card

    t0 = time.perf_counter()
    model = Path(args.model)
    metrics = _evaluate(model, args, t0)
    if args.update_card:
        card = json.loads(model.with_suffix(".json").read_text())
        card.setdefault("metrics", {}).update(metrics)
        card["limitations"] = _limitations(card["metrics"])
        write_card(card, model.with_suffix(".json"))
        write_markdown(card, model.with_suffix(".md"))
    else:
        print(json.dumps(metrics, indent=2, default=float))
    return 0


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point (see module doc)."""
    parser = argparse.ArgumentParser(prog="python -m models.pipeline", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    default_out = Path(__file__).resolve().parents[1]
    for name in ("build", "evaluate"):
        p = sub.add_parser(name)
        p.add_argument("--real-dir", default=None,
                       help="real corpus (default ../shared/data/real or AUTOFOCUS_REAL_DATA)")
        p.add_argument("--robust-stacks", type=int, default=30,
                       help="held-out synthetic stacks per robustness condition")
        p.add_argument("--planes", type=int, default=21, help="planes per synthetic stack")
        if name == "build":
            p.add_argument("--out", default=str(default_out), help="output folder (models/)")
            p.add_argument("--train-stacks", type=int, default=1000)
            p.add_argument("--epochs", type=int, default=TrainConfig.epochs)
            p.add_argument("--cv-folds", type=int, default=5)
            p.add_argument("--seed", type=int, default=0)
            p.add_argument("--workers", type=int, default=2)
            p.add_argument("--threads", type=int, default=1, help="torch threads")
            p.add_argument("--cache", default=None, help="folder caching training features")
            p.add_argument("--skip-eval", action="store_true")
        else:
            p.add_argument("--model", default=str(default_out / f"{MODEL_STEM}.onnx"))
            p.add_argument("--update-card", action="store_true",
                           help="write the metrics into the model card (JSON + MD)")
    args = parser.parse_args(argv)
    return cmd_build(args) if args.command == "build" else cmd_evaluate(args)


if __name__ == "__main__":
    sys.exit(main())
