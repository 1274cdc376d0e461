"""When a found peak may be called focus: the peak-width rule, the rival-peak rule, confidence.

Pure functions over numbers (µm, scores), shared by the strategies and
property-tested on synthetic curves:

- **Peak width**: a focal plane blurs over about one depth of field, so the
  half-width at half maximum (HWHM) of a real focus peak is not much smaller
  than the DOF. A "peak" far narrower (one sample, a garbage frame, a noise
  spike) is not a focal plane: `width_plausible` says no below
  `MIN_HWHM_DOF` × DOF.
- **Rival peaks**: `rivals(peaks, ...)` returns the confirmed peaks other than
  the sharpest that stand clearly out of the measured score noise (height ≥
  `RIVAL_MIN_SNR` noise sigmas, whatever their height relative to the sharpest:
  a dim specimen under bright debris is a plane too) or whose height above the
  baseline reaches `RIVAL_MIN_RATIO` of the sharpest one's, and that lie at
  least `RIVAL_MIN_SEPARATION_DOF` DOF away (when
  naming the planes of a verdict, also from every higher rival: a lower peak
  nearer than that is a flank). A
  request policy (one of `RIVAL_POLICIES`) decides what a rival means: `fail` (default),
  `nearest` (to the expected z, else the start) or `sharpest`.
- **Confidence**: `peak_confidence` turns the evidence (signal-to-noise of
  the peak, fit quality, how finely the top was sampled, width plausibility)
  into a number in [0, 1], calibrated on the search benchmark (see README).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

RIVAL_POLICIES: tuple[str, ...] = ("fail", "nearest", "sharpest")

# A focus peak's half width at half maximum is at least this many DOF.
MIN_HWHM_DOF = 0.2
# ... and a fine-measure focus peak is at most this many DOF wide.
MAX_HWHM_DOF = 12.0
# A second peak counts as a rival from this fraction of the main peak's height...
RIVAL_MIN_RATIO = 0.12
# ... or, whatever its height relative to the main one, from this many noise sigmas (but
# never below this fraction of the main one's height).
RIVAL_MIN_SNR = 8.0
RIVAL_FLOOR_RATIO = 0.02
# ... and this many DOF away from it (closer is the same plane's shoulder).
RIVAL_MIN_SEPARATION_DOF = 3.0


@dataclass(frozen=True)
class Peak:
    """A confirmed peak of a focus curve: centre `z_um`, `score` at the top,
    `height` above the curve's baseline (score units, > 0), `hwhm_um` its
    half-width at half maximum (None when unknown)."""

    z_um: float
    score: float
    height: float
    hwhm_um: float | None = None

    def to_dict(self) -> dict[str, float | None]:
        """JSON-ready: z_um, score, height, hwhm_um."""
        return {
            "z_um": float(self.z_um),
            "score": float(self.score),
            "height": float(self.height),
            "hwhm_um": None if self.hwhm_um is None else float(self.hwhm_um),
        }


def width_plausible(hwhm_um: float | None, dof_um: float) -> bool:
    """True when a peak of half-width `hwhm_um` (µm) can be a focal plane for `dof_um`.

    Unknown widths (None) are not plausible: a success needs a measured width.
    Raises `ValueError` for a non-positive `dof_um`.
    """
    if not dof_um > 0:
        raise ValueError(f"dof_um must be positive, got {dof_um}")
    if hwhm_um is None or not math.isfinite(hwhm_um):
        return False
    return MIN_HWHM_DOF * dof_um <= hwhm_um <= MAX_HWHM_DOF * dof_um


def rivals(
    peaks: Sequence[Peak],
    dof_um: float,
    *,
    min_ratio: float = RIVAL_MIN_RATIO,
    min_separation_dof: float = RIVAL_MIN_SEPARATION_DOF,
    distinct: bool = False,
    noise_sigma: float | None = None,
    min_snr: float = RIVAL_MIN_SNR,
) -> tuple[Peak | None, list[Peak]]:
    """(the sharpest peak, its rivals) among `peaks`; (None, []) for no peaks.

    A rival is another peak at least `min_separation_dof` × `dof_um` from the
    sharpest whose height reaches `min_ratio` × the sharpest one's height or,
    when the score noise `noise_sigma` (score units) is known, `min_snr` noise
    sigmas (and at least `RIVAL_FLOOR_RATIO` of the sharpest): significance, not
    relative height, makes a plane.
    With `distinct` (for naming the planes of a verdict) a rival must also lie
    that far from every higher rival: a lower peak nearer than that to a higher
    one is that plane's flank, not a plane of its own. Without it every such
    candidate is returned, e.g. for checking each one for a dip. Rivals are
    ordered by height, highest first.
    """
    good = [p for p in peaks if p.height > 0 and math.isfinite(p.z_um)]
    if not good:
        return None, []
    best = max(good, key=lambda p: p.height)
    kept = [best]
    floor = min_ratio * best.height
    if noise_sigma is not None and math.isfinite(noise_sigma) and noise_sigma > 0:
        # Never below RIVAL_FLOOR_RATIO of the sharpest: a noise estimate can collapse (a
        # learned score that saturates at 0 away from focus has no measurable noise there).
        floor = min(floor, max(min_snr * noise_sigma, RIVAL_FLOOR_RATIO * best.height))
    for p in sorted(good, key=lambda p: -p.height):
        if p.height >= floor and all(
            abs(p.z_um - k.z_um) >= min_separation_dof * dof_um
            for k in (kept if distinct else kept[:1])
        ):
            kept.append(p)
    return best, kept[1:]


def choose(
    best: Peak,
    rival_peaks: Sequence[Peak],
    policy: str,
    *,
    reference_z_um: float,
) -> Peak | None:
    """The peak a rival `policy` picks, or None when the policy is `fail` and rivals exist.

    `nearest` picks the peak closest to `reference_z_um` (the request's expected
    z, else the start); `sharpest` the highest. Raises `ValueError` for an
    unknown policy.
    """
    if policy not in RIVAL_POLICIES:
        raise ValueError(f"rival policy must be one of {RIVAL_POLICIES}, got {policy!r}")
    if not rival_peaks:
        return best
    if policy == "fail":
        return None
    if policy == "sharpest":
        return best
    return min([best, *rival_peaks], key=lambda p: abs(p.z_um - reference_z_um))


def rival_sentence(peaks: Sequence[Peak]) -> str:
    """The failure sentence naming every candidate plane (z and score)."""
    ordered = sorted(peaks, key=lambda p: p.z_um)
    where = " and ".join(f"{p.z_um:.2f}" for p in ordered)
    scores = ", ".join(f"{p.score:.4g}" for p in ordered)
    n = "two" if len(ordered) == 2 else str(len(ordered))
    return (
        f"{n} candidate focal planes at z = {where} µm (scores {scores}); "
        "set rival to 'nearest' or 'sharpest' to choose one"
    )


def peak_confidence(
    snr: float,
    *,
    r2: float | None,
    spacing_dof: float,
    width_ok: bool,
    z_sigma_dof: float | None = None,
) -> float:
    """Confidence in [0, 1] that a found peak is focus within a quarter DOF.

    `snr` peak height over the score noise; `r2` of the peak fit (None: no
    fit); `spacing_dof` the widest gap (DOF units) between samples around the
    peak top; `width_ok` the width rule; `z_sigma_dof` the fit's standard error
    of the centre (DOF units). Each factor is 1 for ideal evidence and falls
    smoothly: SNR as snr/(snr + 5), fit as R², sampling as 1 below 1 DOF
    spacing, the centre error as 1 below DOF/16. An implausible width gives 0.
    """
    if not width_ok or not math.isfinite(snr) or snr <= 0:
        return 0.0
    c = snr / (snr + 5.0)
    if r2 is not None and math.isfinite(r2):
        c *= min(max(r2, 0.0), 1.0) ** 0.5
    else:
        c *= 0.6
    if spacing_dof > 1.0:
        c *= 1.0 / spacing_dof
    if z_sigma_dof is not None and math.isfinite(z_sigma_dof) and z_sigma_dof > 1 / 16:
        c *= min(1.0, (1 / 16) / z_sigma_dof) ** 0.5
    return float(min(max(c, 0.0), 1.0))
