"""The objective: magnification, depth of field and the defocus transfer functions.

Defocus blur is modelled in the Fourier domain as the product of two optical
transfer functions (OTFs), both radially symmetric functions of the spatial
frequency f (cycles/µm in the sample plane):

* geometric defocus: a point `dz` µm from focus spreads into a uniform disc of
  radius r = |dz|·tan(asin(NA/n)) (the marginal ray angle in the immersion
  medium). The Fourier transform of a uniform disc is 2·J1(x)/x, x = 2π·r·f;
* diffraction: the in-focus Airy pattern, approximated by a Gaussian of
  σ = 0.21·λ/NA (Zhang et al., Appl. Opt. 2007), whose OTF is exp(−2π²σ²f²).

Near focus diffraction dominates, far from focus the geometric disc does, so
the blur grows with |dz| at the rate the objective's NA dictates instead of an
arbitrary "blur per µm" constant.

Brightfield (transmitted light) images a weak object, i.e. an absorption map a
and a phase map φ. Free-space (Fresnel) propagation over dz gives, to first
order, the intensity spectrum  δ − Â·cos χ + 2·Φ̂·sin χ  with χ = π·(λ/n)·dz·f².
For small dz the phase term is −(λ·dz/2πn)·∇²φ (the transport-of-intensity
equation): invisible at focus, with opposite contrast either side of it. The
partially coherent illumination (condenser NA) averages the pattern over a disc
of radius |dz|·tan(asin(NA_condenser/n)), which damps it far from focus.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import scipy.fft
from autofocus_drivers.sim.errors import require
from scipy.special import j1

# Gaussian approximation of the widefield Airy PSF: σ ≈ 0.21·λ/NA.
AIRY_GAUSS_SIGMA_FACTOR = 0.21


@dataclass(frozen=True)
class Optics:
    """A microscope objective and the camera pixel it images onto.

    `na` numerical aperture (must be below `immersion_index`), `wavelength_nm`
    emission (fluorescence) or illumination (brightfield) wavelength in nm,
    `immersion_index` refractive index of the immersion medium (1.0 air, 1.33
    water, 1.515 oil), `magnification` total magnification onto the camera,
    `camera_pixel_um` physical camera pixel pitch in µm, `condenser_na` the
    brightfield illumination NA (None → 0.6·NA, a typical condenser setting).
    Invalid values raise `SimConfigError`.
    """

    na: float = 0.75
    wavelength_nm: float = 520.0
    immersion_index: float = 1.0
    magnification: float = 20.0
    camera_pixel_um: float = 6.5
    condenser_na: float | None = None

    def __post_init__(self) -> None:
        require(
            math.isfinite(self.immersion_index) and self.immersion_index >= 1.0,
            f"immersion_index must be a refractive index ≥ 1, got {self.immersion_index}",
        )
        require(
            math.isfinite(self.na) and 0 < self.na < self.immersion_index,
            f"na must lie in (0, immersion_index={self.immersion_index}), got {self.na}",
        )
        require(
            math.isfinite(self.wavelength_nm) and 200 <= self.wavelength_nm <= 2000,
            f"wavelength_nm must be between 200 and 2000 nm, got {self.wavelength_nm}",
        )
        require(
            math.isfinite(self.magnification) and self.magnification > 0,
            f"magnification must be > 0, got {self.magnification}",
        )
        require(
            math.isfinite(self.camera_pixel_um) and self.camera_pixel_um > 0,
            f"camera_pixel_um must be > 0 µm, got {self.camera_pixel_um}",
        )
        if self.condenser_na is not None:
            require(
                math.isfinite(self.condenser_na) and 0 < self.condenser_na < self.immersion_index,
                f"condenser_na must lie in (0, {self.immersion_index}), got {self.condenser_na}",
            )

    @property
    def wavelength_um(self) -> float:
        """Wavelength in µm."""
        return self.wavelength_nm / 1000.0

    @property
    def sample_pixel_um(self) -> float:
        """Size of one camera pixel projected into the sample plane, in µm."""
        return self.camera_pixel_um / self.magnification

    @property
    def depth_of_field_um(self) -> float:
        """Depth of field in µm: λ·n/NA² (wave optics) + n·e/(M·NA) (pixel-limited)."""
        n, na = self.immersion_index, self.na
        return self.wavelength_um * n / na**2 + n * self.camera_pixel_um / (
            self.magnification * na
        )

    @property
    def diffraction_sigma_um(self) -> float:
        """σ of the Gaussian approximating the in-focus Airy PSF, in µm (0.21·λ/NA)."""
        return AIRY_GAUSS_SIGMA_FACTOR * self.wavelength_um / self.na

    @property
    def effective_condenser_na(self) -> float:
        """Brightfield illumination NA actually used (`condenser_na` or 0.6·NA)."""
        return self.condenser_na if self.condenser_na is not None else 0.6 * self.na

    def blur_radius_um(self, dz_um: float) -> float:
        """Geometric defocus blur-disc radius in µm at `dz_um` from focus: |dz|·tan(asin(NA/n))."""
        return abs(dz_um) * _tan_asin(self.na / self.immersion_index)

    def condenser_blur_radius_um(self, dz_um: float) -> float:
        """Brightfield blur-disc radius in µm from the spread of illumination angles."""
        return abs(dz_um) * _tan_asin(self.effective_condenser_na / self.immersion_index)


def _tan_asin(s: float) -> float:
    return s / math.sqrt(1.0 - s * s)


def disc_otf(f_per_um: np.ndarray, radius_um: float) -> np.ndarray:
    """OTF of a uniform disc of `radius_um` at spatial frequencies `f_per_um` (cycles/µm).

    2·J1(x)/x with x = 2π·r·f; equals 1 at f = 0 (the disc conserves flux) and
    has negative lobes (contrast reversal of fine detail far from focus).
    """
    x = (2.0 * np.pi * radius_um) * np.asarray(f_per_um, dtype=np.float64)
    out = np.ones_like(x)
    nz = x > 1e-9
    out[nz] = 2.0 * j1(x[nz]) / x[nz]
    return out


def diffraction_otf(f_per_um: np.ndarray, optics: Optics) -> np.ndarray:
    """Gaussian approximation of the in-focus widefield OTF at `f_per_um` (cycles/µm)."""
    sigma_um = optics.diffraction_sigma_um
    f = np.asarray(f_per_um, dtype=np.float64)
    return np.exp(-2.0 * np.pi**2 * sigma_um**2 * f * f)


def fluorescence_transfer(f_per_um: np.ndarray, dz_um: float, optics: Optics) -> np.ndarray:
    """Incoherent (fluorescence) defocus OTF at `dz_um` µm from focus, f in cycles/µm."""
    return disc_otf(f_per_um, optics.blur_radius_um(dz_um)) * diffraction_otf(f_per_um, optics)


def brightfield_transfer(
    f_per_um: np.ndarray, dz_um: float, optics: Optics
) -> tuple[np.ndarray, np.ndarray]:
    """Weak-object brightfield transfer functions at `dz_um`: (absorption, phase).

    The image spectrum is  δ + absorption_tf·Â + phase_tf·Φ̂  for an absorption
    map a (fraction of intensity absorbed) and a phase map φ (radians):
    absorption_tf = −cos χ·E, phase_tf = 2·sin χ·E, χ = π·(λ/n)·dz·f², where E
    is the partial-coherence envelope (condenser disc × diffraction Gaussian).
    """
    f = np.asarray(f_per_um, dtype=np.float64)
    chi = np.pi * (optics.wavelength_um / optics.immersion_index) * dz_um * f * f
    envelope = disc_otf(f, optics.condenser_blur_radius_um(dz_um)) * diffraction_otf(f, optics)
    return -np.cos(chi) * envelope, 2.0 * np.sin(chi) * envelope


def frequency_grid_per_um(shape: tuple[int, int], pixel_size_um: float) -> np.ndarray:
    """Radial spatial frequency |f| (cycles/µm) on the `rfft2` grid of an image of `shape`."""
    h, w = shape
    fy = np.fft.fftfreq(h)[:, None]
    fx = np.fft.rfftfreq(w)[None, :]
    return np.sqrt(fx * fx + fy * fy) / pixel_size_um


def defocus_otf(
    shape: tuple[int, int],
    dz_um: float,
    optics: Optics,
    *,
    pixel_size_um: float | None = None,
) -> np.ndarray:
    """Fluorescence defocus OTF on the `numpy.fft.rfft2` grid of an image of `shape` (H, W).

    `pixel_size_um` is the sample-plane pixel size (default `optics.sample_pixel_um`).
    Returns float64 (H, W//2+1); multiply an image's rfft2 by it to defocus the image.
    """
    px = optics.sample_pixel_um if pixel_size_um is None else float(pixel_size_um)
    require(px > 0 and math.isfinite(px), f"pixel_size_um must be > 0, got {pixel_size_um}")
    return fluorescence_transfer(frequency_grid_per_um(shape, px), float(dz_um), optics)


def defocus_image(
    in_focus: np.ndarray,
    dz_um: float,
    optics: Optics,
    *,
    pixel_size_um: float | None = None,
) -> np.ndarray:
    """Blur an in-focus 2-D image to how it looks `dz_um` µm out of focus (fluorescence model).

    The image is taken as an incoherent intensity map sampled at `pixel_size_um`
    (default `optics.sample_pixel_um`). It is reflect-padded by the blur extent
    before the Fourier-domain convolution, so no content wraps around the edges.
    Flux is conserved (the mean is unchanged). Returns float64 of the input's
    shape; no noise is added. Raises `ValueError` for non-2-D input or a
    non-finite `dz_um`.
    """
    img = np.asarray(in_focus, dtype=np.float64)
    if img.ndim != 2:
        raise ValueError(f"in_focus must be a 2-D image, got shape {img.shape}")
    if not math.isfinite(dz_um):
        raise ValueError(f"dz_um must be finite, got {dz_um}")
    px = optics.sample_pixel_um if pixel_size_um is None else float(pixel_size_um)
    extent_um = optics.blur_radius_um(dz_um) + 4.0 * optics.diffraction_sigma_um
    h, w = img.shape
    # Reflect padding needs pad < size; very small images are padded as far as they allow.
    pad_y = min(int(math.ceil(extent_um / px)) + 2, h - 1)
    pad_x = min(int(math.ceil(extent_um / px)) + 2, w - 1)
    padded = np.pad(img, ((pad_y, pad_y), (pad_x, pad_x)), mode="reflect")
    otf = defocus_otf(padded.shape, dz_um, optics, pixel_size_um=px)
    blurred = scipy.fft.irfft2(scipy.fft.rfft2(padded) * otf, s=padded.shape)
    return blurred[pad_y : pad_y + h, pad_x : pad_x + w]


class RadialBins:
    """Fast evaluation of radially symmetric transfer functions on an `rfft2` grid.

    Every grid frequency is mapped once to a fine radial bin (1/8 of the grid's
    frequency spacing); a transfer function is then evaluated on the few
    thousand bin centres and gathered onto the grid. That replaces a Bessel
    function evaluation per pixel by one `np.take` per frame.
    """

    def __init__(self, shape: tuple[int, int], pixel_size_um: float, oversample: int = 8):
        h, w = shape
        fy = np.fft.fftfreq(h).astype(np.float32)[:, None]
        fx = np.fft.rfftfreq(w).astype(np.float32)[None, :]
        f_px = np.sqrt(fx * fx + fy * fy)  # cycles/pixel
        bin_px = 1.0 / (oversample * max(h, w))
        self.index = np.rint(f_px / bin_px).astype(np.int32)
        n_bins = int(self.index.max()) + 1
        self.f_per_um = np.arange(n_bins, dtype=np.float64) * bin_px / pixel_size_um

    def gather(self, values_1d: np.ndarray) -> np.ndarray:
        """Spread a transfer function sampled at `self.f_per_um` onto the 2-D grid (float32)."""
        return np.take(values_1d.astype(np.float32), self.index)
