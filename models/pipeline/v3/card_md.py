"""Render a focusnet-v3 card (JSON) as the readable model card (Markdown).

`python -m autofocus_models.pipeline.v3.card_md models/focusnet-v3.json` rewrites
`models/focusnet-v3.md` from the JSON, so the numbers in the prose are the
numbers in the card.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any


def _f(x: Any, fmt: str = ".3f") -> str:
    return "–" if x is None else format(x, fmt)


def _shares(per: dict[str, float]) -> str:
    """"name 12.3%, …" for a per-condition / per-kind dict of shares."""
    return ", ".join(f"{k} {v:.1%}" for k, v in per.items())


def _loso_row(name: str, s: dict) -> str:
    """One row of a leave-one-stack-out table (within tolerance, top-0, mean Spearman)."""
    return (f"| {name} | {s['within_tolerance']}/{s['stacks']} | {s['top0']} | "
            f"{s['mean_spearman']:+.3f} |")


def _pair_head_lines(ph: dict) -> list[str]:
    """The pair head's version and training in a few lines."""
    if not ph:
        return []
    if int(ph.get("version", 1)) >= 3:
        return ["Pair head version 3 (`python -m autofocus_models.pipeline.v3.pair_v3`; "
                f"the ONNX file is "
                f"unchanged by it): an antisymmetric MLP, log-odds = g(x, c) − g(−x, c) with g "
                f"one tanh layer of {ph.get('hidden', len(ph['weights']))} units, numpy at run "
                f"time; x = version 2's 101 features (the change of 16 radial band powers of "
                f"both frames, `frame_spectrum`, Hann-windowed 192-px tiles, noise floor "
                f"removed, which cancels the specimen band by band, plus the 37 version-1 "
                f"features), c = {len(ph.get('context_mean', []))} swap-invariant context "
                f"features (`pair_context_features`: per-band signal-to-floor ratio and "
                f"spectral shape, mean predicted distance and contrast); swapping the frames "
                f"negates the log-odds exactly. {ph['train_pairs']} pairs from "
                f"{ph.get('train_stacks', '?')} synthetic stacks (seeds from "
                f"{ph.get('train_seed0', '?')}), training accuracy {ph['train_accuracy']:.1%}.",
                ""]
    if int(ph.get("version", 1)) >= 2:
        return ["Pair head version 2 (`python -m autofocus_models.pipeline.v3.pair_v2`; "
                f"the ONNX file is "
                f"unchanged by it): logistic on the change of 16 radial band powers of both frames "
                f"(`frame_spectrum`, Hann-windowed 192-px tiles, noise floor removed; the ratio "
                f"of two frames' spectra is the ratio of the optical transfer functions, so the "
                f"specimen cancels band by band) plus the 37 version-1 features; "
                f"{ph['train_pairs']} pairs from {ph.get('train_stacks', '?')} synthetic stacks "
                f"(seeds from {ph.get('train_seed0', '?')}), training accuracy "
                f"{ph['train_accuracy']:.1%}.", ""]
    return [f"Pair head version 1: {ph.get('train_pairs', '?')} pairs, training accuracy "
            f"{ph.get('train_accuracy', float('nan')):.1%}.", ""]


def render(card: dict[str, Any]) -> str:
    """Markdown text of the card."""
    m = card.get("metrics", {})
    tr = card.get("training", {})
    lines = [
        f"# focusnet {card['version']} — model card", "",
        f"File `{card['file']}`, {card['bytes']} bytes, sha256 `{card['sha256']}`. ONNX opset "
        f"{card['onnx']['opset']}, IR version {card['onnx']['ir_version']}, dynamic batch, "
        "height and width.", "",
        "Rebuild: `python -m autofocus_models.pipeline.v3.build --cache DIR "
        "--real ../shared/data/real` "
        "(see `models/README.md`).", "",
        "## What it does", "",
        "One batched graph, per frame: `score` (ranking sharpness, estimate of "
        "1/(1+(dz/DOF)²)), `distance_dof` (|dz| in depth-of-field units) with "
        "`log_distance_var` (its uncertainty, Gaussian NLL-trained), `no_specimen_p` "
        "(blank / saturated / noise-only field). `OnnxDefocusScorer.estimate(frames, z_um, "
        "dof_um=)` turns these into a `DefocusEstimate` and, from frames at ≥ 2 distinct z, a "
        "signed focal plane: inverse-variance V-fit of the distances plus the card's "
        "`pair_head` (band-energy change between two frames of one field, which cancels the "
        "specimen) deciding the side.", "",
        *_pair_head_lines(card.get("pair_head") or {}),
        "## Input", "",
        f"- `{card['input']['name']}` float32 (N, 1, H, W); preprocessing version "
        f"`{card['preprocess']['version']}` = `{card['preprocess']['function']}`: "
        f"{card['input']['intensity']}.",
        f"- {card['input']['layout']}.", "",
        "## Architecture", "",
        f"- Front end (fixed): {card['architecture']['front_end']}.",
        f"- Head: {card['architecture']['head']}; "
        f"{card['architecture']['trainable_parameters']} trainable parameters.",
        f"- Pooling: {card['architecture']['pooling']}.", "",
        "## Training data", "",
        f"- {tr.get('source', '')}",
        f"- {tr.get('stacks')} stacks × {tr.get('planes_per_stack')} planes, "
        f"{tr.get('frame_px')} px; conditions {tr.get('conditions')}; "
        f"{tr.get('no_specimen_frames')} no-specimen frames "
        f"({', '.join(tr.get('kinds_of_no_specimen', []))}).",
        f"- Config {tr.get('config')}; head training {tr.get('train_s')} s.",
    ]
    cal = card.get("calibration")
    if cal:
        lines += [f"- Then the score row of the output layer was refitted on the "
                  f"{len(cal['stacks'])} labelled real stacks ({', '.join(cal['stacks'])}) with "
                  "`autofocus calibrate`'s maths (numpy/scipy).", ""]
    loso = m.get("real_loso")
    if loso:
        lines += ["## Real stacks, leave-one-stack-out", "",
                  f"Command: `{loso['command']}`. Protocol: {loso['protocol']}.", "",
                  "| model | within tolerance | top-0 | mean Spearman |", "|---|---|---|---|"]
        for k, s in loso["summary"].items():
            lines.append(_loso_row(k, s))
        if cal:
            lines += ["", "Classical measures on the same stacks (no training involved):", "",
                      "| scorer | within tolerance | top-0 | mean Spearman |", "|---|---|---|---|"]
            for k in ("tenengrad", "brenner", "nvar", "vol"):
                s = cal["loso"].get(k, {}).get("summary")
                if s:
                    lines.append(_loso_row(k, s))
        lines.append("")
    syn = m.get("synthetic")
    if syn:
        lines += ["## Held-out synthetic stacks (seeds ≥ 3 000 000)", "",
                  "| condition | mean Spearman | top-0 | median abs. distance error (DOF) | "
                  "same, \\|dz\\| ≤ 10 DOF | error within 1 σ |", "|---|---|---|---|---|---|"]
        for k, v in syn.items():
            lines.append(f"| {k} | {v['mean_spearman']:+.3f} | {v['top0']:.2f} | "
                         f"{v['median_abs_error_dof']:.2f} | "
                         f"{v['median_abs_error_dof_within_10']:.2f} | "
                         f"{v['share_within_1_sigma']:.2f} |")
        lines.append("")
    sign = m.get("sign")
    if sign:
        per = _shares(sign["per_condition"])
        lines += ["## Signed estimate from two frames 1 DOF apart", "",
                  f"{sign['pairs']} pairs, both frames {sign['range_dof'][0]:g}–"
                  f"{sign['range_dof'][1]:g} DOF from focus on the same side: side of focus "
                  f"right in **{sign['accuracy']:.1%}** (goal ≥ 95 %) on "
                  f"{sign.get('frame_px', [192, 192])[0]}² px frames; per condition: {per}."]
        big = m.get("sign_512px")
        if big:
            per = _shares(big["per_condition"])
            lines.append(f"On 512² px frames ({big['pairs']} pairs): **{big['accuracy']:.1%}**; "
                         f"per condition: {per}.")
        rows = [(label, r) for label, r in (("2 frames, 192² px", sign), ("2 frames, 512² px", big),
                                            ("3 frames, 192² px", m.get("sign_3_frames")))
                if r and "decided" in r]
        if rows:
            lines += ["", "Abstaining: `side_settled` is True when the mirror solution costs "
                      "Δχ² ≥ 4 more or the pair terms alone back the chosen side with summed "
                      "log-odds ≥ 2 (side probability ≥ 0.88 either way); otherwise "
                      "`focus_sigma_um` spans both solutions. 'No layer conflict' leaves out "
                      "trials where a second layer (dust / distractor plane) lies on the other "
                      "side of the frames from the labelled focus — there the frames see a real "
                      "focal plane in the other direction.", "",
                      "| trials | all: side right | decided | right when decided | "
                      "no layer conflict: right | same, decided |", "|---|---|---|---|---|---|"]
            for label, r in rows:
                lines.append(f"| {label} ({r['pairs']}) | {r['accuracy']:.1%} | "
                             f"{r['decided']:.1%} | {r['decided_accuracy']:.1%} | "
                             f"{r.get('accuracy_no_layer_conflict', float('nan')):.1%} | "
                             f"{_f(r.get('decided_accuracy_no_layer_conflict'), '.1%')} |")
        lines.append("")
    sim = m.get("sim_microscope_two_frames")
    if sim:
        dec = (f"; the side was settled (`side_settled`) in {sim['decided']:.0%}"
               if "decided" in sim else "")
        lines += [f"On the simulated microscope ({sim['setup']}; {sim['trials']} trials), two "
                  f"frames 1 DOF apart put `focus_z_um` on the right side in "
                  f"{sim['side_right']:.0%} of trials, median |error| "
                  f"{sim['median_abs_focus_error_dof']:.2f} DOF{dec}.", ""]
    ns = m.get("no_specimen")
    if ns:
        per = _shares(ns["per_kind"])
        lines += ["## No-specimen probability (threshold 0.5)", "",
                  f"{ns['blank_frames']} held-out no-specimen frames flagged: "
                  f"**{ns['flagged']:.1%}** ({per}); false flags on sparse specimens: "
                  f"{ns['sparse_false_flags_within_2_dof']:.1%} within 2 DOF of focus, "
                  f"{ns['sparse_false_flags_within_5_dof']:.1%} within 5 DOF, "
                  f"{ns['sparse_false_flags_beyond_5_dof']:.1%} beyond "
                  "(goal: ≥ 99 % flagged at ≤ 1 % false flags)."]
        alone = ns.get("model_only")
        if alone:
            per0 = _shares(alone["per_kind"])
            lines += ["", "`no_specimen_p` as served is the larger of the graph's output and the "
                      "classical empty-field test's (`autofocus.scoring.empty_field`: no spot or "
                      "blob 8–16 px across and no block-mean residual about a degree-2 surface "
                      "beyond what the frame's own noise gives; limits chosen on validation "
                      "frames, not these). The graph alone flags "
                      f"{alone['flagged']:.1%} ({per0}); the figures in brackets below are the "
                      "graph's alone."]
        if "tradeoff" in ns:
            def cell(t: str, key: str) -> str:
                v = ns["tradeoff"][t].get(key)
                if v is None:
                    return "–"
                a = alone["tradeoff"][t].get(key) if alone else None
                return f"{v:.1%}" + ("" if a is None else f" ({a:.1%})")

            lines += ["", "Threshold trade-off (false flags within 2 DOF of focus; 'visible' = the "
                      f"{ns['visible_sparse_frames_within_2_dof']} sparse frames whose in-focus "
                      "peak stands ≥ 5 noise σ above background — every false flag at 0.3–0.7 "
                      "falls on stacks whose beads peak at ~3 σ, i.e. at the noise floor):", "",
                      "| threshold | no-specimen frames flagged | false flags, all sparse | "
                      "false flags, visible sparse | same, matched-filter visible |",
                      "|---|---|---|---|---|"]
            for t in ns["tradeoff"]:
                lines.append(f"| {t} | {cell(t, 'no_specimen_flagged')} | "
                             f"{cell(t, 'false_flags_sparse_within_2_dof')} | "
                             f"{cell(t, 'false_flags_visible_sparse_within_2_dof')} | "
                             f"{cell(t, 'false_flags_matched_filter_visible_within_2_dof')} |")
            lines.append("")
            if "matched_filter_visible_within_2_dof" in ns:
                n_near = ns["sparse_frames_within_2_dof"]
                n_vis = ns["matched_filter_visible_within_2_dof"]
                lines += [f"'Matched-filter visible' judges each frame where it is: "
                          f"{ns['matched_filter_means']} (threshold "
                          f"{ns['matched_filter_threshold']:.1f}). Of the "
                          f"{n_near} sparse frames within 2 DOF of focus, {n_vis} pass it; "
                          f"the other {n_near - n_vis}"
                          " show no spot a blank frame would not show once in a hundred — "
                          "no usable specimen by that definition.", ""]
        if "threshold_for_1pct_false_flags_within_2_dof" in ns:
            lines.append(f"At the threshold that keeps false flags near focus at 1 % "
                         f"({ns['threshold_for_1pct_false_flags_within_2_dof']:.3f}), "
                         f"{ns['flagged_at_that_threshold']:.1%} of the no-specimen frames "
                         "are flagged.")
        lines.append("")
    real = m.get("real_defocus")
    if real:
        lines += ["## Distance estimate on the real stacks", "",
                  "The optics of these stacks are not recorded; the manifest tolerance is used as "
                  "the DOF proxy, which makes the DOF-unit errors large where the true DOF is "
                  "much wider than the tolerance (the wafers). The scale-free Spearman of "
                  "estimated distance vs true |dz| is the fairer figure. Not LOSO for the "
                  "shipped file (it was refitted on these stacks; the distance rows were not "
                  "refitted).", "",
                  "| stack | DOF proxy µm | median abs. error (proxy DOF) "
                  "| Spearman(distance, \\|dz\\|) |",
                  "|---|---|---|---|"]
        for k, v in real.items():
            lines.append(f"| {k} | {v['dof_proxy_um']:g} | {v['median_abs_error_dof']:.2f} | "
                         f"{_f(v['spearman_distance_vs_dz'], '+.3f')} |")
        lines.append("")
    lines += _real_sign_lines(m.get("real_sign"))
    lines += ["## Limitations", ""] + [f"- {x}" for x in card.get("limitations", [])]
    return "\n".join(lines) + "\n"


def _real_sign_lines(rows: dict | None) -> list[str]:
    """The 'signed estimate on the real stacks' section (empty without figures)."""
    if not rows:
        return []
    lines = ["## Signed estimate on the real stacks", "",
             "Neighbouring planes on one side of the label, both at least one DOF proxy (the "
             "manifest tolerance) from it, through `estimate` as served; beside it the plain "
             "rule 'focus lies towards the higher-scoring frame' with the model's own score "
             "and with Tenengrad, same pairs (`python -m autofocus_models.pipeline.v3.evaluate "
             "--real-into-card`). The pair head never saw real stacks; the graph's distances "
             "did (not LOSO). The proxy is not the optics' DOF: the light-sheet stacks step "
             "0.05–0.1 µm through a DOF of roughly 0.5–1 µm, the wafer planes lie about "
             "10 µm apart, so no pair here is the '1 DOF apart' of the synthetic test.", "",
             "| stack | pairs | side right | decided | right when decided "
             "| sharper frame (model score) | sharper frame (Tenengrad) |",
             "|---|---|---|---|---|---|---|"]
    for k, v in rows.items():
        name = f"**{k}**" if k == "all" else k
        lines.append(f"| {name} | {v['pairs']} | {v['accuracy']:.1%} | {v['decided']:.1%} | "
                     f"{_f(v['decided_accuracy'], '.1%')} | {v['sharper_frame_accuracy']:.1%} | "
                     f"{v['tenengrad_accuracy']:.1%} |")
    return lines + [""]


if __name__ == "__main__":
    path = Path(sys.argv[1])
    path.with_suffix(".md").write_text(render(json.loads(path.read_text())))
