"""Benchmark commands: `autofocus bench score` (scoring speed); more join `bench_app`.

`bench score` times the whole scoring path of a scorer (preprocessing, model,
pooling: everything `scorer.score(frames)` does) on 2048×2048 uint16 frames from
the simulated microscope, at several batch sizes, side by side with the OpenCV
variance-of-Laplacian one-liner on the same frames in the same run. Both are
timed alternately, repeat by repeat, so a busy machine slows both alike; the
median over repeats is reported. It runs unchanged on a CUDA machine (the
scorer picks its execution provider; `--provider` overrides).
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from autofocus.cli.app import app
from autofocus.cli.help import AutofocusCommand, AutofocusGroup
from autofocus.cli.output import fail

if TYPE_CHECKING:
    import numpy as np

bench_app = typer.Typer(
    cls=AutofocusGroup,
    help="Benchmarks: strategies side by side, scoring speed.",
    no_args_is_help=True,
    rich_markup_mode=None,
)
app.add_typer(bench_app, name="bench")


def bench_frames(n: int, size_px: int, *, seed: int = 0) -> list[np.ndarray]:
    """`n` distinct uint16 frames (size_px²) of simulated cells at a spread of defocus."""
    import numpy as np
    from autofocus_drivers.sim import SimConfig, SimulatedMicroscope

    cfg = SimConfig.preset("cells", "fluorescence", width_px=size_px, height_px=size_px,
                           focus_z_um=0.0)
    mic = SimulatedMicroscope(cfg, seed=seed)
    try:
        frames = []
        for z in np.linspace(-3.0, 3.0, n):
            mic.move_z(float(z))
            frames.append(np.ascontiguousarray(mic.snap()))
        return frames
    finally:
        mic.close()


def _time_once(fn: Any) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def run_score_bench(
    scorer_name: str = "focusnet",
    batch_sizes: tuple[int, ...] = (1, 8, 32),
    *,
    size_px: int = 2048,
    distinct_frames: int = 8,
    repeats: int = 5,
    scorer_options: dict[str, Any] | None = None,
    seed: int = 0,
    progress: Any = None,
) -> dict[str, Any]:
    """Time `scorer_name` against OpenCV variance of Laplacian; returns a JSON-able report.

    Per batch size b: the scorer gets b frames in one `score` call (cycled from
    `distinct_frames` simulated frames); the baseline computes
    `autofocus.scoring.classical.opencv_variance_of_laplacian` on the same b frames.
    Times are medians over `repeats` (after one warm-up call), in ms per frame.
    `progress(done, total)` is called after the frames are made and after each
    timed repeat. Raises `AutofocusError` (e.g. `ModelError`) when the scorer
    cannot be built.
    """
    from autofocus.scoring.classical import opencv_variance_of_laplacian
    from autofocus.scoring.registry import canonical_scorer_name, get_scorer

    scorer = get_scorer(scorer_name, **(scorer_options or {}))
    pool = bench_frames(distinct_frames, size_px, seed=seed)
    total = 1 + len(batch_sizes) * repeats
    done = 1
    if progress is not None:
        progress(done, total)
    rows = []
    for b in batch_sizes:
        frames = [pool[i % len(pool)] for i in range(b)]
        scorer.score(frames)  # warm-up: allocations, provider kernels
        for f in frames:
            opencv_variance_of_laplacian(f)
        model_s, base_s, prep_s, infer_s = [], [], [], []
        timing = getattr(scorer, "timing", None)
        for _ in range(repeats):
            before = dict(timing) if timing is not None else None
            model_s.append(_time_once(lambda fr=frames: scorer.score(fr)))
            if timing is not None and before is not None:
                prep_s.append(timing["prepare_s"] - before["prepare_s"])
                infer_s.append(timing["infer_s"] - before["infer_s"])
            base_s.append(_time_once(
                lambda fr=frames: [opencv_variance_of_laplacian(f) for f in fr]))
            done += 1
            if progress is not None:
                progress(done, total)
        m = statistics.median(model_s) / b
        base = statistics.median(base_s) / b
        row = {
            "batch": b,
            "model_ms_per_frame": 1e3 * m,
            "model_fps": 1.0 / m,
            "baseline_ms_per_frame": 1e3 * base,
            "baseline_fps": 1.0 / base,
            "cost_ratio": m / base,
        }
        if prep_s:
            row["prepare_ms_per_frame"] = 1e3 * statistics.median(prep_s) / b
            row["infer_ms_per_frame"] = 1e3 * statistics.median(infer_s) / b
        rows.append(row)
    describe = getattr(scorer, "describe", None)
    return {
        "scorer": canonical_scorer_name(scorer_name),
        "scorer_info": describe() if callable(describe) else {},
        "active_provider": getattr(scorer, "active_provider", "n/a"),
        "baseline": "cv2.Laplacian(float32) + cv2.meanStdDev → variance (no preprocessing)",
        "frame": {"shape": [size_px, size_px], "dtype": str(pool[0].dtype),
                  "distinct": len(pool)},
        "repeats": repeats,
        "cpu_count": os.cpu_count(),
        "load_avg_1min": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        "rows": rows,
    }


@bench_app.command(
    "score", cls=AutofocusCommand, short_help="Scoring speed of a scorer vs OpenCV."
)
def bench_score(
    scorer: Annotated[str, typer.Option("--scorer", "-s", help="Scorer to time.")] = "focusnet",
    batch: Annotated[
        list[int] | None,
        typer.Option("--batch", "-b", metavar="N", help="Batch size (repeatable).  "
                     "[default: 1, 8 and 32]"),
    ] = None,
    size: Annotated[int, typer.Option(help="Frame side in pixels.", min=64)] = 2048,
    repeats: Annotated[int, typer.Option(help="Timed repeats per batch size.", min=1)] = 5,
    distinct: Annotated[int, typer.Option(help="Distinct frames cycled.", min=1)] = 8,
    provider: Annotated[
        str | None, typer.Option(help="focusnet execution provider: auto, cpu, cuda, tensorrt.")
    ] = None,
    model: Annotated[
        Path | None, typer.Option(help="focusnet ONNX file (default: the shipped model).")
    ] = None,
    max_batch: Annotated[
        int | None,
        typer.Option(help="focusnet frames per inference call (default: the scorer's own)."),
    ] = None,
    threads: Annotated[int | None, typer.Option(help="onnxruntime intra-op threads.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Frames/s of the whole scoring path vs OpenCV variance of Laplacian, side by side."""
    sizes = tuple(batch) if batch else (1, 8, 32)
    if any(b < 1 for b in sizes):
        fail("batch sizes must be ≥ 1")
    options: dict[str, Any] = {}
    from autofocus.errors import AutofocusError
    from autofocus.scoring.registry import canonical_scorer_name

    try:
        is_model = canonical_scorer_name(scorer) == "focusnet"
    except AutofocusError as exc:
        fail(str(exc))
    if is_model:
        if provider is not None:
            options["provider"] = provider
        if model is not None:
            options["model_path"] = model
        if threads is not None:
            options["threads"] = threads
        if max_batch is not None:
            options["max_batch"] = max_batch
    try:
        from autofocus.cli.progress import progress_bar

        with progress_bar(f"timing {scorer}", enabled=not as_json) as bar:
            report = run_score_bench(
                scorer, sizes, size_px=size, distinct_frames=distinct, repeats=repeats,
                scorer_options=options,
                progress=lambda done, total: bar.update(done, total),
            )
    except (AutofocusError, ValueError, OSError) as exc:
        fail(str(exc))
    if as_json:
        sys.stdout.write(json.dumps(report, indent=2) + "\n")
        return
    _print_report(report)


def _max_batch_text(max_batch: Any) -> str:
    """What `max_batch` means next to rows of larger batches: how each batch is split."""
    if not isinstance(max_batch, int):
        return "one call per batch"
    return (f"≤{max_batch} frame{'s' if max_batch != 1 else ''} per inference call "
            f"(max_batch; a larger batch is split into calls)")


def _print_report(report: dict[str, Any]) -> None:
    from autofocus.cli.output import note, stdout_console
    from autofocus.cli.tables import Column, dropped_note, fitted_table

    console = stdout_console()
    f = report["frame"]
    name = report["scorer"]
    rows = [
        [
            str(r["batch"]),
            f"{r['model_ms_per_frame']:.2f}",
            f"{r['model_fps']:.1f}",
            f"{r['baseline_ms_per_frame']:.2f}",
            f"{r['baseline_fps']:.1f}",
            f"{r['cost_ratio']:.2f}×",
            f"{r['prepare_ms_per_frame']:.2f}" if "prepare_ms_per_frame" in r else "–",
            f"{r['infer_ms_per_frame']:.2f}" if "infer_ms_per_frame" in r else "–",
        ]
        for r in report["rows"]
    ]
    table, dropped = fitted_table(
        f"{name} vs OpenCV variance of Laplacian — {f['shape'][0]}×{f['shape'][1]} "
        f"{f['dtype']}, provider {report['active_provider']}, "
        f"{_max_batch_text(report['scorer_info'].get('max_batch'))}, "
        f"{report['cpu_count']} CPUs, median of {report['repeats']}",
        [Column("batch"), Column(f"{name}\nms/frame"),
         Column(f"{name}\nframes/s", priority=3), Column("OpenCV\nms/frame"),
         Column("OpenCV\nframes/s", priority=4), Column("cost\nratio"),
         Column("prepare\nms", priority=2), Column("model\nms", priority=1)],
        rows,
        console,
    )
    console.print(table)
    message = dropped_note(dropped, console)
    if message:
        note(message, style="dim")
    console.print(f"baseline: {report['baseline']}; cost ratio = {name} time / baseline time; "
                  f"1-min load average at the end: {report['load_avg_1min']}", highlight=False,
                  markup=False)
