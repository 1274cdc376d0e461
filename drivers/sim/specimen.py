"""The specimen: what sits in the focal plane (and what sits where it should not).

A specimen is described by in-focus maps sampled at the sample-plane pixel size:

* `emission`  relative fluorophore density (1.0 = full brightness), for fluorescence;
* `absorption` fraction of transmitted intensity absorbed (0..1), for brightfield;
* `phase_rad`  optical phase delay in radians, for brightfield.

Procedural kinds ("beads", "cells", "fibres") are generated from a seed and are
periodic (objects wrap around the field edges) so that Fourier-domain blurring
creates no seams. Any in-focus image can be given instead (`image=`). Optional
debris (dust) lies in a second plane `debris_dz_um` from the specimen plane.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import scipy.fft
from autofocus_drivers.sim.errors import require

KINDS = ("beads", "cells", "fibres", "image")
_KIND_ALIASES = {"fibers": "fibres", "bead": "beads", "cell": "cells", "fibre": "fibres"}
DEFAULT_DENSITY = {"beads": 0.01, "cells": 0.4, "fibres": 0.1, "image": 1.0}


@dataclass(frozen=True)
class SpecimenConfig:
    """What is under the objective, where its focus is, and how that changes.

    `kind` "beads" | "cells" | "fibres" (procedural, seeded) or "image" (then
    `image`, a 2-D in-focus array, is the specimen; giving `image` implies
    "image"). `density` approximate fraction of the field covered by objects
    (0 = empty field; None = the kind's default). `focus_z_um` stage Z (µm) at
    which the field centre is in focus at time 0 (None = drawn from the seed,
    uniform within ±`random_focus_range_um`). `tilt_x_um`/`tilt_y_um` focus
    change from the left to the right (top to bottom) edge of the field, µm.
    `debris_amount` brightness/opacity of dust relative to the specimen (0 =
    none) lying `debris_dz_um` above the specimen plane. `drift_um_per_s` focus
    drift with hardware time. `bead_diameter_um` bead size. `phase_scale` /
    `absorption_scale` multiply the brightfield phase and absorption maps.
    `seed` overrides the microscope seed for the specimen and its focus only.
    """

    kind: str = "beads"
    image: np.ndarray | None = field(default=None, compare=False, repr=False)
    density: float | None = None
    focus_z_um: float | None = None
    random_focus_range_um: float = 10.0
    tilt_x_um: float = 0.0
    tilt_y_um: float = 0.0
    debris_dz_um: float = 20.0
    debris_amount: float = 0.0
    drift_um_per_s: float = 0.0
    bead_diameter_um: float = 1.0
    phase_scale: float = 1.0
    absorption_scale: float = 1.0
    seed: int | None = None

    def __post_init__(self) -> None:
        kind = _KIND_ALIASES.get(str(self.kind).lower(), str(self.kind).lower())
        if self.image is not None:
            img = np.asarray(self.image)
            require(
                img.ndim == 2 or (img.ndim == 3 and img.shape[2] in (3, 4)),
                f"specimen image must be 2-D (or H×W×3/4 colour), got shape {img.shape}",
            )
            require(min(img.shape[:2]) >= 2, f"specimen image is too small: {img.shape}")
            require(bool(np.all(np.isfinite(img))), "specimen image contains NaN or inf")
            kind = "image"
        require(kind in KINDS, f"specimen kind must be one of {KINDS}, got {self.kind!r}")
        require(kind != "image" or self.image is not None, "kind='image' needs image=<ndarray>")
        object.__setattr__(self, "kind", kind)
        if self.density is not None:
            require(
                math.isfinite(self.density) and 0.0 <= self.density <= 1.0,
                f"density is a fill fraction in [0, 1], got {self.density}",
            )
        for name in ("tilt_x_um", "tilt_y_um", "debris_dz_um", "drift_um_per_s"):
            value = getattr(self, name)
            require(math.isfinite(value), f"{name} must be finite, got {value}")
        if self.focus_z_um is not None:
            require(math.isfinite(self.focus_z_um), f"focus_z_um must be finite: {self.focus_z_um}")
        require(
            math.isfinite(self.random_focus_range_um) and self.random_focus_range_um >= 0,
            f"random_focus_range_um must be ≥ 0, got {self.random_focus_range_um}",
        )
        require(
            math.isfinite(self.debris_amount) and self.debris_amount >= 0,
            f"debris_amount must be ≥ 0, got {self.debris_amount}",
        )
        require(
            math.isfinite(self.bead_diameter_um) and 0 < self.bead_diameter_um <= 20,
            f"bead_diameter_um must lie in (0, 20] µm, got {self.bead_diameter_um}",
        )
        for name in ("phase_scale", "absorption_scale"):
            value = getattr(self, name)
            require(math.isfinite(value) and value >= 0, f"{name} must be ≥ 0, got {value}")

    @property
    def effective_density(self) -> float:
        """The fill fraction in use (`density`, or the kind's default)."""
        return DEFAULT_DENSITY[self.kind] if self.density is None else float(self.density)

    @property
    def has_debris(self) -> bool:
        """True when a debris plane is simulated."""
        return self.debris_amount > 0


@dataclass(frozen=True)
class SpecimenMaps:
    """In-focus maps (float32, H×W) of the specimen plane and, optionally, the debris plane."""

    emission: np.ndarray
    absorption: np.ndarray
    phase_rad: np.ndarray
    debris_emission: np.ndarray | None = None
    debris_absorption: np.ndarray | None = None
    debris_phase_rad: np.ndarray | None = None


def make_specimen(
    config: SpecimenConfig,
    shape: tuple[int, int],
    pixel_um: float,
    rng: np.random.Generator,
) -> SpecimenMaps:
    """Build the in-focus maps of `config` for a field of `shape` (H, W) pixels of `pixel_um` µm.

    Deterministic for a given `rng` state. Procedural kinds are periodic.
    """
    field_ = _Field(shape, pixel_um, rng)
    density = config.effective_density
    if config.kind == "image":
        assert config.image is not None
        emission, absorption, phase = _from_image(config.image, shape)
    elif config.kind == "beads":
        emission, absorption, phase = _beads(field_, density, config.bead_diameter_um)
    elif config.kind == "cells":
        emission, absorption, phase = _cells(field_, density)
    else:
        emission, absorption, phase = _fibres(field_, density)
    absorption = np.clip(absorption * config.absorption_scale, 0.0, 1.0)
    phase = phase * config.phase_scale
    maps = {"emission": emission, "absorption": absorption, "phase_rad": phase}
    if config.has_debris:
        dust = _debris(field_)
        amount = config.debris_amount
        maps["debris_emission"] = amount * dust
        maps["debris_absorption"] = np.clip(0.6 * amount * dust, 0.0, 0.95)
        maps["debris_phase_rad"] = 0.5 * amount * dust
    return SpecimenMaps(**{k: v.astype(np.float32) for k, v in maps.items()})


# --- geometry helpers -------------------------------------------------------------------------


class _Field:
    """The field of view: its pixel grid, pixel size and random source."""

    def __init__(self, shape: tuple[int, int], pixel_um: float, rng: np.random.Generator):
        self.h, self.w = shape
        self.px = pixel_um
        self.rng = rng

    @property
    def area_um2(self) -> float:
        return self.h * self.w * self.px * self.px

    def zeros(self) -> np.ndarray:
        return np.zeros((self.h, self.w), dtype=np.float64)

    def splat(self, y_px: np.ndarray, x_px: np.ndarray, weight: np.ndarray) -> np.ndarray:
        """Bilinear, periodic accumulation of point weights at sub-pixel positions."""
        out = np.zeros(self.h * self.w, dtype=np.float64)
        if len(y_px) == 0:
            return out.reshape(self.h, self.w)
        y0 = np.floor(y_px)
        x0 = np.floor(x_px)
        fy = y_px - y0
        fx = x_px - x0
        y0 = y0.astype(np.int64)
        x0 = x0.astype(np.int64)
        for dy, wy in ((0, 1 - fy), (1, fy)):
            for dx, wx in ((0, 1 - fx), (1, fx)):
                idx = ((y0 + dy) % self.h) * self.w + (x0 + dx) % self.w
                out += np.bincount(idx, weights=weight * wy * wx, minlength=self.h * self.w)
        return out.reshape(self.h, self.w)

    def blur(self, img: np.ndarray, sigma_um: float) -> np.ndarray:
        """Periodic Gaussian blur (σ in µm) in the Fourier domain."""
        sigma_px = sigma_um / self.px
        fy = np.fft.fftfreq(self.h).astype(np.float32)[:, None]
        fx = np.fft.rfftfreq(self.w).astype(np.float32)[None, :]
        kernel = np.exp(np.float32(-2.0 * np.pi**2 * sigma_px**2) * (fx * fx + fy * fy))
        spectrum = scipy.fft.rfft2(img.astype(np.float32))
        return scipy.fft.irfft2(spectrum * kernel, s=img.shape).astype(np.float64)

    def window(self, cy_px: float, cx_px: float, half_px: int):
        """Periodic index window around a centre and the offsets (µm) of its pixels."""
        half_y = min(half_px, (self.h - 1) // 2)
        half_x = min(half_px, (self.w - 1) // 2)
        iy = int(round(cy_px))
        ix = int(round(cx_px))
        ys = np.arange(iy - half_y, iy + half_y + 1)
        xs = np.arange(ix - half_x, ix + half_x + 1)
        dy_um = ((ys - cy_px) * self.px)[:, None]
        dx_um = ((xs - cx_px) * self.px)[None, :]
        if ys[0] >= 0 and xs[0] >= 0 and ys[-1] < self.h and xs[-1] < self.w:
            # Plain slices (views) are much faster than fancy indexing; wrap only at the edges.
            return (slice(ys[0], ys[-1] + 1), slice(xs[0], xs[-1] + 1)), dy_um, dx_um
        return np.ix_(ys % self.h, xs % self.w), dy_um, dx_um

    def uniform_positions(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        return self.rng.uniform(0, self.h, n), self.rng.uniform(0, self.w, n)


def _soft_step(signed_distance_um: np.ndarray, edge_um: float) -> np.ndarray:
    """0 outside, 1 inside, with a smooth edge `edge_um` wide (logistic)."""
    return 0.5 * (1.0 + np.tanh(signed_distance_um / edge_um))


def _ellipse(dy_um, dx_um, a_um: float, b_um: float, theta: float):
    """Normalised elliptical radius ρ (1 on the boundary) of offsets from the centre."""
    c, s = math.cos(theta), math.sin(theta)
    u = dx_um * c + dy_um * s
    v = -dx_um * s + dy_um * c
    return np.sqrt((u / a_um) ** 2 + (v / b_um) ** 2)


# --- procedural specimens ---------------------------------------------------------------------


def _beads(f: _Field, density: float, diameter_um: float):
    """Fluorescent beads: point-like spheres scattered at random, sized by `diameter_um`."""
    footprint_um2 = math.pi * (diameter_um / 2.0) ** 2
    n = int(round(density * f.area_um2 / footprint_um2))
    y, x = f.uniform_positions(n)
    brightness = f.rng.uniform(0.6, 1.0, n)
    # A sphere of diameter d projects to roughly a Gaussian with σ ≈ d/4.
    sigma_um = max(diameter_um / 4.0, 0.3 * f.px)
    beads = f.blur(f.splat(y, x, brightness), sigma_um)
    if n:
        beads /= beads.max()
    # Polystyrene in water: mostly a phase object, slightly absorbing/scattering.
    return beads, 0.1 * beads, 1.0 * beads


def _cells(f: _Field, density: float):
    """Adherent cells: soft ellipses with a nucleus, textured cytoplasm and granules."""
    mean_area_um2 = math.pi * 7.5 * 7.5 * 0.7
    n = int(round(density * f.area_um2 / mean_area_um2))
    emission, absorption, phase = f.zeros(), f.zeros(), f.zeros()
    # Low-frequency texture modulating the cytoplasm (organelles, thickness variations).
    texture = f.blur(f.rng.standard_normal((f.h, f.w)), 1.0)
    texture = 1.0 + 0.35 * texture / (texture.std() + 1e-12)
    granule_y, granule_x, granule_w = [], [], []
    for cy, cx in zip(*f.uniform_positions(n), strict=True):
        a = f.rng.uniform(5.0, 10.0)
        b = a * f.rng.uniform(0.5, 0.9)
        theta = f.rng.uniform(0, math.pi)
        idx, dy, dx = f.window(cy, cx, int(math.ceil((a + 2.0) / f.px)))
        rho = _ellipse(dy, dx, a, b, theta)
        body = _soft_step((1.0 - rho) * b, 0.3)
        dome = np.sqrt(np.clip(1.0 - rho * rho, 0.0, 1.0))
        ny, nx = f.rng.uniform(-0.25, 0.25, 2) * b
        nrho = _ellipse(dy - ny, dx - nx, 0.4 * a, 0.45 * b, theta)
        nucleus = _soft_step((1.0 - nrho) * 0.4 * b, 0.25)
        emission[idx] += 0.3 * body * texture[idx] + 0.5 * nucleus
        absorption[idx] += 0.03 * body + 0.05 * nucleus
        phase[idx] += 0.8 * dome + 0.3 * nucleus
        # Granules (vesicles, mitochondria): the fine detail that makes focus measurable.
        m = int(round(a * b * f.rng.uniform(0.3, 0.6)))
        r = np.sqrt(f.rng.uniform(0, 0.9, m))
        phi = f.rng.uniform(0, 2 * math.pi, m)
        u, v = r * np.cos(phi) * a, r * np.sin(phi) * b
        c, s = math.cos(theta), math.sin(theta)
        granule_x.append(cx + (u * c - v * s) / f.px)
        granule_y.append(cy + (u * s + v * c) / f.px)
        granule_w.append(f.rng.uniform(0.5, 1.0, m))
    if n:
        gy, gx, gw = (np.concatenate(a) for a in (granule_y, granule_x, granule_w))
        sigma_um = max(0.15, 0.4 * f.px)
        granules = f.blur(f.splat(gy, gx, gw), sigma_um) * (2 * math.pi * (sigma_um / f.px) ** 2)
        emission += 0.5 * granules
        absorption += 0.1 * granules
        phase += 0.4 * granules
    return emission, absorption, phase


def _fibres(f: _Field, density: float):
    """Cytoskeletal fibres: semi-flexible random curves (persistence length ~15 µm)."""
    mean_length_um = 37.5
    n = int(round(density * f.area_um2 / (mean_length_um * 1.0)))
    ys, xs, ws = [], [], []
    step_um = 0.5 * f.px
    for y0, x0 in zip(*f.uniform_positions(n), strict=True):
        length_um = f.rng.uniform(15.0, 60.0)
        m = max(int(length_um / step_um), 2)
        theta = f.rng.uniform(0, 2 * math.pi) + np.cumsum(
            f.rng.normal(0.0, math.sqrt(step_um / 15.0), m)
        )
        ys.append(y0 + np.cumsum(np.sin(theta)) * step_um / f.px)
        xs.append(x0 + np.cumsum(np.cos(theta)) * step_um / f.px)
        ws.append(np.full(m, f.rng.uniform(0.5, 1.0) * step_um / f.px))
    if not n:
        z = f.zeros()
        return z, z, z
    sigma_px = max(0.1 / f.px, 0.6)
    fibres = f.blur(f.splat(np.concatenate(ys), np.concatenate(xs), np.concatenate(ws)),
                    sigma_px * f.px)
    # A single fibre of unit line density blurred by σ peaks at 1/(√(2π)·σ): make that ≈ 1.
    fibres *= math.sqrt(2 * math.pi) * sigma_px
    return fibres, 0.15 * fibres, 0.4 * fibres


def _debris(f: _Field) -> np.ndarray:
    """Dust particles: irregular opaque specks 1–5 µm across, about one per 250 µm²."""
    n = max(2, int(round(f.area_um2 / 250.0)))
    dust = f.zeros()
    for cy, cx in zip(*f.uniform_positions(n), strict=True):
        radius = f.rng.uniform(0.7, 2.5)
        idx, dy, dx = f.window(cy, cx, int(math.ceil(2.5 * radius / f.px)) + 2)
        blob = np.zeros(dy.shape[0:1] + dx.shape[1:2])
        for _ in range(3):  # a few overlapping lobes make the speck irregular
            oy, ox = f.rng.normal(0.0, 0.4 * radius, 2)
            r = np.sqrt((dy - oy) ** 2 + (dx - ox) ** 2)
            blob = np.maximum(blob, _soft_step(radius * f.rng.uniform(0.5, 1.0) - r, 0.1))
        dust[idx] = np.maximum(dust[idx], blob * f.rng.uniform(0.7, 1.0))
    return dust


def _from_image(image: np.ndarray, shape: tuple[int, int]):
    """Maps from a given in-focus image, centre-cropped or mirror-padded to `shape`.

    Fluorescence: the robustly normalised image (0.5th → 0, 99.9th percentile → 1)
    is the emission. Brightfield: the image is read as transmission (bright
    background), so dark features absorb; the phase follows the absorption.
    """
    img = np.asarray(image, dtype=np.float64)
    if img.ndim == 3:
        img = img[..., :3].mean(axis=2)
    img = _fit(img, shape)
    lo, hi = np.percentile(img, [0.5, 99.9])
    emission = np.clip((img - lo) / (hi - lo), 0.0, None) if hi > lo else np.zeros(shape)
    bright = np.percentile(img, 99.5)
    transmission = np.clip(img / bright, 0.0, 1.0) if bright > 0 else np.ones(shape)
    absorption = 1.0 - transmission
    return emission, absorption, 1.0 * absorption


def _fit(img: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Centre-crop, or mirror-pad, an image to `shape`."""
    out = img
    for axis, target in enumerate(shape):
        size = out.shape[axis]
        if size > target:
            start = (size - target) // 2
            out = np.take(out, np.arange(start, start + target), axis=axis)
        elif size < target:
            before = (target - size) // 2
            pad = [(0, 0), (0, 0)]
            pad[axis] = (before, target - size - before)
            out = np.pad(out, pad, mode="symmetric")
    return out
