"""The focus curve of a job as a PNG a microscopist reads at a glance.

Two panels: the whole searched range (every measured point, the fitted peak
drawn densely, the chosen z, the start z) and a zoom on the chosen plane where
the refinement points sit, numbered in the order they were measured. The y
axis is the score relative to the best measured score, starting at 0, so a
3 % wobble looks like one and a real peak stands out. A failed or cancelled
job's picture says so in red with the reason, and the PNG carries `State`
and `Reason` text chunks (PNG tEXt metadata) for programs.

Rendered with matplotlib's Agg canvas on a private `Figure` (no pyplot global
state), so it is safe in a worker thread. Used by `GET /v1/jobs/{id}/curve.png`
and `autofocus focus --plot FILE`.
"""

from __future__ import annotations

import io
import math
import re
import textwrap
from collections.abc import Sequence
from typing import Any

DENSE_SAMPLES = 1500
"""Points at which the fitted peak model is drawn over its span."""

_STATE_COLOURS = {"succeeded": "tab:green", "failed": "tab:red", "cancelled": "tab:orange",
                  "interrupted": "tab:red"}


def curve_png(points: Sequence[tuple[float, float | None]], **kwargs: Any) -> bytes:
    """PNG bytes of a focus curve: `curve_figure(points, **kwargs)` saved as PNG, with the
    `State`, `Reason`, `Reason-Code` PNG text chunks. Never raises for empty input."""
    fig = curve_figure(points, **kwargs)
    out = io.BytesIO()
    fig.savefig(out, format="png", metadata=fig._autofocus_metadata)  # type: ignore[attr-defined]
    return out.getvalue()


_REASON_Z = re.compile(r"z\s*=\s*([-+]?\d+(?:\.\d+)?)((?:\s*(?:,|and)\s*[-+]?\d+(?:\.\d+)?)*)")


def reason_z_values(reason: str | None) -> list[float]:
    """Every z (µm) a reason sentence names: "z = 67.50 µm", "z = -2.09 and 12.86 µm"."""
    values: list[float] = []
    for first, rest in _REASON_Z.findall(reason or ""):
        values.append(float(first))
        values += [float(v) for v in re.findall(r"[-+]?\d+(?:\.\d+)?", rest)]
    return values


def curve_figure(
    points: Sequence[tuple[float, float | None]],
    *,
    fit: dict[str, Any] | None = None,
    best_z_um: float | None = None,
    start_z_um: float | None = None,
    title: str = "",
    state: str | None = None,
    reason: str | None = None,
    reason_code: str | None = None,
    final_z_um: float | None = None,
    planes_um: Sequence[float] | None = None,
) -> Any:
    """The focus-curve matplotlib `Figure` (see `curve_png`).

    `points` are the measured (z_um, score) in measurement order, None (or NaN)
    for an unusable frame; `fit` is `FocusResult.fit` (its model `params` are
    evaluated densely; a sampled `curve` or parabola `coeffs` are the fallback);
    `best_z_um` (the chosen plane, µm) is drawn only when given; `state` and
    `reason` (one sentence) are written on the picture when the job did not
    succeed, and stored as PNG text (`State`, `Reason`, `Reason-Code`), with
    where the stage was left (`final_z_um`) when known. `planes_um` the candidate
    planes of a `rival_peak` failure, each marked in both panels. Every z the reason
    names is marked too (unless it is already one of the lines drawn). Never raises
    for empty input: the plot then says "no measurements yet".
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    good = [(i, z, s) for i, (z, s) in enumerate(points) if _finite(s) and _finite(z)]
    bad = [z for z, s in points if not _finite(s) and _finite(z)]
    scale = max((s for _, _, s in good), default=0.0)
    scale = scale if scale > 0 else 1.0  # scores are ≥ 0; an all-zero curve stays at 0
    fit_z, fit_s = _dense_fit(fit)
    ended_badly = state is not None and state != "succeeded"

    fig = Figure(figsize=(9.6, 4.8 if ended_badly else 4.2), dpi=100)
    FigureCanvasAgg(fig)
    grid = fig.add_gridspec(1, 2, width_ratios=(1.8, 1.0), wspace=0.22)
    main = fig.add_subplot(grid[0, 0])
    zoom = fig.add_subplot(grid[0, 1])

    centre = _zoom_centre(good, fit, best_z_um)
    half = _zoom_half_width(good, fit, centre)
    planes = [float(z) for z in (planes_um or []) if _finite(z)]
    drawn = planes + [z for z in (best_z_um, start_z_um) if z is not None and _finite(z)]
    named = [z for z in reason_z_values(reason)
             if all(abs(z - d) > 0.011 for d in drawn)]  # reasons print z to 0.01 µm
    for ax, is_zoom in ((main, False), (zoom, True)):
        if good:
            ax.plot([z for _, z, _ in good], [s / scale for _, _, s in good], "o",
                    ms=5 if is_zoom else 4, color="tab:blue", zorder=3,
                    label=f"measured ({len(good)})")
        if bad:
            ax.plot(bad, [0.0] * len(bad), "x", color="tab:red", zorder=3,
                    label=f"unusable frame ({len(bad)})")
        if fit_z:
            ax.plot(fit_z, [s / scale for s in fit_s], "-", lw=1.4, color="tab:orange",
                    zorder=2, label=f"fit ({(fit or {}).get('kind')})")
        if best_z_um is not None and _finite(best_z_um):
            ax.axvline(best_z_um, color="tab:green", lw=1.5, zorder=1,
                       label=f"chosen z = {best_z_um:.2f} µm")
        if start_z_um is not None and _finite(start_z_um):
            ax.axvline(start_z_um, color="grey", lw=1, ls=":", zorder=1,
                       label=f"start z = {start_z_um:.2f} µm")
        for k, z in enumerate(planes):
            ax.axvline(z, color="tab:red", lw=1.3, ls="--", zorder=1,
                       label=f"candidate plane {k + 1}: z = {z:.2f} µm")
        for z in named:
            ax.axvline(z, color="tab:purple", lw=1.0, ls="-.", zorder=1,
                       label=f"z named in the reason = {z:.2f} µm")
        ax.set_ylim(0.0, 1.12)
        ax.grid(True, alpha=0.3)
        ax.set_xlabel("z (µm)")
    main.set_ylabel("score / best measured score")
    if good:
        # The whole search, and the start and chosen z even where no point was measured.
        marks = [z for z in (start_z_um, best_z_um) if z is not None and _finite(z)]
        marks += planes + named
        lo = min([z for _, z, _ in good] + marks)
        hi = max([z for _, z, _ in good] + marks)
        pad = 0.03 * (hi - lo) if hi > lo else 1.0
        main.set_xlim(lo - pad, hi + pad)
        zoom.set_xlim(centre - half, centre + half)
        main.axvspan(centre - half, centre + half, color="tab:blue", alpha=0.06, zorder=0,
                     label="zoomed range (right panel)")
        for order, z, s in good:
            if centre - half <= z <= centre + half:
                # Labels near the right edge or the top go inside, never clipped.
                right = z > centre + 0.6 * half
                top = s / scale > 1.05
                zoom.annotate(str(order + 1), (z, s / scale), textcoords="offset points",
                              xytext=(-4 if right else 3, -10 if top else 4), fontsize=7,
                              color="dimgray", ha="right" if right else "left",
                              annotation_clip=True)
        zoom.set_title(f"zoom ±{half:.2g} µm: numbers = order measured", fontsize=8)
        floor = min(s for _, _, s in good)
        contrast = (scale - floor) / scale
        main.set_title(
            f"contrast {100 * contrast:.0f} % (best {scale:.4g}, lowest {floor:.4g})",
            fontsize=8,
        )
    else:
        main.text(0.5, 0.5, "no measurements yet", ha="center", va="center",
                  transform=main.transAxes)
    if main.get_legend_handles_labels()[0]:
        main.legend(fontsize=7, loc="upper left", framealpha=0.85)
    header = title or "focus curve"
    if state:
        header += f" · {state}"
    fig.suptitle(header, fontsize=10, y=0.99, color=_STATE_COLOURS.get(state or "", "black"))
    if ended_badly:
        what = f"{state.upper()}: {reason or 'no reason given'}"
        if _finite(final_z_um) and _finite(start_z_um) and "stage" not in (reason or ""):
            if abs(final_z_um - start_z_um) <= 1e-3:  # type: ignore[operator]
                what += f" — stage returned to its start, z = {start_z_um:.2f} µm"
            else:
                what += f" — stage left at z = {final_z_um:.2f} µm"
        fig.text(0.01, 0.925, "\n".join(textwrap.wrap(what, 120)), fontsize=9,
                 color=_STATE_COLOURS.get(state, "tab:red"), va="top", ha="left",
                 weight="bold")
        fig.subplots_adjust(top=0.80, bottom=0.11, left=0.07, right=0.98)
    else:
        fig.subplots_adjust(top=0.88, bottom=0.12, left=0.07, right=0.98)
    metadata = {"Title": header, "Software": "autofocus"}
    if state:
        metadata["State"] = state
    if reason:
        metadata["Reason"] = reason
    if reason_code:
        metadata["Reason-Code"] = reason_code
    fig._autofocus_metadata = metadata  # type: ignore[attr-defined]
    return fig


def _finite(x: float | None) -> bool:
    return x is not None and math.isfinite(x)


def _zoom_centre(
    good: Sequence[tuple[int, float, float]], fit: dict[str, Any] | None, best_z_um: float | None
) -> float:
    """The chosen z, else the fitted peak, else the sharpest measured point (µm)."""
    if best_z_um is not None and _finite(best_z_um):
        return float(best_z_um)
    if fit and _finite(fit.get("z_um")):
        return float(fit["z_um"])
    if good:
        return max(good, key=lambda p: p[2])[1]
    return 0.0


def _zoom_half_width(
    good: Sequence[tuple[int, float, float]], fit: dict[str, Any] | None, centre: float
) -> float:
    """Half-width (µm) of the zoom: 4 fitted half-widths, widened to hold ≥ 3 points."""
    w = ((fit or {}).get("params") or {}).get("w_um")
    half = 4.0 * abs(w) if isinstance(w, int | float) and _finite(w) and w != 0 else 2.0
    distances = sorted(abs(z - centre) for _, z, _ in good)
    if len(distances) >= 3:
        half = max(half, 1.15 * distances[2])
    return max(half, 0.05)


def _dense_fit(fit: dict[str, Any] | None) -> tuple[list[float], list[float]]:
    """The fitted model sampled densely over its span; falls back to the stored samples."""
    if not fit:
        return [], []
    lo, hi = fit.get("z_min_um"), fit.get("z_max_um")
    params = fit.get("params")
    if isinstance(params, dict) and params and _finite(lo) and _finite(hi) and hi > lo:
        try:
            import numpy as np

            from autofocus.search.strategies.peakfit import PeakFit

            model = PeakFit(fit["kind"], float(fit["z_um"]), float(fit["score"]),
                            float(fit.get("r2") or 0.0), params, float(lo), float(hi),
                            int(fit.get("n_points") or 0))
            z0 = float(fit["z_um"])
            zs = np.union1d(np.linspace(lo, hi, DENSE_SAMPLES),
                            np.linspace(max(lo, z0 - 3.0), min(hi, z0 + 3.0), 300))
            scores = np.asarray(model.evaluate(zs), dtype=float)
            ok = np.isfinite(scores)
            if ok.sum() >= 2:
                return zs[ok].tolist(), scores[ok].tolist()
        except (KeyError, TypeError, ValueError, ImportError):
            pass  # an unknown or older fit format: draw what was stored
    curve = fit.get("curve")
    if isinstance(curve, dict) and curve.get("z_um") and curve.get("score"):
        pairs = [
            (float(z), float(s))
            for z, s in zip(curve["z_um"], curve["score"], strict=False)
            if z is not None and s is not None
        ]
        return [p[0] for p in pairs], [p[1] for p in pairs]
    coeffs = fit.get("coeffs")
    if isinstance(coeffs, list) and len(coeffs) == 3 and _finite(lo) and _finite(hi):
        n = 200
        zs_list = [lo + (hi - lo) * i / (n - 1) for i in range(n)]
        return zs_list, [coeffs[0] * z * z + coeffs[1] * z + coeffs[2] for z in zs_list]
    return [], []


__all__ = ["DENSE_SAMPLES", "curve_figure", "curve_png", "reason_z_values"]
