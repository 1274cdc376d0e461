"""Offline commands: `autofocus stack` (score one z-stack) and `autofocus eval` (judge scorers).

Both print tables that fit the terminal (80 columns when redirected, unless
`COLUMNS` says otherwise: identifiers in full, lower-value columns left out
and named), or JSON / CSV on stdout for programs (`--json`, `--csv`).
Progress, hints and errors go to stderr; an error is one red line and exit 2.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from autofocus.cli.app import app
from autofocus.cli.help import listing
from autofocus.cli.output import (
    EXIT_ERROR,
    emit_csv,
    emit_json,
    errors_to_exit,
    fail,
    note,
    one_output_format,
    stdout_console,
)
from autofocus.cli.tables import Column, dropped_note, fitted_table

if TYPE_CHECKING:
    from rich.console import Console
    from rich.text import Text

DEFAULT_EVAL_SCORERS = ("tenengrad", "vol", "nvar", "brenner")

__all__ = ["DEFAULT_EVAL_SCORERS", "EXIT_ERROR", "eval_command", "stack_command"]

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON to stdout.")]
CsvOpt = Annotated[bool, typer.Option("--csv", help="Print CSV to stdout (one row per line "
                                      "of the table, every column).")]


def _um(z: float | None) -> str:
    return "–" if z is None else f"{z:+.3f}"


def _num(x: float | None) -> str:
    return "–" if x is None else f"{x:.4g}"


def _yes_no(flag: bool | None) -> Text:
    from rich.text import Text

    if flag is None:
        return Text("–", style="dim")
    return Text("yes", style="green") if flag else Text("no", style="red")


def _print_fitted(
    console: Console,
    title: str,
    columns: Sequence[Column],
    rows: Sequence[Sequence[Any]],
    row_styles: Sequence[str | None] | None = None,
) -> list[str]:
    table, dropped = fitted_table(title, columns, rows, console, row_styles=row_styles)
    console.print(table)
    return dropped


# ------------------------------------------------------------------ stack


@app.command("stack", cls=listing("scorers"))
def stack_command(
    path: Annotated[
        Path,
        typer.Argument(
            help="A folder of <name>_z<um>.tif|png|jpg planes, a multi-page (OME-)TIFF, "
            "or a CSV with image_path,z_um[,focus_score].",
            metavar="STACK",
            show_default=False,
        ),
    ],
    scorer: Annotated[
        str,
        typer.Option("--scorer", "-s", metavar="NAME", help="Focus scorer (listed below)."),
    ] = "tenengrad",
    json_output: JsonOpt = False,
    csv_output: CsvOpt = False,
    pattern: Annotated[
        str | None,
        typer.Option(
            "--pattern",
            help="Regex finding z (µm) in a file name without extension; named group 'z' "
            "or first group. Default: '_z<float>' at the end of the name.",
        ),
    ] = None,
    z_step_um: Annotated[
        float | None,
        typer.Option("--z-step-um", help="Plane spacing (µm) of a multi-page TIFF that does "
                     "not record it."),
    ] = None,
) -> None:
    """Score every plane of one z-stack and report the sharpest plane.

    To judge scorers against labels on several stacks, use `autofocus eval`.
    """
    from rich.text import Text

    from autofocus.stacks.evaluation import score_stack

    one_output_format(json_output, csv_output)
    _check_stack(path)
    with errors_to_exit():
        result = score_stack(path, scorer, pattern=pattern, z_step_um=z_step_um)
        if json_output:
            emit_json(result)
            return
        best_score = result["best_score"]
        rows, styles, csv_rows = [], [], []
        for i, plane in enumerate(result["planes"]):
            score = plane["score"]
            rel = score / best_score if score is not None and best_score else None
            name = Path(plane["path"]).name + (
                f"#{plane['page']}" if plane["page"] is not None else ""
            )
            is_best = i == result["best_index"]
            rows.append([str(i), _um(plane["z_um"]), _num(score),
                         "–" if rel is None else f"{rel:.3f}",
                         Text(name + ("  ◀ best" if is_best else ""))])
            styles.append("bold green" if is_best else None)
            csv_rows.append([i, plane["z_um"], score, rel, plane["path"], plane["page"],
                             is_best])
        if csv_output:
            emit_csv(["index", "z_um", "score", "relative", "path", "page", "best"], csv_rows)
            return
        out = stdout_console()
        dropped = _print_fitted(
            out,
            f"{result['stack']} — scorer {result['scorer']}",
            [Column("#", priority=2), Column("z (µm)"), Column("score", priority=3),
             Column("relative", priority=1), Column("plane", "left")],
            rows,
            styles,
        )
        out.print(
            Text(f"best z = {result['best_z_um']:+.4f} µm  ({Path(result['best_path']).name})")
        )
        if dropped:
            note(dropped_note(dropped, out) or "", style="dim")
        if result["skipped"]:
            note(f"skipped {len(result['skipped'])} file(s) without z in the name")


def _check_stack(path: Path) -> None:
    """Fail with a hint when `path` is a corpus of stacks rather than one stack."""
    from autofocus.stacks.readers import IMAGE_SUFFIXES

    if not path.is_dir() or any(p.suffix.lower() in IMAGE_SUFFIXES for p in path.iterdir()):
        return
    if (path / "manifest.csv").is_file() or any(p.is_dir() for p in path.iterdir()):
        fail(f"{path} holds no images of its own: it looks like a corpus of stacks",
             hint=f"to judge scorers on every stack: autofocus eval {path}; to score one "
             f"stack: autofocus stack {path}/STACK")


# ------------------------------------------------------------------- eval

_EVAL_COLUMNS = [
    Column("stack", "left"),
    Column("in tol", "center", priority=1),
    Column("error", priority=2),
    Column("chosen z", priority=3),
    Column("best z", priority=4),
    Column("spearman", priority=5),
    Column("top-1", "center", priority=6),
    Column("top-0", "center", priority=7),
    Column("tol", priority=8),
    Column("planes", priority=9),
]
_EVAL_CSV = ["scorer", "stack", "planes", "chosen_z_um", "best_z_um", "error_um",
             "tolerance_um", "within_tolerance", "top0", "top1", "spearman"]


def _eval_rows(summary: Mapping[str, Any]) -> tuple[list[list[Any]], list[str | None]]:
    rows, styles = [], []
    for e in summary["stacks"]:
        labelled = e["best_z_um"] is not None
        rows.append([
            e["stack"],
            _yes_no(e["within_tolerance"]),
            _um(e["error_um"]),
            _um(e["chosen_z_um"]),
            _um(e["best_z_um"]),
            "–" if e["spearman"] is None else f"{e['spearman']:+.2f}",
            _yes_no(e["top1"]),
            _yes_no(e["top0"]),
            f"{e['tolerance_um']:.3g}" if labelled and e["tolerance_um"] is not None else "–",
            str(e["planes"]),
        ])
        styles.append(None if labelled else "dim")
    return rows, styles


def _print_eval(result: Mapping[str, Any], console: Console) -> None:
    dropped: list[str] = []
    for name, summary in result["scorers"].items():
        rows, styles = _eval_rows(summary)
        dropped = _print_fitted(console, f"scorer {name} (z, error and tolerance in µm)",
                                _EVAL_COLUMNS, rows, styles)
    summary_rows = []
    for name, s in result["scorers"].items():
        n = s["labeled"]
        summary_rows.append([
            name,
            f"{s['within_tolerance']}/{n}",
            f"{s['top0']}/{n}",
            f"{s['top1']}/{n}",
            "–" if s["mean_spearman"] is None else f"{s['mean_spearman']:+.3f}",
            f"{s['score_s']:.2f}",
        ])
    summary_dropped = _print_fitted(
        console,
        f"summary — {result['labeled']} labelled of {result['stacks']} stacks",
        [Column("scorer", "left"), Column("in tolerance"), Column("top-0", priority=2),
         Column("top-1", priority=3), Column("mean spearman", priority=1),
         Column("score time (s)", priority=4)],
        summary_rows,
    )
    # Name the table each left-out column belongs to: a column left out of the per-stack
    # table ("top-0") may well be shown in the summary, and the note must not contradict it.
    parts = [f"{', '.join(cols)} of the {table}" for table, cols in
             (("per-stack table", dropped), ("summary", summary_dropped)) if cols]
    if parts:
        note(f"{console.width} columns: left out {'; '.join(parts)} (--json or --csv, or a "
             "wider terminal, shows every column)", style="dim")


def _eval_csv(result: Mapping[str, Any]) -> None:
    emit_csv(_EVAL_CSV, (
        [name, e["stack"], e["planes"], e["chosen_z_um"], e["best_z_um"], e["error_um"],
         e["tolerance_um"], e["within_tolerance"], e["top0"], e["top1"], e["spearman"]]
        for name, summary in result["scorers"].items()
        for e in summary["stacks"]
    ))


def _check_corpus(directory: Path) -> None:
    """Fail with a hint when `directory` is one z-stack or a corpus without any label."""
    from autofocus.errors import AutofocusError
    from autofocus.stacks.readers import IMAGE_SUFFIXES, iter_corpus

    if directory.is_file():
        fail(f"{directory} is a file, not a corpus folder",
             hint=f"to score one z-stack: autofocus stack {directory}")
    if not directory.is_dir():
        return  # the reader names what is missing
    has_manifest = (directory / "manifest.csv").is_file()
    has_subdirs = any(p.is_dir() and not p.name.startswith(".") for p in directory.iterdir())
    has_images = any(p.suffix.lower() in IMAGE_SUFFIXES for p in directory.iterdir())
    if not has_manifest and not has_subdirs and has_images:
        fail(f"{directory} holds images, not stacks: it looks like one z-stack",
             hint=f"to score one z-stack: autofocus stack {directory}")
    try:
        labels = [label for _, label in iter_corpus(directory)]
    except AutofocusError:
        return  # evaluate_* reports it with its own words
    if not any(label is not None and label.labelled for label in labels):
        fail(
            f"none of the {len(labels)} stack(s) in {directory} is labelled, so there is "
            "nothing to judge a scorer against",
            hint="label a stack with a manifest.csv in the corpus folder: one row per plane, "
            "columns stack,path,z_um,best_z_um,tolerance_um,label (best_z_um = the in-focus "
            "z in µm; see docs/replay.md). Without labels, `autofocus stack STACK` scores "
            "one stack and names its sharpest plane.",
        )


@app.command("eval", cls=listing("scorers", "strategies"))
def eval_command(
    directory: Annotated[
        Path,
        typer.Argument(
            help="Corpus folder: a manifest.csv with labels (stack,path,z_um,best_z_um,"
            "tolerance_um,label,...) or sub-folders of z-named images.",
            metavar="CORPUS",
            show_default=False,
        ),
    ],
    scorer: Annotated[
        list[str] | None,
        typer.Option(
            "--scorer",
            "-s",
            metavar="NAME",
            help="Scorer to evaluate (repeatable; listed below); with --search only the "
            "first is used.  [default: " + ", ".join(DEFAULT_EVAL_SCORERS) + "; with "
            "--search: tenengrad]",
        ),
    ] = None,
    json_output: JsonOpt = False,
    csv_output: CsvOpt = False,
    search: Annotated[
        bool,
        typer.Option(
            "--search",
            help="Run search strategies through the replay driver from several start "
            "positions instead of scoring every plane (uses the first --scorer).",
        ),
    ] = False,
    strategy: Annotated[
        list[str] | None,
        typer.Option(
            "--strategy",
            metavar="NAME",
            help="Strategy run by --search (repeatable; listed below).  "
            "[default: {default:focus.strategy}]",
        ),
    ] = None,
    window: Annotated[
        list[str] | None,
        typer.Option(
            "--window",
            metavar="WINDOW",
            help="Interval searched by --search: full, low or high (repeatable).  "
            "[default: full]",
        ),
    ] = None,
    by_source: Annotated[
        bool,
        typer.Option(
            "--by-source",
            help="Report per source (the manifest's repository: one instrument, one "
            "modality), the leave-one-source-out view; stacks a model's card says it "
            "was trained on are flagged and left out of its held-out totals.",
        ),
    ] = False,
) -> None:
    """Judge scorers (or with --search, strategies) on labelled z-stacks.

    Each scorer scores every plane of every stack; its sharpest plane is
    compared with the stack's label. With `--search`, each strategy runs on
    every labelled stack through the replay driver instead, from the bottom,
    middle and top, next to the exhaustive best-plane result.
    """
    from autofocus.cli.progress import progress_bar

    one_output_format(json_output, csv_output)
    _check_corpus(directory)
    names = list(scorer) if scorer else list(DEFAULT_EVAL_SCORERS)
    if search:
        _eval_search(directory, names[0] if scorer else "tenengrad", strategy, window,
                     json_output, csv_output)
        return
    from autofocus.stacks.evaluation import evaluate_corpus

    with errors_to_exit():
        with progress_bar("scoring stacks") as bar:
            result = evaluate_corpus(directory, names, progress=bar.callback())
        if by_source:
            _report_by_source(result, json_output, csv_output)
        elif json_output:
            emit_json(result)
        elif csv_output:
            _eval_csv(result)
        else:
            _print_eval(result, stdout_console())


# ------------------------------------------------------- eval --by-source

_BY_SOURCE_CSV = ["scorer", "source", "modality", "labeled", "within_tolerance", "top0",
                  "mean_spearman", "seen"]


def _report_by_source(result: Mapping[str, Any], json_output: bool, csv_output: bool) -> None:
    """`autofocus eval --by-source`: per-source table, held-out totals, the default rule."""
    from autofocus.stacks.by_source import by_source, default_decision, seen_stacks

    names = list(result["scorers"])
    report = by_source(result, seen_stacks(names))
    classical = [n for n in names if not (n.startswith("focusnet") or n.endswith(".onnx"))]
    models = [n for n in names if n not in classical]
    if classical and models:
        report["default_rule"] = {m: default_decision(report, m, classical) for m in models}
    if json_output:
        emit_json({"corpus": result["corpus"], "stacks": result["stacks"],
                   "labeled": result["labeled"], **report})
        return
    modality = {s["source"]: s["modality"] for s in report["sources"]}
    if csv_output:
        emit_csv(_BY_SOURCE_CSV, (
            [name, src, modality.get(src, ""), g["labeled"], g["within_tolerance"], g["top0"],
             g["mean_spearman"], " ".join(g["seen"])]
            for name, s in report["scorers"].items() for src, g in s["sources"].items()
        ))
        return
    console = stdout_console()
    labelled = [s for s in report["sources"] if s["labeled"]]
    dropped: list[str] = []
    for src in labelled:
        rows = []
        for name, s in report["scorers"].items():
            g = s["sources"][src["source"]]
            rows.append([name, f"{g['within_tolerance']}/{g['labeled']}",
                         f"{g['top0']}/{g['labeled']}",
                         "–" if g["mean_spearman"] is None else f"{g['mean_spearman']:+.3f}",
                         "yes" if g["seen"] else "no"])
        dropped += _print_fitted(
            console, f"{src['source']} — {src['modality']} ({src['labeled']} labelled: "
            f"{', '.join(src['stacks'])})",
            [Column("scorer", "left"), Column("in tolerance"), Column("top-0", priority=2),
             Column("mean spearman", priority=1), Column("trained on it", priority=3)], rows)
    rows = []
    for name, s in report["scorers"].items():
        h = s["held_out"]
        rows.append([name, f"{h['within_tolerance']}/{h['labeled']}", f"{h['top0']}/{h['labeled']}",
                     "–" if h["mean_spearman"] is None else f"{h['mean_spearman']:+.3f}",
                     str(h["sources"])])
    dropped += _print_fitted(
        console, f"held out by source — {len(labelled)} labelled sources",
        [Column("scorer", "left"), Column("in tolerance"), Column("top-0", priority=2),
         Column("mean spearman", priority=1), Column("sources", priority=3)], rows)
    for model, d in report.get("default_rule", {}).items():
        verdict = ("may replace the classical default" if d["default"] == model
                   else f"does not replace the default ({'; '.join(d['reasons'])})")
        note(f"{model} vs best classical {d['best_classical']}: {verdict}")
    message = dropped_note(list(dict.fromkeys(dropped)), console)
    if message:
        note(message, style="dim")


# --------------------------------------------------------- eval --search


def _ratio_text(k: int, n: int) -> Text:
    from rich.text import Text

    colour = "green" if n and k == n else ("red" if k == 0 else "yellow")
    return Text(f"{k}/{n}", style=colour)


def _mean_text(values: Sequence[float | None]) -> str:
    """The mean of the finite `values` with 2 decimals (hardware seconds), or "–"."""
    finite = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    return f"{sum(finite) / len(finite):.2f}" if finite else "–"


def _frames_text(frames: Sequence[int], planes: int) -> str:
    if not frames:
        return "–"
    lo, hi = min(frames), max(frames)
    text = f"{statistics.fmean(frames):.1f}" + (f" [{lo}–{hi}]" if lo != hi else "")
    return f"{text} / {planes}"


def _errors_text(errors: Sequence[float | None], *, already_abs: bool = False) -> str:
    vals = [abs(e) for e in errors if e is not None and math.isfinite(e)]
    if not vals:
        return "–"
    if already_abs:
        return "/".join(f"{v:.3f}" for v in vals)
    return f"{statistics.median(vals):.3f}/{max(vals):.3f}"


def _first_reason(runs: Sequence[Mapping[str, Any]]) -> str:
    for r in runs:
        if not r["found"] and r["reason"]:
            return str(r["reason"])
    if any(r["found"] and not r["success"] for r in runs):
        return "found a focus outside the tolerance"
    return ""


def _print_search(report: Mapping[str, Any], console: Console) -> None:
    """The `evaluate_search` report as a table fitted to `console`, notes below it.

    A row per stack and strategy (and window, with several): successes of the
    strategy's runs, frames (mean [range] / planes), mean hardware seconds
    (virtual clock of the replay stage: travel and exposures), |error| median/max (µm),
    the exhaustive best plane (z and error, ✓/✗) and the first failure reason.
    Long failure reasons are printed under the table, numbered, not cut.
    """
    from rich.text import Text

    windows = list(report.get("windows", ["full"]))
    several = len(windows) > 1
    columns = [
        Column("stack", "left"),
        Column("strategy", "left"),
        *([Column("window", "left")] if several else []),
        Column("success"),
        Column("frames", priority=2),
        Column("hardware s", priority=2),
        Column("|err| µm", priority=3),
        Column("exhaustive", priority=4),
        Column("plane ok", priority=5),
        Column("note", "left", priority=1),
    ]
    rows: list[list[Any]] = []
    notes: list[str] = []

    def note_ref(text: str) -> str:
        if not text:
            return ""
        if text not in notes:
            notes.append(text)
        return f"[{notes.index(text) + 1}]"

    for entry in report["stacks"]:
        ex = entry["exhaustive"]
        ex_text = Text(f"{ex['z_um']:+.3f} ({ex['error_um']:+.3f}) ")
        ex_text.append("✓" if ex["success"] else "✗", style="green" if ex["success"] else "red")
        first = True
        for strategy in report["strategies"]:
            for window in windows:
                runs = [r for r in entry["runs"]
                        if r["strategy"] == strategy and r.get("window", "full") == window]
                rows.append([
                    entry["stack"] if first else "",
                    strategy,
                    *([window] if several else []),
                    _ratio_text(sum(r["success"] for r in runs), len(runs)),
                    _frames_text([r["frames"] for r in runs], entry["planes"]),
                    _mean_text([r["hardware_s"] for r in runs]),
                    _errors_text([r["error_um"] for r in runs]),
                    ex_text if first else "",
                    f"{sum(r['plane_success'] for r in runs)}/{len(runs)}",
                    Text(note_ref(_first_reason(runs))),
                ])
                first = False
    for i, strategy in enumerate(report["strategies"]):
        s = report["summary"][strategy]
        rows.append([
            Text("all stacks", style="bold") if i == 0 else "",
            strategy,
            *(["all"] if several else []),
            _ratio_text(s["successes"], s["runs"]),
            "–" if s["mean_frames"] is None else f"{s['mean_frames']:.1f}",
            _mean_text([s["hardware_s"]]),
            _errors_text([s["median_abs_error_um"], s["max_abs_error_um"]], already_abs=True),
            f"{s['stacks_where_exhaustive_succeeds']}/{len(report['stacks'])} ✓",
            f"{s['plane_successes']}/{s['runs']}",
            Text(note_ref(
                f"{strategy}, where exhaustive ✓: {s['successes_where_exhaustive_succeeds']}/"
                f"{s['runs_where_exhaustive_succeeds']} succeeded")),
        ])
    title = (f"search evaluation — scorer {report['scorer']}, starts "
             + ", ".join(str(s) for s in report["starts"])
             + (", windows " + ", ".join(windows) if several else ""))
    dropped = _print_fitted(console, title, columns, rows)
    if "note" not in dropped:
        for i, text in enumerate(notes, start=1):
            console.print(Text(f"[{i}] {text}", style="dim"), soft_wrap=False)
    message = dropped_note([d for d in dropped if d != "note"], console)
    if message:
        note(message, style="dim")


def _search_csv(report: Mapping[str, Any]) -> None:
    header = ["stack", "planes", "regular", "strategy", "window", "start", "start_z_um",
              "found", "success", "plane_success", "best_z_um", "error_um", "frames",
              "hardware_s", "reason"]
    emit_csv(header, (
        [entry["stack"], entry["planes"], entry["regular"], r["strategy"],
         r.get("window", "full"), r["start"], r["start_z_um"], r["found"], r["success"],
         r["plane_success"], r["best_z_um"], r["error_um"], r["frames"], r["hardware_s"],
         r["reason"]]
        for entry in report["stacks"] for r in entry["runs"]
    ))


def _eval_search(
    directory: Path,
    scorer: str,
    strategies: list[str] | None,
    windows: list[str] | None,
    json_output: bool,
    csv_output: bool,
) -> None:
    """`autofocus eval --search`: strategies through the replay driver on every stack."""
    from autofocus.cli.progress import progress_bar
    from autofocus.settings import FocusDefaults
    from autofocus.stacks.search_eval import evaluate_search

    with errors_to_exit():
        with progress_bar("searching stacks") as bar:
            report = evaluate_search(
                directory,
                strategies or [FocusDefaults().strategy],  # what the help says the default is
                scorer=scorer,
                windows=tuple(windows or ["full"]),
                progress=bar.callback(),
            )
        if json_output:
            emit_json(report)
        elif csv_output:
            _search_csv(report)
        else:
            _print_search(report, stdout_console())
