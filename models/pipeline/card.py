"""Render the model card JSON as Markdown (`focusnet-v1.md`, next to the model file)."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any


def _f(x: Any, fmt: str = "+.3f") -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "–"
    return format(x, fmt)


def _real_section(real: dict[str, Any]) -> list[str]:
    lines = [
        "## Real stacks (never used for training)",
        "",
        f"`{real['command']}`",
        "",
        "| scorer | within tolerance | top-0 | top-1 | mean Spearman |",
        "|---|---|---|---|---|",
    ]
    for name, s in real["summary"].items():
        lines.append(f"| {name} | {s['within_tolerance']}/{s['labeled']} | {s['top0']} | "
                     f"{s['top1']} | {_f(s['mean_spearman'])} |")
    names = list(real["per_stack"])
    stacks = list(next(iter(real["per_stack"].values())))
    lines += ["", "Per stack: chosen-plane error in µm (✓ = within tolerance, * = top-0), "
              "Spearman.", "", "| stack | " + " | ".join(names) + " |",
              "|---|" + "---|" * len(names)]
    for st in stacks:
        cells = []
        for n in names:
            e = real["per_stack"][n][st]
            mark = ("✓" if e["within_tolerance"] else "✗") + ("*" if e["top0"] else "")
            cells.append(f"{_f(e['error_um'], '+.2f')} {mark} ρ {_f(e['spearman'], '+.2f')}")
        lines.append(f"| {st} | " + " | ".join(cells) + " |")
    return lines + [""]


def _synthetic_section(table: dict[str, dict[str, dict[str, float]]]) -> list[str]:
    lines = [
        "## Held-out synthetic stacks (robustness)",
        "",
        "Fresh seeds (from 1 000 000), never trained on. `train` is the training mix; the "
        "other conditions are outside it: `low_light` 1.5–4 photons/px at full brightness, "
        "`sparse` 1–3 objects on an empty field, `debris` dust on a second plane 6–20 DOF "
        "away, `bf_phase` brightfield of strong phase objects (contrast inverts through "
        "focus). Cells: top-0 rate / in-focus rate (chosen plane within DOF/2) / mean "
        "Spearman.",
        "",
    ]
    conditions = list(table)
    scorers = list(next(iter(table.values())))
    lines += ["| scorer | " + " | ".join(conditions) + " |",
              "|---|" + "---|" * len(conditions)]
    for s in scorers:
        cells = [f"{table[c][s]['top0']:.2f} / {table[c][s]['in_focus']:.2f} / "
                 f"{_f(table[c][s]['spearman'], '+.2f')}" for c in conditions]
        lines.append(f"| {s} | " + " | ".join(cells) + " |")
    return lines + [""]


def render_markdown(card: dict[str, Any]) -> str:
    """The card as a Markdown document (architecture, data, metrics, spec, checksum)."""
    tr = card.get("training", {})
    arch = card.get("architecture", {})
    parity = card.get("parity", {})
    lines = [
        f"# focusnet {card.get('version', '')} — model card",
        "",
        f"File `{card['file']}`, {card['bytes']} bytes, sha256 `{card['sha256']}`. "
        f"ONNX opset {card['onnx']['opset']}, IR version {card['onnx']['ir_version']}, "
        "dynamic batch, height and width.",
        "",
        f"Rebuild: `{card.get('rebuild', 'python -m autofocus_models.pipeline build')}` "
        "(see `models/README.md`).",
        "",
        "## What it does",
        "",
        "Scores how sharp a microscope frame is: `score` in [0, 1] estimates "
        "1/(1+(dz/DOF)²), higher = closer to focus. It is meant for ranking the planes of "
        "one focus search; absolute values are comparable only roughly across specimens.",
        "",
        "## Input",
        "",
        f"- `{card['input']['name']}`: float32 {card['input']['shape']}, "
        f"H, W ≥ {card['input']['min_side_px']} px.",
        f"- Preprocessing: `{card['preprocess']['function']}` version "
        f"`{card['preprocess']['version']}` ({card['input']['intensity']}).",
        f"- {card['input']['layout']}.",
        "",
        "## Architecture",
        "",
        f"- Front end (fixed): {arch.get('front_end', '')}.",
        f"- Head (learned): {arch.get('head', '')}; "
        f"{arch.get('trainable_parameters', '?')} trainable parameters.",
        f"- Pooling: {arch.get('pooling', '')}.",
        "",
        "## Training data",
        "",
        f"- {tr.get('source', '')}.",
        f"- {tr.get('stacks', '?')} stacks × {tr.get('planes_per_stack', '?')} planes, "
        f"{tr.get('frame_px', '?')} px; specimens {tr.get('specimens', {})}; "
        f"modalities {tr.get('modalities', {})}.",
        f"- Targets: {tr.get('label', '')}.",
        f"- Config: {tr.get('config', {})}; training took {_f(tr.get('train_s'), '.0f')} s "
        f"(torch {tr.get('torch', '?')}).",
        "",
    ]
    metrics = card.get("metrics", {})
    cv = metrics.get("synthetic_grouped_cv")
    if cv:
        o = cv["overall"]
        lines += [
            f"## Synthetic cross-validation ({cv['folds']} folds grouped by stack)",
            "",
            f"Spearman {_f(o['spearman'])}, Pearson {_f(o['pearson'])}, top-0 "
            f"{o['top0']:.2f}, top-1 {o['top1']:.2f}, in focus (≤ DOF/2) {o['in_focus']:.2f}, "
            f"median error {o['median_error_dof']:.2f} DOF.",
            "",
        ]
    if "real" in metrics:
        lines += _real_section(metrics["real"])
    if "synthetic_held_out" in metrics:
        lines += _synthetic_section(metrics["synthetic_held_out"])
    if card.get("selection"):
        lines += ["## How this version was chosen (read before trusting the real numbers)", ""]
        lines += [f"- {x}" for x in card["selection"]] + [""]
    if card.get("limitations"):
        lines += ["## Limitations", ""] + [f"- {x}" for x in card["limitations"]] + [""]
    if parity:
        worst = max(parity["max_abs_logit_diff"].values())
        lines += [
            "## Parity",
            "",
            f"torch vs onnxruntime (CPU) logits, max |Δ| = {worst:.2e} over "
            f"{', '.join(parity['max_abs_logit_diff'])} (tolerance {parity['tolerance']}). "
            "Reference logits of the formula inputs are recorded in the JSON card so the "
            "file can be re-checked without torch (`tests/test_onnx_scorer.py`).",
            "",
        ]
    return "\n".join(lines)


def write_markdown(card: dict[str, Any], path: Path) -> None:
    """Write `render_markdown(card)` to `path`."""
    Path(path).write_text(render_markdown(card))


def write_card(card: dict, path: Path) -> None:
    """Write the model card JSON (sorted keys, 2-space indent; numpy scalars as floats)."""
    Path(path).write_text(json.dumps(card, indent=2, sort_keys=True, default=float) + "\n")


def update_card(model_path: Path, change: Callable[[dict], None]) -> dict:
    """Apply `change` to the card of the model at `model_path` (same name, `.json`), write
    it back with `write_card` and return it; the ONNX file and its sha256 stay as they are."""
    card_path = Path(model_path).with_suffix(".json")
    card = json.loads(card_path.read_text())
    change(card)
    write_card(card, card_path)
    return card
