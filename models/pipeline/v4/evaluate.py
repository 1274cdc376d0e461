"""The figures of the focusnet-v4 card: leave-one-source-out table and margin table.

    python -m autofocus_models.pipeline.v4.evaluate ../shared/data/real \\
        [--model models/focusnet-v4.onnx] [--ablation models/focusnet-v4-classical.onnx] \\
        [--into-card] [--out FILE]

Runs `autofocus eval --by-source` maths (`autofocus.stacks.evaluation.evaluate_corpus`,
`autofocus.stacks.by_source`) over the corpus for the classical measures, focusnet-v1…v3,
the model and its classical-channels ablation, applies the default rule
(`by_source.default_decision`), and computes per stack the margin of the chosen
plane over the runner-up relative to the stack's score range, (s1 − s2) / (max − min),
for the model's log-odds, its served score (the odds) and Tenengrad. Prints JSON;
`--into-card` stores it in the model's card under `metrics`.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

CLASSICAL = ("tenengrad", "brenner", "vol", "nvar", "vollath")
OLDER = ("focusnet-v1", "focusnet-v2", "focusnet-v3")


def range_margin(scores: Any) -> float | None:
    """(best − runner-up) / (max − min) of one curve; None for a flat or tiny curve."""
    s = np.sort(np.asarray([v for v in scores if v is not None], dtype=np.float64))
    if s.size < 2 or s[-1] == s[0]:
        return None
    return float((s[-1] - s[-2]) / (s[-1] - s[0]))


def run(corpus: Path, model: Path, ablation: Path | None) -> dict[str, Any]:
    """The by-source report, default decision and margin table (see module doc)."""
    from autofocus.scoring.model import open_model
    from autofocus.stacks.by_source import by_source, default_decision, seen_stacks
    from autofocus.stacks.evaluation import evaluate_corpus
    from autofocus.stacks.readers import iter_corpus

    names = [*CLASSICAL, *OLDER, str(model)] + ([str(ablation)] if ablation else [])
    result = evaluate_corpus(corpus, names)
    report = by_source(result, seen_stacks(names))
    decision = default_decision(report, str(model), CLASSICAL)
    scorer = open_model(model, provider="cpu")
    margins = []
    ten = {e["stack"]: e for e in result["scorers"]["tenengrad"]["stacks"]}
    served = {e["stack"]: e for e in result["scorers"][str(model)]["stacks"]}
    for stack, _label in iter_corpus(corpus):
        logodds = scorer.logodds(stack.images())
        margins.append({
            "stack": stack.name,
            "model_logodds": range_margin(logodds),
            "model_served": range_margin(served[stack.name]["scores"]),
            "tenengrad": range_margin(ten[stack.name]["scores"]),
            "model_top0": served[stack.name]["top0"],
            "tenengrad_top0": ten[stack.name]["top0"],
        })
    summary = {n: {k: report["scorers"][n][k] for k in ("held_out", "all")} for n in names}
    per_source = {n: report["scorers"][n]["sources"] for n in names}
    return {"corpus": str(corpus), "sources": report["sources"], "summary": summary,
            "per_source": per_source, "default_rule": decision, "margins": margins}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("corpus", type=Path)
    ap.add_argument("--model", type=Path, default=Path("models/focusnet-v4.onnx"))
    ap.add_argument("--ablation", type=Path, default=Path("models/focusnet-v4-classical.onnx"))
    ap.add_argument("--into-card", action="store_true")
    ap.add_argument("--out", type=Path, help="write the JSON here (default: stdout)")
    args = ap.parse_args(argv)
    out = run(args.corpus, args.model, args.ablation if args.ablation.is_file() else None)
    if args.out is not None:
        args.out.write_text(json.dumps(out, indent=1) + "\n")
    else:
        print(json.dumps(out, indent=1))
    if args.into_card:
        card_path = args.model.with_suffix(".json")
        card = json.loads(card_path.read_text())
        card["metrics"] = {"command": "python -m autofocus_models.pipeline.v4.evaluate "
                                      f"{args.corpus} --into-card", **out}
        card_path.write_text(json.dumps(card, indent=2) + "\n")


if __name__ == "__main__":
    main()
