"""The focus curve of a job as a PNG: measured points, the fitted peak, the chosen z.

Rendered with matplotlib's Agg canvas on a private `Figure` (no pyplot global
state), so it is safe in a worker thread.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from typing import Any


def curve_png(
    points: Sequence[tuple[float, float | None]],
    *,
    fit: dict[str, Any] | None = None,
    best_z_um: float | None = None,
    start_z_um: float | None = None,
    title: str = "",
) -> bytes:
    """PNG bytes of a focus curve; `points` are (z_um, score) with None for unusable frames.

    `fit` is `FocusResult.fit` (uses its sampled `curve`, or parabola `coeffs`);
    `best_z_um` is drawn as a vertical line. Never raises for empty input: an
    empty plot says "no measurements yet".
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 4.0), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    good = [(z, s) for z, s in points if s is not None and math.isfinite(s)]
    bad = [z for z, s in points if s is None or not math.isfinite(s)]
    if good:
        zs, ss = zip(*good, strict=True)
        ax.plot(zs, ss, "o", ms=4, color="tab:blue", label=f"measured ({len(good)})")
    if bad:
        ymin = min((s for _, s in good), default=0.0)
        ax.plot(bad, [ymin] * len(bad), "x", color="tab:red", label="unusable frame")
    fit_z, fit_s = _fit_curve(fit)
    if fit_z:
        ax.plot(fit_z, fit_s, "-", color="tab:orange", label=f"fit ({fit.get('kind')})")  # type: ignore[union-attr]
    if best_z_um is not None and math.isfinite(best_z_um):
        ax.axvline(best_z_um, color="tab:green", lw=1.5, label=f"chosen z = {best_z_um:.2f} µm")
    if start_z_um is not None and math.isfinite(start_z_um):
        ax.axvline(start_z_um, color="grey", lw=1, ls=":", label=f"start z = {start_z_um:.2f} µm")
    if not points:
        ax.text(0.5, 0.5, "no measurements yet", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel("z (µm)")
    ax.set_ylabel("focus score")
    if title:
        ax.set_title(title, fontsize=9)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8, loc="best")
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    out = io.BytesIO()
    fig.savefig(out, format="png")
    return out.getvalue()


def _fit_curve(fit: dict[str, Any] | None) -> tuple[list[float], list[float]]:
    if not fit:
        return [], []
    curve = fit.get("curve")
    if isinstance(curve, dict) and curve.get("z_um") and curve.get("score"):
        pairs = [
            (float(z), float(s))
            for z, s in zip(curve["z_um"], curve["score"], strict=False)
            if z is not None and s is not None
        ]
        return [p[0] for p in pairs], [p[1] for p in pairs]
    coeffs = fit.get("coeffs")
    lo, hi = fit.get("z_min_um"), fit.get("z_max_um")
    if isinstance(coeffs, list) and len(coeffs) == 3 and lo is not None and hi is not None:
        n = 41
        zs = [lo + (hi - lo) * i / (n - 1) for i in range(n)]
        return zs, [coeffs[0] * z * z + coeffs[1] * z + coeffs[2] for z in zs]
    return [], []
