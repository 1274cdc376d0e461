"""`SimConfig`: everything that defines a simulated microscope, with a one-call preset."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np
from autofocus_drivers.sim.camera import CameraConfig
from autofocus_drivers.sim.errors import require
from autofocus_drivers.sim.faults import FaultConfig
from autofocus_drivers.sim.optics import Optics
from autofocus_drivers.sim.render import MODALITIES
from autofocus_drivers.sim.specimen import SpecimenConfig
from autofocus_drivers.sim.stage import StageConfig
from autofocus_drivers.sim.xy import SampleSurface, XYStageConfig


@dataclass(frozen=True)
class SimConfig:
    """The simulated microscope: imaging `modality`, objective, specimen, camera, stage, faults,
    and the XY stage (`xy`) moving across a sample whose height varies (`surface`).

    `modality` "fluorescence" (dark background, emitting specimen) or
    "brightfield" (transmitted light, bright background). `real_time` True
    uses a real clock that actually sleeps (demos); False (default) a virtual
    clock. `max_focus_nodes` caps the defocus values rendered per frame for a
    tilted specimen. Every part is a frozen dataclass validated on
    construction (`SimConfigError`); derive variants with `dataclasses.replace`.
    """

    modality: str = "fluorescence"
    optics: Optics = field(default_factory=Optics)
    specimen: SpecimenConfig = field(default_factory=SpecimenConfig)
    camera: CameraConfig = field(default_factory=CameraConfig)
    stage: StageConfig = field(default_factory=StageConfig)
    faults: FaultConfig = field(default_factory=FaultConfig)
    xy: XYStageConfig = field(default_factory=XYStageConfig)
    surface: SampleSurface = field(default_factory=SampleSurface)
    real_time: bool = False
    max_focus_nodes: int = 8

    def __post_init__(self) -> None:
        modality = str(self.modality).lower()
        require(modality in MODALITIES, f"modality must be one of {MODALITIES}, got {modality!r}")
        object.__setattr__(self, "modality", modality)
        for name, kind in (
            ("optics", Optics),
            ("specimen", SpecimenConfig),
            ("camera", CameraConfig),
            ("stage", StageConfig),
            ("faults", FaultConfig),
            ("xy", XYStageConfig),
            ("surface", SampleSurface),
        ):
            value = getattr(self, name)
            require(isinstance(value, kind), f"{name} must be a {kind.__name__}, got {value!r}")
        require(
            isinstance(self.max_focus_nodes, int) and 2 <= self.max_focus_nodes <= 64,
            f"max_focus_nodes must be an integer in [2, 64], got {self.max_focus_nodes!r}",
        )

    @classmethod
    def preset(
        cls,
        specimen: str | np.ndarray = "beads",
        modality: str = "fluorescence",
        *,
        photons_per_px_ms: float | None = None,
        read_noise_e: float | None = None,
        exposure_ms: float | None = None,
        focus_z_um: float | None = None,
        density: float | None = None,
        debris: bool = False,
        debris_dz_um: float | None = None,
        debris_amount: float = 0.5,
        tilt_um: float = 0.0,
        tilt_y_um: float = 0.0,
        drift_um_per_s: float = 0.0,
        backlash_um: float | None = None,
        width_px: int = 256,
        height_px: int = 256,
        bit_depth: int = 12,
        noise_model: str | None = None,
        surface: SampleSurface | None = None,
        real_time: bool = False,
        magnification: float | None = None,
        na: float | None = None,
        immersion_index: float | None = None,
        hardware_profile: str = "default",
    ) -> SimConfig:
        """A config from the common command-line knobs; None keeps the part's default.

        `specimen` a kind name or an in-focus 2-D image. `debris` True (or any
        `debris_dz_um`) adds dust `debris_dz_um` (default 20) µm above the
        specimen, `debris_amount` bright/opaque (0.5: a clear second peak below the
        specimen's; ≳ 1 can outshine it). `tilt_um` focus change across the field left→right,
        `tilt_y_um` top→bottom. `noise_model` "poisson" (default, exact) or
        "gaussian" (same mean and variance, ~10× faster camera noise: use it for
        benchmarks). `surface` the sample's height across the XY stage (a
        `SampleSurface`, e.g. `SampleSurface.plate()`; default flat).
        `magnification`, `na` and `immersion_index` pick another objective (default
        20×/0.75 air; e.g. 10×/0.3 air, 60×/1.4 oil at 1.518): the depth of field,
        blur and sample pixel size follow from them.
        `hardware_profile` the stage and camera speeds
        (`autofocus_drivers.sim.profiles`: default, motorized, piezo); an explicit
        `exposure_ms` wins over the profile's. Raises `SimConfigError` for
        invalid values.
        """
        from autofocus_drivers.sim.profiles import hardware_profile as _profile

        profile = _profile(hardware_profile)
        is_image = not isinstance(specimen, str)
        spec_kw: dict = {
            "kind": "image" if is_image else specimen,
            "image": np.asarray(specimen) if is_image else None,
            "density": density,
            "focus_z_um": focus_z_um,
            "tilt_x_um": float(tilt_um),
            "tilt_y_um": float(tilt_y_um),
            "drift_um_per_s": float(drift_um_per_s),
        }
        if debris or debris_dz_um is not None:
            spec_kw["debris_amount"] = float(debris_amount)
            if debris_dz_um is not None:
                spec_kw["debris_dz_um"] = float(debris_dz_um)
        cam_kw: dict = {"width_px": width_px, "height_px": height_px, "bit_depth": bit_depth}
        for key, value in (
            ("photons_per_px_ms", photons_per_px_ms),
            ("read_noise_e", read_noise_e),
            ("exposure_ms", exposure_ms),
            ("noise_model", noise_model),
        ):
            if value is not None:
                cam_kw[key] = value if key == "noise_model" else float(value)
        stage = StageConfig()
        if backlash_um is not None:
            stage = dataclasses.replace(stage, backlash_um=float(backlash_um))
        optics_kw = {key: float(value) for key, value in (
            ("magnification", magnification), ("na", na), ("immersion_index", immersion_index),
        ) if value is not None}
        cam_kw.setdefault("exposure_ms", profile.exposure_ms)
        cam_kw.update(readout_ms=profile.readout_ms, readout_overlaps=profile.readout_overlaps,
                      max_fps=profile.max_fps)
        stage = dataclasses.replace(
            stage, speed_um_per_s=profile.speed_um_per_s, settle_s=profile.settle_s,
            sequenceable=profile.sequenced,
        )
        return cls(
            modality=modality,
            optics=Optics(**optics_kw),
            specimen=SpecimenConfig(**spec_kw),
            camera=CameraConfig(**cam_kw),
            stage=stage,
            surface=surface if surface is not None else SampleSurface(),
            real_time=bool(real_time),
        )
