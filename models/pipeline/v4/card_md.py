"""Render the tables of the focusnet-v4 card (Markdown) from its JSON card.

    python -m autofocus_models.pipeline.v4.card_md models/focusnet-v4.json

Prints the leave-one-source-out table (per source, with its modality), the
held-out totals with the default rule's verdict, the margin table and the
synthetic validation table; models/focusnet-v4.md quotes them.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

SHORT = {"models/focusnet-v4.onnx": "focusnet-v4",
         "models/focusnet-v4-classical.onnx": "v4 head, classical channels only (ablation)"}


def _name(n: str) -> str:
    return SHORT.get(n, n)


def _rho(x: float | None) -> str:
    return "–" if x is None else f"{x:+.3f}"


def tables(card: dict[str, Any]) -> str:
    m = card["metrics"]
    out = []
    labelled = [s for s in m["sources"] if s["labeled"]]
    out.append("| source (modality, stacks) | " + " | ".join(_name(n) for n in m["per_source"])
               + " |")
    out.append("|---" * (len(m["per_source"]) + 1) + "|")
    for s in labelled:
        cells = []
        for n in m["per_source"]:
            g = m["per_source"][n][s["source"]]
            seen = " (trained on)" if g["seen"] else ""
            cells.append(f"{g['within_tolerance']}/{g['labeled']}, {g['top0']}, "
                         f"{_rho(g['mean_spearman'])}{seen}")
        out.append(f"| {s['source'].removeprefix('github:')} ({s['modality']}; "
                   f"{', '.join(s['stacks'])}) | " + " | ".join(cells) + " |")
    out.append("")
    out.append("| scorer | within tolerance | top-0 | mean Spearman (stacks) | "
               "mean Spearman (per source) |")
    out.append("|---|---|---|---|---|")
    for n, s in m["summary"].items():
        h = s["held_out"]
        out.append(f"| {_name(n)} | {h['within_tolerance']}/{h['labeled']} | {h['top0']} | "
                   f"{_rho(h['mean_spearman'])} | {_rho(h['mean_spearman_by_source'])} |")
    d = m["default_rule"]
    out.append("")
    out.append(f"Default rule: best classical measure `{d['best_classical']}`; verdict: "
               f"default = `{_name(d['default'])}`"
               + (f" ({'; '.join(d['reasons'])})" if d["reasons"] else
                  " (within tolerance ≥, top-0 ≥, higher mean Spearman)") + ".")
    out.append("")
    out.append("| stack | v4 margin (log-odds) | v4 margin (served odds) | Tenengrad margin | "
               "v4 top-0 | Tenengrad top-0 |")
    out.append("|---|---|---|---|---|---|")
    for r in m["margins"]:
        def f(x: float | None) -> str:
            return "–" if x is None else f"{x:.2e}"

        def yn(x: bool | None) -> str:
            return "–" if x is None else ("yes" if x else "no")

        out.append(f"| {r['stack']} | {f(r['model_logodds'])} | {f(r['model_served'])} | "
                   f"{f(r['tenengrad'])} | {yn(r['model_top0'])} | {yn(r['tenengrad_top0'])} |")
    out.append("")
    t = card["training"]
    conds = list(next(iter(h for h in t["heads"].values() if "val_by_condition" in h))
                 ["val_by_condition"])
    out.append("| head (synthetic validation, top-0 / within 1 DOF / mean Spearman) | all | "
               + " | ".join(conds) + " |")
    out.append("|---" * (len(conds) + 2) + "|")
    for label, h in t["heads"].items():
        v = h["val"]
        cells = [f"{v['top0']:.2f} / {v['within_1dof']:.2f} / {v['mean_spearman']:.2f}"]
        for c in conds:
            x = h["val_by_condition"][c]
            cells.append(f"{x['top0']:.2f} / {x['within_1dof']:.2f} / {x['mean_spearman']:.2f}")
        out.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(out) + "\n"


def main() -> None:
    print(tables(json.loads(Path(sys.argv[1]).read_text())), end="")


if __name__ == "__main__":
    main()
