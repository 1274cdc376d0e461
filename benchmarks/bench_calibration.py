"""Before/after on-site calibration: stock focusnet-v3 vs the model `autofocus calibrate` refits.

Two settings, both judged on data the refit never saw:

* **sim** — a simulated instrument unlike the training defaults (60×/1.30 oil, 600 nm,
  0.108 µm sample pixel, fibres; training default: 20×/0.75 air, 520 nm, 0.325 µm, beads).
  `autofocus record-stacks` records 6 calibration stacks (seeds 100–105, one field each,
  labelled where the classical measures agree), `calibrate` refits on them, and 8 other
  fields (seeds 200–207, truth from the simulator) judge: median distance error in DOF
  over every plane, side accuracy (two frames 1 DOF apart on one side of focus: does the
  fused estimate put focus on the right side?), and `guided` from a start ±5 DOF away
  (frames, success, |error| in DOF).
* **real** — same-source stacks of `../shared/data/real`: for each labelled stack of a
  source with ≥ 3 labelled stacks, calibrate on the source's other stacks and judge the
  held one (score curve within tolerance / top-0, distance error and side accuracy with
  DOF = 4 × the label tolerance — the service's fallback when the optics are unknown —
  and `guided` replayed on the stack from its bottom, middle and top).

    nice .venv/bin/python benchmarks/bench_calibration.py [sim|real|all] [--json OUT]

Numpy/onnxruntime on the CPU; a few minutes on 2 cores.
"""

from __future__ import annotations

import csv
import json
import math
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
REAL = REPO.parent / "shared" / "data" / "real"
sys.path.insert(0, str(REPO))

from autofocus_drivers.sim import SimConfig, SimulatedMicroscope  # noqa: E402
from autofocus_drivers.sim.optics import Optics  # noqa: E402

from autofocus.scoring.model import open_model  # noqa: E402
from autofocus.search.focus import focus  # noqa: E402
from autofocus.stacks.calibrate import calibrate  # noqa: E402
from autofocus.stacks.evaluation import judge_curve  # noqa: E402
from autofocus.stacks.readers import read_manifest  # noqa: E402
from autofocus.stacks.record import record_stacks  # noqa: E402

OPTICS = Optics(na=1.3, wavelength_nm=600.0, immersion_index=1.515, magnification=60.0,
                camera_pixel_um=6.5)
SPECIMEN = "fibres"
CAL_SEEDS = range(100, 106)
TEST_SEEDS = range(200, 208)


def sim_mic(seed: int) -> SimulatedMicroscope:
    base = SimConfig.preset(SPECIMEN, "fluorescence", noise_model="gaussian")
    return SimulatedMicroscope(SimConfig(modality=base.modality, optics=OPTICS,
                                         specimen=base.specimen, camera=base.camera,
                                         stage=base.stage), seed=seed)


def defocus_metrics(scorer, frames, z, zf, dof) -> dict:
    """Median distance error (DOF) over the planes and side accuracy over 1-DOF pairs."""
    est = scorer.estimate(frames, z, dof_um=dof)
    true = np.abs(z - zf) / dof
    dist_err = float(np.median(np.abs(est.distance_dof - true)))
    right = total = 0
    step = max(1, round(dof / float(np.median(np.diff(z)))))
    for i in range(z.size - step):
        j = i + step
        a, b = z[i] - zf, z[j] - zf
        if a * b <= 0 or min(abs(a), abs(b)) < 0.5 * dof or max(abs(a), abs(b)) > 4 * dof:
            continue
        e = scorer.estimate([frames[i], frames[j]], [z[i], z[j]], dof_um=dof)
        if e.focus_z_um is None:
            total += 1
            continue
        mid = 0.5 * (z[i] + z[j])
        right += int(np.sign(e.focus_z_um - mid) == np.sign(zf - mid))
        total += 1
    return {"distance_error_dof": dist_err, "side_right": right, "side_pairs": total}


def run_sim(work: Path) -> dict:
    dof = OPTICS.depth_of_field_um
    step = dof / 2
    corpus = work / "sim_corpus"
    rng = np.random.default_rng(0)
    for seed in CAL_SEEDS:
        mic = sim_mic(seed)
        zf = mic.true_focus_z_um()
        record_stacks(mic, corpus, center_z_um=round(zf + rng.uniform(-2, 2) * dof, 2),
                      range_um=16 * dof, step_um=step, tolerance_um=dof / 2,
                      prefix=f"f{seed}_", modality="simulated fibres, 60x/1.30 oil")
    labels = read_manifest(corpus)
    labelled = [n for n, lab in labels.items() if lab.labelled]
    label_err = [abs(lab.best_z_um - sim_mic(int(n[1:4])).true_focus_z_um()) / dof
                 for n, lab in labels.items() if lab.labelled]
    site = work / "sim_site.onnx"
    cal = calibrate([corpus], site)
    models = {"stock focusnet-v3": open_model(None, provider="cpu"),
              "calibrated": open_model(site, provider="cpu")}
    rows: dict[str, dict] = {}
    for name, scorer in models.items():
        d_err, right, pairs, frames_used, ok, g_err = [], 0, 0, [], 0, []
        for seed in TEST_SEEDS:
            mic = sim_mic(seed)
            zf = mic.true_focus_z_um()
            z = zf + step * np.arange(-16, 17) + rng.uniform(-0.5, 0.5) * step
            frames = []
            for zi in z:
                mic.move_z(float(zi))
                frames.append(mic.snap())
            m = defocus_metrics(scorer, frames, z, zf, dof)
            d_err.append(m["distance_error_dof"])
            right += m["side_right"]
            pairs += m["side_pairs"]
            g = sim_mic(seed)
            g.move_z(float(zf + (5 if seed % 2 else -5) * dof))
            res = focus(g, scorer=scorer, strategy="guided", range_um=30 * dof,
                        tolerance_um=dof / 2, dof_um=dof, max_frames=80)
            frames_used.append(res.frames)
            if res.success:
                ok += 1
                g_err.append(abs(g.physical_z_um - g.true_focus_z_um()) / dof)
        rows[name] = {"median_distance_error_dof": float(np.median(d_err)),
                      "side_accuracy": right / pairs if pairs else None, "side_pairs": pairs,
                      "guided_mean_frames": float(np.mean(frames_used)),
                      "guided_success": f"{ok}/{len(TEST_SEEDS)}",
                      "guided_median_error_dof": float(np.median(g_err)) if g_err else None}
    tn = {"frames": [], "ok": 0}
    for seed in TEST_SEEDS:
        g = sim_mic(seed)
        zf = g.true_focus_z_um()
        g.move_z(float(zf + (5 if seed % 2 else -5) * dof))
        res = focus(g, scorer="tenengrad", strategy="guided", range_um=30 * dof,
                    tolerance_um=dof / 2, dof_um=dof, max_frames=80)
        tn["frames"].append(res.frames)
        tn["ok"] += int(res.success)
    rows["tenengrad (reference)"] = {"guided_mean_frames": float(np.mean(tn["frames"])),
                                     "guided_success": f"{tn['ok']}/{len(TEST_SEEDS)}"}
    return {"dof_um": dof, "calibration_stacks": len(labels), "labelled": len(labelled),
            "label_error_dof_max": max(label_err) if label_err else None,
            "calibrate_seconds": cal["seconds"], "rows_refit": cal["rows_refit"],
            "calibrate_loso_defocus": cal["defocus"]["summary"], "models": rows}


def _subset_corpus(folder: Path, names: list[str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    with open(REAL / "manifest.csv", newline="") as f:
        reader = csv.DictReader(f)
        rows = [r for r in reader if r["stack"] in names]
        header = reader.fieldnames
    for r in rows:
        r["path"] = str((REAL / r["path"]).resolve())
    with open(folder / "manifest.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=header)
        w.writeheader()
        w.writerows(rows)
    return folder


def _guided_replay(stack_dir: Path, scorer, label) -> tuple[list[int], int, int]:
    from autofocus.service.microscopes import open_microscope
    from autofocus.settings import load_settings
    from autofocus.stacks.replay import replay_request

    frames, ok, right = [], 0, 0
    for where in ("bottom", "middle", "top"):
        mic = open_microscope(load_settings(None, driver="replay",
                                            replay={"stack": stack_dir}))
        try:
            lim = mic.z_limits_um
            start = {"bottom": lim.min_um, "top": lim.max_um,
                     "middle": 0.5 * (lim.min_um + lim.max_um)}[where]
            mic.move_z(start)
            fields = replay_request(mic, tolerance_um=label.tolerance_um)
            res = focus(mic, scorer=scorer, strategy="guided", dof_um=4 * label.tolerance_um,
                        **fields)
            frames.append(res.frames)
            ok += int(res.success)
            right += int(res.success and abs(res.best_z_um - label.best_z_um)
                         <= label.tolerance_um + 1e-9)
        finally:
            mic.close()
    return frames, ok, right


def run_real(work: Path) -> dict:
    labels = read_manifest(REAL)
    by_source: dict[str, list[str]] = {}
    for n, lab in labels.items():
        if lab.labelled:
            by_source.setdefault(lab.source, []).append(n)
    stock = open_model(None, provider="cpu")
    out = []
    for source, names in by_source.items():
        if len(names) < 3:
            continue
        for held in names:
            lab = labels[held]
            dof = 4 * lab.tolerance_um
            others = [n for n in names if n != held]
            site = work / f"real_{held}.onnx"
            calibrate([_subset_corpus(work / f"c_{held}", others)], site, dof_um=dof)
            cal = open_model(site, provider="cpu")
            stack = lab.to_stack()
            frames = stack.images()
            z = stack.z_um
            row = {"source": source, "held": held, "dof_um_assumed": dof}
            for name, scorer in (("stock", stock), ("calibrated", cal)):
                v = judge_curve(z, scorer.score(frames), lab.best_z_um, lab.tolerance_um)
                m = defocus_metrics(scorer, frames, z, lab.best_z_um, dof)
                g_frames, g_ok, g_right = _guided_replay(Path(stack.source), scorer, lab)
                row[name] = {"within_tolerance": v["within_tolerance"], "top0": v["top0"],
                             "spearman": v["spearman"], **m,
                             "guided_frames": g_frames, "guided_success": g_ok,
                             "guided_within_tolerance": g_right}
            out.append(row)
    return {"per_stack": out}


def main() -> None:
    which = sys.argv[1] if len(sys.argv) > 1 and not sys.argv[1].startswith("-") else "all"
    report = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if which in ("sim", "all"):
            report["sim"] = run_sim(work)
        if which in ("real", "all"):
            report["real"] = run_real(work)
    text = json.dumps(report, indent=2, default=lambda o: None if o is None or (
        isinstance(o, float) and math.isnan(o)) else str(o))
    if "--json" in sys.argv:
        Path(sys.argv[sys.argv.index("--json") + 1]).write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
