"""Image formation: the specimen seen through the objective at some defocus.

The specimen's spectra are computed once; each frame only multiplies them by
the defocus transfer functions (`autofocus_drivers.sim.optics`) and inverts one FFT per
focus node. Output is relative intensity: for fluorescence 0 = dark,
1 = full specimen brightness; for brightfield 1 = the clear background.

A tilted specimen has a focus that varies linearly across the field. The
field is rendered at a handful of defocus values ("focus nodes", spaced at
most half a depth of field apart unless capped) and each pixel blends the two
nodes nearest to its own defocus, linearly.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import scipy.fft
from autofocus_drivers.sim.optics import (
    Optics,
    RadialBins,
    brightfield_transfer,
    fluorescence_transfer,
)
from autofocus_drivers.sim.specimen import SpecimenMaps

MODALITIES = ("fluorescence", "brightfield")


@dataclass
class _Layer:
    """One plane of the specimen: its spectra and the Z offset of its focus (µm)."""

    dz_offset_um: float
    spectra: tuple[np.ndarray, ...]


class ImageFormation:
    """Renders the optical image (relative intensity, float32 H×W) at a given defocus.

    `maps` in-focus specimen (and debris) maps; `optics` the objective;
    `modality` "fluorescence" or "brightfield"; `pixel_um` sample-plane pixel
    size; `tilt_x_um`/`tilt_y_um` focus change across the field (left→right,
    top→bottom); `debris_dz_um` height of the debris plane above the specimen;
    `max_focus_nodes` cap on the number of defocus values rendered per frame.
    """

    def __init__(
        self,
        maps: SpecimenMaps,
        optics: Optics,
        modality: str,
        *,
        pixel_um: float,
        tilt_x_um: float = 0.0,
        tilt_y_um: float = 0.0,
        debris_dz_um: float = 0.0,
        max_focus_nodes: int = 8,
    ) -> None:
        if modality not in MODALITIES:
            raise ValueError(f"modality must be one of {MODALITIES}, got {modality!r}")
        self.optics = optics
        self.modality = modality
        self.shape: tuple[int, int] = tuple(maps.emission.shape)  # type: ignore[assignment]
        self._bins = RadialBins(self.shape, pixel_um)
        self._layers = self._make_layers(maps, debris_dz_um)
        self._transfer: Callable[[float], tuple[np.ndarray, ...]] = (
            self._fluorescence_transfer if modality == "fluorescence" else self._bright_transfer
        )
        self._setup_tilt(tilt_x_um, tilt_y_um, max_focus_nodes)

    def _make_layers(self, maps: SpecimenMaps, debris_dz_um: float) -> list[_Layer]:
        def spectrum(img: np.ndarray) -> np.ndarray:
            return scipy.fft.rfft2(img.astype(np.float32, copy=False))

        fluorescence = self.modality == "fluorescence"
        layers = []
        planes = [(0.0, maps.emission, maps.absorption, maps.phase_rad)]
        if maps.debris_emission is not None:
            planes.append(
                (debris_dz_um, maps.debris_emission, maps.debris_absorption, maps.debris_phase_rad)
            )
        for dz_offset, emission, absorption, phase in planes:
            spectra = (spectrum(emission),) if fluorescence else (
                spectrum(absorption), spectrum(phase)
            )
            layers.append(_Layer(float(dz_offset), spectra))
        return layers

    def _setup_tilt(self, tilt_x_um: float, tilt_y_um: float, max_nodes: int) -> None:
        h, w = self.shape
        span_um = abs(tilt_x_um) + abs(tilt_y_um)
        if span_um == 0:
            self.node_offsets_um = np.zeros(1)
            self._s_um: np.ndarray | None = None
            return
        # Nodes at most DOF/2 apart so the linear blend between them stays faithful.
        wanted = math.ceil(span_um / (0.5 * self.optics.depth_of_field_um)) + 1
        n = int(min(max(wanted, 2), max(max_nodes, 2)))
        self.node_offsets_um = np.linspace(-span_um / 2, span_um / 2, n)
        self._node_spacing_um = span_um / (n - 1)
        # Focus offset of every pixel from the field centre (broadcast shape when 1-D).
        u = ((np.arange(w) + 0.5) / w - 0.5).astype(np.float32)
        v = ((np.arange(h) + 0.5) / h - 0.5).astype(np.float32)
        s = np.zeros((1, 1), dtype=np.float32)
        if tilt_x_um:
            s = s + np.float32(tilt_x_um) * u[None, :]
        if tilt_y_um:
            s = s + np.float32(tilt_y_um) * v[:, None]
        self._s_um = s

    # -- transfer functions, sampled on the radial bins and gathered onto the FFT grid --

    def _fluorescence_transfer(self, dz_um: float) -> tuple[np.ndarray, ...]:
        return (self._bins.gather(fluorescence_transfer(self._bins.f_per_um, dz_um, self.optics)),)

    def _bright_transfer(self, dz_um: float) -> tuple[np.ndarray, ...]:
        absorption_tf, phase_tf = brightfield_transfer(self._bins.f_per_um, dz_um, self.optics)
        return self._bins.gather(absorption_tf), self._bins.gather(phase_tf)

    def _render_uniform(self, dz_um: float) -> np.ndarray:
        """The image when every pixel is `dz_um` from focus (no tilt)."""
        total = None
        for layer in self._layers:
            for spec, tf in zip(layer.spectra, self._transfer(dz_um - layer.dz_offset_um),
                                strict=True):
                term = spec * tf
                total = term if total is None else total + term
        assert total is not None
        img = scipy.fft.irfft2(total, s=self.shape)
        if self.modality == "brightfield":
            img += np.float32(1.0)  # the unscattered background (the δ of the spectrum)
        return img

    def render(self, dz_um: float) -> np.ndarray:
        """Relative intensity (float32, H×W, ≥ 0) with the field centre `dz_um` µm from focus.

        `dz_um` = stage position − focus position (positive: stage above focus).
        """
        if self._s_um is None:
            img = self._render_uniform(dz_um)
        else:
            img = np.zeros(self.shape, dtype=np.float32)
            spacing = np.float32(self._node_spacing_um)
            for offset in self.node_offsets_um:
                # A pixel whose focus is `offset` higher is `offset` closer to the stage.
                weight = np.clip(1.0 - np.abs(self._s_um - np.float32(offset)) / spacing, 0, 1)
                img += weight * self._render_uniform(dz_um - float(offset))
        np.maximum(img, 0.0, out=img)  # ringing of the band-limited PSF can dip below zero
        return img
