"""Synthetic through-focus z-stacks with known focus, for training and robustness tests.

Every stack is drawn from a seed: an objective and camera pixel (so the depth of
field and sampling vary), an imaging modality (fluorescence / incoherent
reflected light, or transmitted brightfield with absorption and phase), a
specimen (the simulator's procedural beads, cells and fibres, or one of the
procedural images made here: 1/f textures, patterned-wafer shapes, puncta), a
photon budget with background, read noise and bit depth, and nuisances
(uneven illumination, bleaching/lamp flicker along the stack, JPEG
compression, sensor dust, slight tilt). The optical image at each defocus comes
from the simulator's physical model (`autofocus_drivers.sim.render.ImageFormation`, i.e.
`autofocus_drivers.sim.optics` transfer functions); only the camera chain is re-done
here, vectorised, with the same steps as `autofocus_drivers.sim.camera.Sensor`
(Poisson shot noise → full well → read noise → gain/offset → ADC).

No real image is used: the real stacks in `shared/data/real` stay unseen.

`condition` selects the distribution: "train" (the broad training mix) or one
of the robustness conditions kept out of training: "low_light" (1.5–4
photons/px at full brightness), "sparse" (a few objects on an empty field),
"debris" (dust on a second plane 6–20 DOF away), "bf_phase" (brightfield of
strong phase objects: contrast inverts through focus).

"train_v2" (focusnet-v2's training mix) is "train" plus, in `LAYER_P` of the
stacks, a second, weaker layer 3–25 DOF from the specimen (dust, or a patch of
wafer-like shapes / texture covering 10–45 % of the field): the label stays on
the dominant layer, whose in-focus gradient energy is made ≥ 2× the second
layer's. It teaches that a crisp minority structure away from the main layer
is not focus (the failure of v1 on patterned-wafer stacks).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np
from autofocus_drivers.sim import Optics, SpecimenConfig
from autofocus_drivers.sim.render import ImageFormation
from autofocus_drivers.sim.specimen import make_specimen

CONDITIONS = ("train", "low_light", "sparse", "debris", "bf_phase", "train_v2")
"""Index order fixes the seeding of each condition: only append."""

LAYER_P = 0.4
"""Share of "train_v2" stacks that get a second (distractor) layer."""

# (magnification, NA, immersion index): common objectives, dry to oil.
OBJECTIVES = (
    (4.0, 0.13, 1.0), (10.0, 0.25, 1.0), (10.0, 0.45, 1.0), (20.0, 0.5, 1.0),
    (20.0, 0.75, 1.0), (40.0, 0.6, 1.0), (40.0, 0.95, 1.0), (40.0, 1.3, 1.515),
    (60.0, 1.2, 1.33), (60.0, 1.4, 1.515), (100.0, 1.4, 1.515), (25.0, 1.1, 1.33),
)
CAMERA_PIXELS_UM = (3.45, 4.5, 5.86, 6.5, 11.0, 13.0)


@dataclass
class SynthStack:
    """One synthetic stack: frames (n, H, W) in camera units, their defocus and the DOF.

    `dz_um[i]` is plane i's distance from focus (stage − focus, µm); `dof_um`
    is the objective's depth of field; `meta` records what was drawn.
    """

    name: str
    frames: np.ndarray
    dz_um: np.ndarray
    dof_um: float
    meta: dict[str, Any] = field(default_factory=dict)


# --- procedural in-focus images (pixel units, values ~[0, 1]) ---------------------------------


def _power_law_field(rng: np.random.Generator, shape: tuple[int, int], beta: float,
                     cutoff_px: float) -> np.ndarray:
    """Gaussian random field with power spectrum ∝ f^-beta, band-limited at `cutoff_px`."""
    h, w = shape
    fy = np.fft.fftfreq(h)[:, None]
    fx = np.fft.rfftfreq(w)[None, :]
    f = np.sqrt(fx * fx + fy * fy)
    f[0, 0] = 1.0
    amp = f ** (-beta / 2.0) * np.exp(-((f * cutoff_px) ** 2))
    amp[0, 0] = 0.0
    noise = rng.standard_normal((h, w // 2 + 1)) + 1j * rng.standard_normal((h, w // 2 + 1))
    img = np.fft.irfft2(noise * amp, s=shape)
    return (img - img.mean()) / (img.std() + 1e-12)


def texture_image(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """Tissue-like texture: a 1/f^β field through a random soft threshold or exponential."""
    g = _power_law_field(rng, shape, rng.uniform(1.5, 3.5), rng.uniform(0.3, 2.0))
    mode = rng.integers(3)
    if mode == 0:
        img = 1.0 / (1.0 + np.exp(-rng.uniform(1.5, 6.0) * (g - rng.uniform(-0.5, 1.0))))
    elif mode == 1:
        img = np.exp(rng.uniform(0.4, 1.2) * g)
    else:
        img = np.abs(g)
    img -= img.min()
    return img / (img.max() + 1e-12)


def shapes_image(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """Patterned-surface-like image: sharp rectangles, bars, rings and strokes on a flat field."""
    h, w = shape
    img = np.zeros((h, w), np.float32)
    n = int(rng.integers(2, 14))
    for _ in range(n):
        value = float(rng.uniform(0.3, 1.0))
        kind = rng.integers(4)
        cy, cx = int(rng.integers(0, h)), int(rng.integers(0, w))
        size = int(rng.integers(4, max(6, min(h, w) // 2)))
        thick = int(rng.integers(1, 6))
        if kind == 0:
            cv2.rectangle(img, (cx, cy), (cx + size, cy + int(size * rng.uniform(0.2, 1.5))),
                          value, -1)
        elif kind == 1:
            cv2.rectangle(img, (cx, cy), (cx + size, cy + size), value, thick)
        elif kind == 2:
            cv2.circle(img, (cx, cy), size // 2, value, thick)
        else:
            pts = np.cumsum(rng.integers(-size // 2, size // 2 + 1, (5, 2)), axis=0) + [cx, cy]
            cv2.polylines(img, [pts.astype(np.int32)], False, value, thick)
    if rng.random() < 0.5:  # digits/lettering, as on wafers and slides
        font_scale = float(rng.uniform(0.5, 3.0))
        text = str(int(rng.integers(0, 99)))
        mask = np.zeros((h, w), np.uint8)  # OpenCV draws text on 8-bit images only
        cv2.putText(mask, text, (int(rng.integers(0, w // 2)), int(rng.integers(h // 4, h))),
                    cv2.FONT_HERSHEY_SIMPLEX, font_scale, 255, int(rng.integers(1, 5)))
        img = np.maximum(img, mask.astype(np.float32) * np.float32(rng.uniform(0.4, 1.0) / 255))
    if rng.random() < 0.5:  # a faint surface texture
        img += 0.05 * rng.uniform(0, 1) * texture_image(rng, shape).astype(np.float32)
    return img


def puncta_image(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """Vesicle-like puncta: many Gaussian spots of mixed sizes and brightness."""
    h, w = shape
    img = np.zeros((h, w), np.float64)
    n = int(rng.integers(20, 400))
    ys, xs = rng.integers(0, h, n), rng.integers(0, w, n)
    np.add.at(img, (ys, xs), rng.uniform(0.3, 1.0, n))
    img = cv2.GaussianBlur(img, (0, 0), float(rng.uniform(0.5, 2.5)))
    if rng.random() < 0.5:
        img += 0.3 * img.max() * texture_image(rng, shape)
    return img / (img.max() + 1e-12)


_IMAGE_KINDS = {"texture": texture_image, "shapes": shapes_image, "puncta": puncta_image}


# --- the camera chain, vectorised (same physics as autofocus_drivers.sim.camera.Sensor) ------


def expose(photons: np.ndarray, rng: np.random.Generator, *, qe: float, read_noise_e: float,
           gain_e_per_adu: float, offset_adu: float, bit_depth: int,
           full_well_e: float) -> np.ndarray:
    """Expected photons/px → digitised frame: shot noise, full well, read noise, ADC.

    Poisson noise is drawn exactly below 20 e− and by its Gaussian limit above
    (close to indistinguishable there once read noise and rounding are added,
    and numpy's Poisson sampler costs ~200 ns per pixel).
    """
    e = np.maximum(photons, 0.0).astype(np.float32) * np.float32(qe)
    low = e < 20.0
    noisy = e + np.sqrt(e) * rng.standard_normal(e.shape, dtype=np.float32)
    if low.any():
        noisy[low] = rng.poisson(e[low]).astype(np.float32)
    np.clip(noisy, 0.0, full_well_e, out=noisy)
    noisy += rng.standard_normal(e.shape, dtype=np.float32) * np.float32(read_noise_e)
    adu = np.rint(noisy / np.float32(gain_e_per_adu) + np.float32(offset_adu))
    max_adu = (1 << bit_depth) - 1
    np.clip(adu, 0, max_adu, out=adu)
    return adu.astype(np.uint8 if bit_depth <= 8 else np.uint16)


# --- one stack ---------------------------------------------------------------------------------


def _log_uniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(math.exp(rng.uniform(math.log(lo), math.log(hi))))


def _plane_offsets(rng: np.random.Generator, n_planes: int, dof_um: float,
                   condition: str) -> np.ndarray:
    """Defocus of each plane (µm, sorted): a grid over a random range around focus."""
    half_range = _log_uniform(rng, 1.2, 40.0) * dof_um
    if condition == "debris":
        half_range = _log_uniform(rng, 12.0, 30.0) * dof_um
    lo = -half_range * rng.uniform(0.4, 1.0)
    hi = half_range * rng.uniform(0.4, 1.0)
    z = np.linspace(lo, hi, n_planes)
    step = (hi - lo) / (n_planes - 1)
    # Focus on a plane (as annotated stacks have it) or between planes, then jitter.
    z = z - z[np.argmin(np.abs(z))] if rng.random() < 0.5 else z
    z = z + rng.uniform(-0.15, 0.15, n_planes) * step * (rng.random() < 0.3)
    return np.sort(z)


def _optics(rng: np.random.Generator) -> Optics:
    mag, na, n_imm = OBJECTIVES[int(rng.integers(len(OBJECTIVES)))]
    pixel = CAMERA_PIXELS_UM[int(rng.integers(len(CAMERA_PIXELS_UM)))]
    pixel *= 1.0 if rng.random() < 0.7 else 2.0  # 2×2 binning
    return Optics(na=na, wavelength_nm=float(rng.uniform(450, 680)), immersion_index=n_imm,
                  magnification=mag * float(rng.uniform(0.8, 1.5)), camera_pixel_um=pixel)


def _specimen(rng: np.random.Generator, condition: str, modality: str,
              shape: tuple[int, int], optics: Optics) -> tuple[SpecimenConfig, str]:
    px = optics.sample_pixel_um
    if condition == "sparse":
        kind = str(rng.choice(["beads", "cells", "puncta_sparse"]))
    elif condition == "bf_phase":
        kind = str(rng.choice(["cells", "beads", "fibres"]))
    else:
        kind = str(rng.choice(["beads", "cells", "fibres", "texture", "shapes", "puncta"],
                              p=[0.15, 0.22, 0.15, 0.18, 0.15, 0.15]))
    kw: dict[str, Any] = {"focus_z_um": 0.0}
    area_um2 = shape[0] * shape[1] * px * px
    if kind == "beads":
        diameter = float(np.clip(_log_uniform(rng, 0.1, 4.0), 0.05, 20.0))
        kw.update(kind="beads", bead_diameter_um=diameter)
        if condition == "sparse":
            n = int(rng.integers(1, 4))
            kw["density"] = min(1.0, n * math.pi * (diameter / 2) ** 2 / area_um2)
        else:
            kw["density"] = _log_uniform(rng, 0.01, 0.15)
    elif kind == "cells":
        kw.update(kind="cells")
        if condition == "sparse":
            kw["density"] = min(1.0, 1.1 * math.pi * 7.5 * 7.5 * 0.7 / area_um2)
        else:
            kw["density"] = float(rng.uniform(0.15, 0.9))
    elif kind == "fibres":
        kw.update(kind="fibres", density=_log_uniform(rng, 0.02, 0.3))
    else:
        if kind == "puncta_sparse":
            img = np.zeros(shape)
            for _ in range(int(rng.integers(1, 4))):
                img[int(rng.integers(0, shape[0])), int(rng.integers(0, shape[1]))] = 1.0
            img = cv2.GaussianBlur(img, (0, 0), float(rng.uniform(0.8, 3.0)))
            img /= img.max()
        else:
            img = _IMAGE_KINDS[kind](rng, shape)
        kw.update(kind="image", image=np.asarray(img, np.float64))
    if modality == "brightfield":
        if condition == "bf_phase":
            kw.update(phase_scale=_log_uniform(rng, 2.0, 5.0),
                      absorption_scale=float(rng.uniform(0.1, 0.4)))
        else:
            kw.update(phase_scale=_log_uniform(rng, 0.3, 1.5),
                      absorption_scale=_log_uniform(rng, 0.5, 3.0))
    if condition == "debris":
        kw.update(debris_amount=float(rng.uniform(0.5, 1.5)))
    elif condition == "train" and rng.random() < 0.08:
        kw.update(tilt_x_um=float(rng.uniform(-1, 1)) * optics.depth_of_field_um)
    return SpecimenConfig(**kw), kind


def _illumination(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """A smooth multiplicative illumination field (vignetting / uneven lamp), mean ~1."""
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    cy, cx = rng.uniform(0.2, 0.8) * h, rng.uniform(0.2, 0.8) * w
    r2 = ((yy - cy) ** 2 + (xx - cx) ** 2) / float(max(h, w) ** 2)
    return (1.0 - rng.uniform(0.0, 0.6) * r2).astype(np.float32)


def make_stack(seed: int, condition: str = "train", *, shape: tuple[int, int] = (256, 256),
               n_planes: int = 21, dz_dof: Sequence[float] | None = None,
               specimen_image: np.ndarray | None = None) -> SynthStack:
    """Render one synthetic stack for `seed` and `condition` (see module doc); deterministic.

    Training stacks whose in-focus specimen would be invisible in the noise
    (peak contrast below 2 noise σ) are redrawn from the next sub-seed: they
    carry no focus signal, only label noise. `dz_dof` fixes the planes'
    defocus (DOF units) instead of drawing them; `specimen_image` (2-D, any
    scale) replaces the drawn specimen by that in-focus image (e.g. the
    in-focus plane of a real stack: synthetic defocus of a real image through
    the same optics and camera chain). Raises `ValueError` for an unknown
    condition.
    """
    if condition not in CONDITIONS:
        raise ValueError(f"condition must be one of {CONDITIONS}, got {condition!r}")
    for attempt in range(50):
        seq = np.random.SeedSequence([seed, CONDITIONS.index(condition), attempt])
        rng = np.random.default_rng(seq)
        if condition == "train_v2":
            # Drawn first so the rest of the stack follows the "train" recipe unchanged.
            layered = bool(rng.random() < LAYER_P)
            stack = _draw_stack(rng, seed, "train", shape, n_planes, layered=layered,
                                dz_dof=dz_dof, specimen_image=specimen_image)
            if stack is not None:
                stack.meta["condition"] = condition
                stack.meta["layered"] = layered
        else:
            stack = _draw_stack(rng, seed, condition, shape, n_planes, dz_dof=dz_dof,
                                specimen_image=specimen_image)
        if stack is not None:
            stack.meta["attempt"] = attempt
            return stack
    raise RuntimeError(f"no visible specimen drawn for seed {seed} in 50 attempts")


def _second_layer(rng: np.random.Generator, maps: Any, modality: str, shape: tuple[int, int],
                  px_um: float) -> Any:
    """`maps` with a weaker distractor layer in the debris slot (see module doc, "train_v2")."""
    h, w = shape
    if rng.random() < 0.4:
        cfg = SpecimenConfig(kind="beads", density=0.05, debris_amount=1.0)
        layer = make_specimen(cfg, shape, px_um, rng).debris_emission
    else:
        kind = "shapes" if rng.random() < 0.6 else "texture"
        content = _IMAGE_KINDS[kind](rng, shape).astype(np.float32)
        content = (content - content.min()) / max(float(np.ptp(content)), 1e-6)
        # A smooth blob mask over 10–45 % of the field: structure in part of the view only.
        g = _power_law_field(rng, shape, 3.5, 1.0)
        mask = (g > np.quantile(g, 1.0 - rng.uniform(0.10, 0.45))).astype(np.float32)
        layer = content * cv2.GaussianBlur(mask, (0, 0), 2.0)
    main = maps.emission if modality == "fluorescence" else maps.absorption

    def grad_energy(img: np.ndarray) -> float:
        gy, gx = np.gradient(np.asarray(img, np.float64))
        return float(np.sum(gx * gx + gy * gy))

    amount = float(rng.uniform(0.3, 1.5))
    ratio = grad_energy(amount * layer) / max(grad_energy(main), 1e-12)
    if ratio > 0.5:  # keep the labelled layer dominant (≥ 2× the distractor's edge energy)
        amount *= math.sqrt(0.5 / ratio)
    layer = amount * np.asarray(layer, np.float32)
    return dataclasses.replace(
        maps, debris_emission=layer.astype(np.float32),
        debris_absorption=np.clip(0.6 * layer, 0.0, 0.95).astype(np.float32),
        debris_phase_rad=(0.5 * layer).astype(np.float32))


def _draw_stack(rng: np.random.Generator, seed: int, condition: str, shape: tuple[int, int],
                n_planes: int, *, layered: bool = False,
                dz_dof: Sequence[float] | None = None,
                specimen_image: np.ndarray | None = None) -> SynthStack | None:
    optics = _optics(rng)
    dof = optics.depth_of_field_um
    if condition in ("low_light", "sparse"):
        modality = "fluorescence"
    elif condition == "bf_phase":
        modality = "brightfield"
    else:
        modality = "brightfield" if rng.random() < 0.4 else "fluorescence"
    spec_cfg, kind = _specimen(rng, condition, modality, shape, optics)
    if specimen_image is not None:
        spec_cfg = _replace(spec_cfg, kind="image", image=np.asarray(specimen_image, np.float64))
        kind = "real_image"
    if condition == "debris":
        spec_cfg = _replace(spec_cfg, debris_dz_um=float(rng.choice([-1, 1]))
                            * float(rng.uniform(6.0, 20.0)) * dof)
    maps = make_specimen(spec_cfg, shape, optics.sample_pixel_um, rng)
    layer_dz_um = None
    if layered:
        maps = _second_layer(rng, maps, modality, shape, optics.sample_pixel_um)
        layer_dz_um = float(rng.choice([-1, 1])) * _log_uniform(rng, 3.0, 25.0) * dof
        spec_cfg = _replace(spec_cfg, debris_dz_um=layer_dz_um)
    former = ImageFormation(maps, optics, modality, pixel_um=optics.sample_pixel_um,
                            tilt_x_um=spec_cfg.tilt_x_um, debris_dz_um=spec_cfg.debris_dz_um)
    dz = _plane_offsets(rng, n_planes, dof, "debris" if layered else condition)
    if dz_dof is not None:  # planes at given defocus (DOF units), e.g. exact 1-DOF pairs
        dz = np.asarray(dz_dof, np.float64) * dof
        n_planes = dz.size

    # Light: photons at full specimen brightness (fluorescence) or clear background (brightfield).
    if condition == "low_light":
        signal = float(rng.uniform(1.5, 4.0))
        background = float(rng.uniform(0.2, 2.0))
    elif modality == "fluorescence":
        signal = _log_uniform(rng, 8.0, 4000.0)
        background = signal * _log_uniform(rng, 0.005, 1.0)
    else:
        signal = _log_uniform(rng, 80.0, 20000.0)
        background = 0.0
    qe = float(rng.uniform(0.5, 0.9))
    read_noise = float(rng.uniform(0.8, 6.0))
    if condition == "train" and _peak_snr(former.render(0.0), signal, background, qe,
                                          read_noise) < 2.0:
        return None
    bit_depth = int(rng.choice([8, 12, 16], p=[0.25, 0.45, 0.3]))
    full_well = float(rng.choice([10_000.0, 30_000.0, 80_000.0]))
    # Gain chosen so the brightest expected level fills 30–90 % of the ADC range, or, in
    # one stack in five, overflows it (saturated highlights, common with 8-bit cameras).
    peak_e = (signal * 1.5 + background) * qe
    max_adu = (1 << bit_depth) - 1
    offset = float(rng.uniform(0.0, 0.05) * max_adu)
    fill = rng.uniform(1.2, 3.0) if rng.random() < 0.2 else rng.uniform(0.3, 0.9)
    gain = max(peak_e / ((max_adu - offset) * fill), 0.05)
    illum = _illumination(rng, shape) if rng.random() < 0.5 else None
    drift = float(rng.uniform(-0.015, 0.015)) if rng.random() < 0.5 else 0.0
    flicker = float(rng.uniform(0.0, 0.02))
    dust = _sensor_dust(rng, shape) if condition == "train" and rng.random() < 0.15 else None
    jpeg_q = int(rng.integers(70, 96)) if bit_depth == 8 and rng.random() < 0.35 else None

    # Acquisition order: usually bottom to top, sometimes shuffled (bleaching/drift vs z).
    order = rng.permutation(n_planes) if rng.random() < 0.2 else np.arange(n_planes)
    out: list[np.ndarray | None] = [None] * n_planes
    for step_i, i in enumerate(order):
        rel = former.render(float(dz[i]))
        level = signal * math.exp(drift * step_i) * (1.0 + flicker * rng.standard_normal())
        photons = rel * np.float32(level) + np.float32(background)
        if illum is not None:
            photons *= illum
        if dust is not None:
            photons *= dust
        frame = expose(photons, rng, qe=qe, read_noise_e=read_noise, gain_e_per_adu=gain,
                       offset_adu=offset, bit_depth=bit_depth, full_well_e=full_well)
        if jpeg_q is not None:
            ok, buf = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, jpeg_q])
            frame = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
        out[i] = frame
    meta = {
        "condition": condition, "modality": modality, "kind": kind, "na": optics.na,
        "magnification": optics.magnification, "pixel_um": optics.sample_pixel_um,
        "signal_photons": signal, "background_photons": background, "bit_depth": bit_depth,
        "jpeg_quality": jpeg_q, "dust": dust is not None,
        "debris_dz_um": spec_cfg.debris_dz_um if spec_cfg.has_debris else layer_dz_um,
    }
    return SynthStack(f"{condition}_{seed:05d}", np.stack(out), dz.astype(np.float64), dof, meta)


def _peak_snr(rel: np.ndarray, signal: float, background: float, qe: float,
              read_noise_e: float) -> float:
    """Peak specimen contrast over the noise σ, in electrons, of a noise-free relative image."""
    dev = np.abs(rel - np.median(rel))
    contrast_e = float(np.percentile(dev, 99.5)) * signal * qe
    noise_e = math.sqrt(max(float(rel.mean()) * signal + background, 0.0) * qe
                        + read_noise_e**2)
    return contrast_e / max(noise_e, 1e-9)


def _replace(cfg: SpecimenConfig, **changes: Any) -> SpecimenConfig:
    return dataclasses.replace(cfg, **changes)


def _sensor_dust(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """Sharp specks fixed on the sensor window: in focus in every plane (transmission map)."""
    h, w = shape
    t = np.ones(shape, np.float32)
    for _ in range(int(rng.integers(1, 6))):
        cy, cx = int(rng.integers(0, h)), int(rng.integers(0, w))
        cv2.circle(t, (cx, cy), int(rng.integers(1, 4)), float(rng.uniform(0.3, 0.8)), -1)
    return t


def _make_one(args: tuple[int, str, tuple[int, int], int]) -> SynthStack:
    seed, condition, shape, n_planes = args
    return make_stack(seed, condition, shape=shape, n_planes=n_planes)


def make_stacks(seeds: Sequence[int], condition: str = "train", *,
                shape: tuple[int, int] = (256, 256), n_planes: int = 21,
                workers: int = 1) -> Iterator[SynthStack]:
    """Render the stacks for `seeds` (in order), with `workers` processes (1 = in-process)."""
    jobs = [(int(s), condition, shape, n_planes) for s in seeds]
    if workers <= 1:
        yield from map(_make_one, jobs)
        return
    with ProcessPoolExecutor(max_workers=workers) as pool:
        yield from pool.map(_make_one, jobs, chunksize=8)
