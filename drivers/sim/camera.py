"""The camera: photons in, digital numbers out.

The sensor chain, each step with its unit:

1. exposure   photon flux (photons/px/ms) × exposure (ms)     → photons/px
2. detection  photons × quantum efficiency                    → mean photo-electrons (e−)
3. shot noise Poisson(mean e−)                                → e−
4. full well  clip to the pixel's charge capacity             → e−
5. read noise + Normal(0, read_noise_e)                       → e−
6. ADC        e− / gain (e−/ADU) + offset (ADU), rounded,
              clipped to [0, 2^bit_depth − 1]                 → ADU (uint8 ≤ 8 bit, else uint16)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from autofocus_drivers.sim.errors import require

# Brightfield lamps are bright: the clear background fills about half the ADC range at 10 ms.
DEFAULT_PHOTONS_PER_PX_MS = {"fluorescence": 100.0, "brightfield": 600.0}
NOISE_MODELS = ("poisson", "gaussian", "none")


@dataclass(frozen=True)
class CameraConfig:
    """Sensor size, exposure, light level and noise of the simulated camera.

    `width_px`/`height_px` full-sensor frame size (1..4096). `exposure_ms`
    initial exposure. `photons_per_px_ms` photon flux per pixel per ms at full
    specimen brightness (fluorescence: emission 1.0; brightfield: the clear
    background); None = the modality's default (`DEFAULT_PHOTONS_PER_PX_MS`).
    `background_photons_per_px_ms` stray light/autofluorescence.
    `quantum_efficiency` (0, 1]. `read_noise_e` Gaussian read noise, e− rms.
    `gain_e_per_adu` electrons per digital count. `offset_adu` bias level.
    `bit_depth` ADC bits (1..16; ≤ 8 gives uint8 frames, else uint16).
    `full_well_e` pixel charge capacity. `noise_model` "poisson" (exact:
    Poisson shot noise, full well, Gaussian read noise), "gaussian" (one
    Gaussian draw with the same mean and variance, then clipped at the full well:
    several times faster, for benchmarks; differs from Poisson only in shape at
    a few electrons) or "none" (noise-free reference frames). `bleach_per_ms` fluorescence
    photobleaching rate: signal × exp(−k·cumulative exposure in ms).
    `readout_ms` extra hardware time per frame after the exposure;
    `readout_overlaps` True when, while streaming, a frame is read out during
    the next exposure; `max_fps` the frame-rate limit while streaming (None:
    only exposure and readout limit it).
    """

    width_px: int = 256
    height_px: int = 256
    exposure_ms: float = 10.0
    photons_per_px_ms: float | None = None
    background_photons_per_px_ms: float = 1.0
    quantum_efficiency: float = 0.7
    read_noise_e: float = 1.6
    gain_e_per_adu: float = 2.0
    offset_adu: float = 100.0
    bit_depth: int = 12
    full_well_e: float = 10_000.0
    noise_model: str = "poisson"
    bleach_per_ms: float = 1e-5
    readout_ms: float = 0.0
    readout_overlaps: bool = False
    max_fps: float | None = None

    def __post_init__(self) -> None:
        for name in ("width_px", "height_px"):
            value = getattr(self, name)
            require(
                isinstance(value, int | np.integer) and 1 <= value <= 4096,
                f"{name} must be an integer in [1, 4096], got {value!r}",
            )
        require(
            isinstance(self.bit_depth, int | np.integer) and 1 <= self.bit_depth <= 16,
            f"bit_depth must be an integer in [1, 16], got {self.bit_depth!r}",
        )
        _positive(self, "exposure_ms", "gain_e_per_adu", "full_well_e")
        if self.photons_per_px_ms is not None:
            _non_negative(self, "photons_per_px_ms")
        _non_negative(
            self,
            "background_photons_per_px_ms",
            "read_noise_e",
            "offset_adu",
            "bleach_per_ms",
            "readout_ms",
        )
        require(
            self.max_fps is None or (math.isfinite(self.max_fps) and self.max_fps > 0),
            f"max_fps must be None or > 0, got {self.max_fps!r}",
        )
        require(
            self.noise_model in NOISE_MODELS,
            f"noise_model must be one of {NOISE_MODELS}, got {self.noise_model!r}",
        )
        require(
            0 < self.quantum_efficiency <= 1,
            f"quantum_efficiency must lie in (0, 1], got {self.quantum_efficiency}",
        )

    def signal_photons_per_px_ms(self, modality: str) -> float:
        """Photon flux at full brightness for `modality` (configured or the default)."""
        if self.photons_per_px_ms is not None:
            return float(self.photons_per_px_ms)
        return DEFAULT_PHOTONS_PER_PX_MS[modality]

    def frame_interval_s(self, exposure_ms: float) -> float:
        """Seconds between streamed frames at `exposure_ms`: exposure plus readout (or
        the longer of the two when the readout overlaps the next exposure), no faster
        than `max_fps`."""
        ms = (max(exposure_ms, self.readout_ms) if self.readout_overlaps
              else exposure_ms + self.readout_ms)
        interval_s = ms / 1000.0
        if self.max_fps is not None:
            interval_s = max(interval_s, 1.0 / self.max_fps)
        return interval_s

    @property
    def max_adu(self) -> int:
        """Largest digital value the ADC produces: 2^bit_depth − 1."""
        return (1 << int(self.bit_depth)) - 1

    @property
    def dtype(self) -> np.dtype:
        """Frame dtype: uint8 up to 8 bits, uint16 above."""
        return np.dtype(np.uint8 if self.bit_depth <= 8 else np.uint16)


def _positive(cfg: object, *names: str) -> None:
    for name in names:
        value = getattr(cfg, name)
        require(math.isfinite(value) and value > 0, f"{name} must be > 0, got {value}")


def _non_negative(cfg: object, *names: str) -> None:
    for name in names:
        value = getattr(cfg, name)
        require(math.isfinite(value) and value >= 0, f"{name} must be ≥ 0, got {value}")


class Sensor:
    """The detection chain of `CameraConfig`: turns a photon map into a digitised frame."""

    def __init__(self, config: CameraConfig, rng: np.random.Generator):
        self.config = config
        self._rng = rng

    def read_out(self, photons: np.ndarray) -> np.ndarray:
        """Digitise an expected-photon map (photons/px for this exposure) into a frame (ADU)."""
        cfg = self.config
        # Detection: only a fraction QE of the photons free an electron.
        electrons = np.maximum(photons, 0.0, dtype=np.float32) * np.float32(cfg.quantum_efficiency)
        if cfg.noise_model == "poisson":
            # Shot noise: photo-electron counts are Poisson distributed.
            electrons = self._rng.poisson(electrons).astype(np.float32)
            # Full well: charge beyond the pixel's capacity is lost.
            np.minimum(electrons, np.float32(cfg.full_well_e), out=electrons)
            # Read noise: the amplifier adds Gaussian noise in electrons.
            if cfg.read_noise_e > 0:
                noise = self._rng.standard_normal(electrons.shape, dtype=np.float32)
                electrons += noise * np.float32(cfg.read_noise_e)
        elif cfg.noise_model == "gaussian":
            # Shot + read noise as one Gaussian of variance (mean e− + read²), then the full
            # well (so saturated pixels sit exactly at it, without read noise).
            sigma = np.sqrt(electrons + np.float32(cfg.read_noise_e**2))
            electrons += sigma * self._rng.standard_normal(electrons.shape, dtype=np.float32)
            np.minimum(electrons, np.float32(cfg.full_well_e), out=electrons)
        else:
            np.minimum(electrons, np.float32(cfg.full_well_e), out=electrons)
        return self._digitise(electrons)

    def _digitise(self, electrons: np.ndarray) -> np.ndarray:
        """ADC: electrons → ADU with gain and offset, rounded and clipped to the ADC range."""
        cfg = self.config
        adu = electrons * np.float32(1.0 / cfg.gain_e_per_adu) + np.float32(cfg.offset_adu)
        np.rint(adu, out=adu)
        np.clip(adu, 0, cfg.max_adu, out=adu)
        return adu.astype(cfg.dtype)

    def blank_frame(self, shape: tuple[int, int]) -> np.ndarray:
        """A frame with no light and no noise: every pixel at the bias offset."""
        return np.full(shape, min(round(self.config.offset_adu), self.config.max_adu),
                       dtype=self.config.dtype)

    def garbage_frame(self, shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
        """A corrupted transfer: uniform random values over the full ADC range."""
        return rng.integers(0, self.config.max_adu, size=shape, endpoint=True).astype(
            self.config.dtype
        )
