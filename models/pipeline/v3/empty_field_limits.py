"""How the classical empty-field test's limits were chosen (validation frames only).

`python -m autofocus_models.pipeline.v3.empty_field_limits models/focusnet-v3.onnx` prints,
for a grid of (spot, block, χ²) limits, what the combination
max(graph no_specimen_p, empty) would give on validation frames that the
model's evaluation (`evaluate.no_specimen`, seeds from 3 000 000) never uses:
600 blank frames of `evaluate.VISIBILITY_SEED` and 60 sparse-specimen stacks
of seeds from 7 000 000. The rows are sorted as the limits were chosen: false
flags on visible sparse frames (in-focus peak ≥ 5 σ, within 2 DOF) and on
matched-filter-visible ones no higher than the graph's own, then most blank
frames flagged. The shipped limits are `autofocus.scoring.empty_field`'s
constants (spot 4.5, block 4.0, χ² 8.0: the best row; validation: the graph
alone flags 95.8 % of the blanks, with the test 98.5 %, false flags on visible
sparse frames 0.64 % either way; about 15 s on the 2-core VM).

`--bench [MODEL.onnx]` instead times the test per frame beside the model's graph.
"""

from __future__ import annotations

import itertools
import sys
from pathlib import Path

import numpy as np
from autofocus_models.pipeline.synth import make_stack
from autofocus_models.pipeline.v3.data import no_specimen_frame
from autofocus_models.pipeline.v3.evaluate import (
    SHAPE,
    VISIBILITY_SEED,
    _graph_no_specimen,
    _peak_snr,
    matched_filter_snr,
    visibility_threshold,
)

from autofocus.scoring.empty_field import empty_field_stats
from autofocus.scoring.model import open_model
from autofocus.scoring.preprocess import prepare_raw

VALIDATION_SPARSE_SEED0 = 7_000_000
KEYS = ("spot8", "spot16", "block_z", "excess_chi_z")


def _stats(frames: list[np.ndarray]) -> np.ndarray:
    return np.array([[empty_field_stats(prepare_raw(f))[k] for k in KEYS] for f in frames])


def bench(model_path: Path | None = None) -> None:
    """Cost per frame (best of n) of the empty-field test at 256² and 2048², beside the
    model's graph outputs on the same frames in the same run."""
    import time

    from autofocus.scoring.empty_field import empty_field_test
    from autofocus.scoring.model import DEFOCUS_OUTPUTS

    model = open_model(model_path, provider="cpu")

    def best_ms(fn: object, n: int) -> float:
        fn()  # type: ignore[operator]
        times = []
        for _ in range(n):
            t0 = time.perf_counter()
            fn()  # type: ignore[operator]
            times.append(time.perf_counter() - t0)
        return 1e3 * min(times)

    rng = np.random.default_rng(0)
    for side, n in ((256, 200), (2048, 30)):
        frame = rng.poisson(200.0, (side, side)).astype(np.uint16)
        grey = prepare_raw(frame)
        t_test = best_ms(lambda: empty_field_test(grey), n)  # noqa: B023
        t_graph = best_ms(lambda: model.run_outputs([frame], DEFOCUS_OUTPUTS), n)  # noqa: B023
        print(f"{side}²: empty-field test {t_test:.2f} ms per frame, graph outputs "
              f"{t_graph:.2f} ms (ratio {t_test / t_graph:.2f})")


def main(model_path: Path) -> None:
    scorer = open_model(model_path, provider="cpu")
    rng = np.random.default_rng([VISIBILITY_SEED, 5])
    blanks = [no_specimen_frame(rng, SHAPE)[0] for _ in range(600)]
    pb, sb = _graph_no_specimen(scorer, blanks), _stats(blanks)
    ps, ss, dz, snr, mf = [], [], [], [], []
    for i in range(60):
        st = make_stack(VALIDATION_SPARSE_SEED0 + i, "sparse", shape=SHAPE, n_planes=15)
        frames = list(st.frames)
        ps += list(_graph_no_specimen(scorer, frames))
        ss.append(_stats(frames))
        dz += list(np.abs(st.dz_um) / st.dof_um)
        snr += [_peak_snr(frames[int(np.argmin(np.abs(st.dz_um)))])] * len(frames)
        mf += [matched_filter_snr(f) for f in frames]
    ps_a, ss_a, dz_a = np.array(ps), np.concatenate(ss), np.array(dz)
    vis = (dz_a <= 2) & (np.array(snr) >= 5.0)
    mfv = (dz_a <= 2) & (np.array(mf) >= visibility_threshold())
    near = dz_a <= 2
    rows = []
    for a, b, c in itertools.product((4.0, 4.5, 5.0, 5.5), (3.5, 4.0, 4.5, 5.0, 6.0),
                                     (3.0, 4.0, 6.0, 8.0, 10.0)):
        def empty(x: np.ndarray) -> np.ndarray:
            return (x[:, :2].max(1) < a) & (x[:, 2] < b) & (x[:, 3] < c)  # noqa: B023

        fb, fs = (pb > 0.5) | empty(sb), (ps_a > 0.5) | empty(ss_a)
        worse = (fs[vis].mean() > (ps_a[vis] > 0.5).mean()
                 or fs[mfv].mean() > (ps_a[mfv] > 0.5).mean())
        rows.append((worse, -fb.mean(), a, b, c, fb.mean(), fs[vis].mean(), fs[mfv].mean(),
                     fs[near].mean()))
    rows.sort(key=lambda r: (r[0], r[1], r[8]))
    print(f"graph alone: blanks flagged {(pb > 0.5).mean():.4f}, false flags visible "
          f"{(ps_a[vis] > 0.5).mean():.4f}, matched-filter visible {(ps_a[mfv] > 0.5).mean():.4f}, "
          f"all within 2 DOF {(ps_a[near] > 0.5).mean():.4f}")
    print("spot block chi2 | blanks flagged | false flags: visible, mf-visible, all within 2 DOF")
    for r in rows[:10]:
        print(f"{r[2]:.1f} {r[3]:.1f} {r[4]:.1f} | {r[5]:.4f} | {r[6]:.4f} {r[7]:.4f} {r[8]:.4f}"
              + ("  (worse than the graph)" if r[0] else ""))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--bench":
        bench(Path(sys.argv[2]) if len(sys.argv) > 2 else None)
    else:
        main(Path(sys.argv[1] if len(sys.argv) > 1 else "models/focusnet-v3.onnx"))
