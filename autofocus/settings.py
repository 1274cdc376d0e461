"""Service settings: one pydantic-settings model, from a TOML file and `AUTOFOCUS_*` variables.

Every setting has a default so the simulated microscope runs with no file at
all. Nested groups are set from the environment with a double underscore, e.g.
`AUTOFOCUS_FOCUS__RANGE_UM=80` or `AUTOFOCUS_SIM__SEED=3`. The TOML file is
named by `AUTOFOCUS_CONFIG` or passed to `load_settings(path)`; environment
variables override it.
"""

from __future__ import annotations

import difflib
import os
import re
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic_settings import (
    BaseSettings,
    InitSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: the backport pydantic-settings already needs
    import tomli as tomllib  # type: ignore[no-redef]

DriverName = Literal["sim", "micromanager", "replay"]


class SimSettings(BaseModel):
    """Options of the simulated microscope (driver `sim`)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    seed: int = Field(0, description="Random seed: specimen, true focus and noise.")
    specimen: Literal["beads", "cells", "fibres"] = "beads"
    modality: Literal["fluorescence", "brightfield"] = "fluorescence"
    focus_z_um: float | None = Field(
        None, description="True focus in µm; None draws it from the seed within ±10 µm."
    )
    photons_per_px_ms: float | None = Field(
        None, gt=0, description="Peak photon flux per pixel per ms; None keeps the default."
    )
    read_noise_e: float | None = Field(None, ge=0, description="Camera read noise in electrons.")
    debris_dz_um: float | None = Field(
        None, description="Out-of-plane debris this far from focus (µm): a second, wrong peak."
    )
    tilt_um: float = Field(0.0, description="Focus change across the field, µm edge to edge.")
    drift_um_per_s: float = Field(0.0, description="Focus drift in µm per second.")
    surface_tilt_um: float = Field(
        0.0, description="Sample height change across a 96-well plate footprint, left to "
        "right (µm; half of it top to bottom), as seen by the XY stage."
    )
    surface_bow_um: float = Field(
        0.0, description="Sample height change from the plate centre to its corners (µm)."
    )
    backlash_um: float | None = Field(None, ge=0, description="Stage backlash in µm.")
    magnification: float | None = Field(
        None, gt=0, description="Objective magnification onto the camera (default 20)."
    )
    na: float | None = Field(
        None, gt=0, description="Objective numerical aperture (default 0.75; below the "
        "immersion index)."
    )
    immersion_index: float | None = Field(
        None, ge=1.0, description="Refractive index of the immersion medium (1.0 air, 1.33 "
        "water, 1.518 oil; default 1.0)."
    )
    width_px: int = Field(256, ge=16, le=4096)
    height_px: int = Field(256, ge=16, le=4096)
    noise_model: Literal["poisson", "gaussian", "none"] = Field(
        "poisson", description="Camera noise: exact Poisson, its Gaussian approximation, or none."
    )
    real_time: bool = Field(False, description="Sleep for real (demo) instead of a virtual clock.")
    hardware_profile: Literal["default", "motorized", "piezo"] = Field(
        "default", description="Simulated stage and camera speeds (assumed figures, see "
        "README): default (500 µm/s, 20 ms settle, 10 ms exposure), motorized (300 µm/s, "
        "40 ms settle, 20 ms exposure + 10 ms readout, ≤ 30 fps) or piezo (2 mm/s, 5 ms "
        "settle, 10 ms exposure, 2 ms overlapped readout, ≤ 100 fps, sequenced Z). Its "
        "exposure applies unless a request sets exposure_ms."
    )


class MicroManagerSettings(BaseModel):
    """Options of the Micro-Manager driver (driver `micromanager`)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    port: int | None = Field(None, description="ZMQ server port of a running Micro-Manager.")
    headless_adapter_dir: Path | None = Field(
        None, description="Start Micro-Manager headless in-process with adapters from here."
    )
    config_file: Path | None = Field(None, description="Micro-Manager .cfg for headless start.")
    focus_device: str | None = Field(None, description="Z drive name; default: core focus device.")
    camera: str | None = Field(None, description="Camera device name; default: core camera.")
    timeout_s: float = Field(5.0, gt=0, description="Connection/command timeout in seconds.")
    continuous_focus: Literal["refuse", "pause"] = Field(
        "refuse",
        description="A locked hardware autofocus (PFS, CRISP): refuse to move Z, or pause it "
        "for the search and switch it back on afterwards.",
    )
    xy_stage: str | None = Field(None, description="XY stage for focus maps; default: core's.")
    objective_na: float | None = Field(
        None, gt=0, lt=1.6, description="Numerical aperture of the objective in use: with it "
        "the depth of field (and so the peak width, rival separation, spacing and default "
        "tolerance) comes from the optics and Micro-Manager's pixel size instead of a guess."
    )
    immersion_index: float = Field(
        1.0, ge=1.0, le=2.0, description="Refractive index of the immersion medium (1.0 air, "
        "1.33 water, 1.518 oil)."
    )
    wavelength_nm: float = Field(
        550.0, gt=200, lt=2000, description="Emission (or illumination) wavelength, nm."
    )


class ReplaySettings(BaseModel):
    """Options of the replay driver (driver `replay`): a recorded z-stack served as a stage."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    stack: Path | None = Field(None, description="Stack folder, multi-page TIFF or CSV.")
    pattern: str | None = Field(None, description="Regex with a named group `z` for file names.")
    z_step_um: float | None = Field(None, gt=0, description="Z step for multi-page TIFFs.")
    blend: bool = Field(False, description="Blend the two nearest planes on regular stacks.")
    noise_sigma: float = Field(0.0, ge=0, description="Extra Gaussian noise (fraction of range).")
    move_s_per_um: float = Field(0.001, ge=0, description="Virtual time per µm of travel.")
    exposure_ms: float = Field(10.0, gt=0)
    seed: int = 0


class FocusDefaults(BaseModel):
    """Defaults of a focus job; every field can be overridden per request."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    @model_validator(mode="before")
    @classmethod
    def _deprecated_backlash_um(cls, data: Any) -> Any:
        """`backlash_um` (the old name of `overshoot_um`) is accepted with a warning."""
        if isinstance(data, dict) and "backlash_um" in data:
            import warnings

            data = dict(data)
            value = data.pop("backlash_um")
            if "overshoot_um" in data and data["overshoot_um"] != value:
                raise ValueError("give focus.overshoot_um or its old name backlash_um, not both")
            warnings.warn(
                "the setting focus.backlash_um is deprecated: it is the approach overshoot; "
                "use focus.overshoot_um", DeprecationWarning, stacklevel=2,
            )
            data["overshoot_um"] = value
        return data

    @property
    def backlash_um(self) -> float:
        """Deprecated alias of `overshoot_um`."""
        return self.overshoot_um

    strategy: str = "guided"
    scorer: str = "tenengrad"
    range_um: float = Field(50.0, gt=0, description="Full width of the searched Z range, µm.")
    tolerance_um: float | None = Field(
        None, gt=0, description="Wanted accuracy, µm; unset: a quarter of the depth of field "
        "where the optics are known (simulator, [mm] objective_na, a request's dof_um), else "
        "0.5 µm."
    )
    max_frames: int = Field(60, ge=3, le=10_000)
    timeout_s: float = Field(120.0, gt=0)
    on_failure: Literal["return", "stay"] = "return"
    overshoot_um: float = Field(
        5.0, ge=0, description="Approach overshoot, µm: every position is approached from this "
        "far below, so the stage's play lands the same way (formerly `backlash_um`, still "
        "accepted as a deprecated alias).",
    )
    settle_s: float = Field(0.0, ge=0, description="Extra wait after every move, seconds.")
    verify: bool = Field(True, description="Re-snap at the chosen z and check the score.")
    rival_check: Literal["capture", "full"] = Field(
        "full",
        description="How hard `guided` looks for a second focal plane: `full` (default: the "
        "whole range finely enough to see a dim specimen under bright debris; about range / "
        "3 DOF more frames) or `capture` (only what its coarse pass sees: ~3x fewer frames, "
        "but it can park on debris when a dim specimen lies several DOF away).",
    )


def default_database_path() -> Path:
    """`autofocus.db` in the user's data directory, whatever directory the daemon starts in.

    Linux `~/.local/share/autofocus/`, macOS `~/Library/Application Support/autofocus/`,
    Windows `%LOCALAPPDATA%\\autofocus\\` (platformdirs). The job store creates the folder.
    """
    from platformdirs import user_data_path

    return user_data_path("autofocus", appauthor=False) / "autofocus.db"


class Settings(BaseSettings):
    """All settings of the autofocus service."""

    model_config = SettingsConfigDict(
        env_prefix="AUTOFOCUS_", env_nested_delimiter="__", extra="forbid", allow_inf_nan=False
    )

    host: str = "127.0.0.1"
    port: int = Field(8765, ge=1, le=65535)
    driver: DriverName = "sim"
    z_min_um: float | None = Field(
        None, description="Lower Z limit, µm (default: the driver's own, e.g. sim −100)."
    )
    z_max_um: float | None = Field(None, description="Upper Z limit, µm.")
    api_token: str | None = Field(
        None,
        min_length=16,
        description="Bearer token (at least 16 characters); required off loopback.",
    )
    database_path: Path = Field(
        default_factory=default_database_path,
        description="SQLite job database (default: autofocus.db in the user's data directory).",
    )
    log_format: Literal["auto", "json", "console"] = "auto"
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    queue_max: int = Field(16, ge=1, description="Queued jobs beyond which POST answers 429.")
    max_upload_mb: float = Field(
        64.0, gt=0, description="Largest upload to /v1/score, MiB (larger answers 413)."
    )
    max_json_kb: float = Field(
        64.0, gt=0, le=10_240, description="Largest JSON request body, KiB (larger answers 413)."
    )
    score_max_pixels: int = Field(
        32 * 1024 * 1024,
        ge=1024,
        le=1 << 31,
        description="Decoded pixels (all frames together) one /v1/score request may hold.",
    )
    score_memory_mb: float = Field(
        1024.0,
        ge=16,
        description="Memory all /v1/score requests together may use to decode and score "
        "frames, MiB (from the headers, before decoding); one needing more answers 413.",
    )
    score_wait_s: float = Field(
        5.0, ge=0, le=60,
        description="How long a /v1/score request waits for room in score_memory_mb before "
        "answering 503, seconds.",
    )
    z_resolution_um: float = Field(
        0.01,
        gt=0,
        description="Smallest Z step the stage resolves, µm; a tolerance_um below it is refused.",
    )
    cors_origins: list[str] = Field(
        default_factory=list, description="Browser origins allowed to call the API (CORS)."
    )
    allowed_hosts: list[str] = Field(
        default_factory=list,
        description="Host header names accepted (DNS rebinding guard); empty: loopback names "
        "and `host`; ['*'] accepts any.",
    )
    max_connections: int = Field(
        128, ge=4, le=100_000, description="Open HTTP connections; more are closed at once."
    )
    header_timeout_s: float = Field(
        10.0, gt=0, description="A request's headers must arrive within this, seconds."
    )
    body_timeout_s: float = Field(
        30.0, gt=0, description="A request body stalling longer than this is dropped, seconds."
    )
    hardware_timeout_s: float = Field(
        30.0,
        gt=0,
        description="Watchdog: a stage or camera call that has not returned after this fails "
        "the job (`hardware`) and the daemon exits non-zero so systemd restarts it, seconds.",
    )
    resume_after_crash: bool = Field(
        False,
        description="Run jobs that were queued when the daemon crashed (default: mark them "
        "`interrupted`; the stage does not move until a client asks again).",
    )
    retention_days: float = Field(
        30.0, gt=0, description="Finished jobs older than this are deleted, days."
    )
    retention_max_jobs: int = Field(
        10_000, ge=1, description="At most this many finished jobs are kept (oldest go first)."
    )
    model_path: Path | None = Field(None, description="ONNX model for the `focusnet` scorer.")
    execution_provider: Literal["auto", "cpu", "cuda", "tensorrt"] = "auto"

    sim: SimSettings = Field(default_factory=SimSettings)
    mm: MicroManagerSettings = Field(default_factory=MicroManagerSettings)
    replay: ReplaySettings = Field(default_factory=ReplaySettings)
    focus: FocusDefaults = Field(default_factory=FocusDefaults)

    @model_validator(mode="after")
    def _limits_ordered(self) -> Settings:
        if self.z_min_um is not None and self.z_max_um is not None:
            if self.z_min_um >= self.z_max_um:
                raise ValueError(
                    f"z_min_um ({self.z_min_um}) must be below z_max_um ({self.z_max_um})"
                )
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        parsed = _PARSED_TOML.get()
        if parsed is not None:  # load_settings read and parsed the file already
            sources.append(InitSettingsSource(settings_cls, init_kwargs=parsed))
        elif toml_path := os.environ.get("AUTOFOCUS_CONFIG"):
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=Path(toml_path)))
        return tuple(sources)


# The TOML file `load_settings` parsed, handed to `settings_customise_sources` (which pydantic
# calls without arguments) so the file is parsed once; None outside `load_settings`.
_PARSED_TOML: ContextVar[dict[str, Any] | None] = ContextVar("_PARSED_TOML", default=None)


class ConfigError(ValueError):
    """A configuration mistake, said in one line that names the file, the line and the key
    (with the nearest valid key for a misspelt one)."""


def load_settings(config_path: Path | str | None = None, **overrides: Any) -> Settings:
    """Load settings from `config_path` (TOML, optional), the environment and `overrides`.

    Precedence: `overrides` > `AUTOFOCUS_*` variables > TOML file > defaults.
    Raises `FileNotFoundError` for a named file that does not exist and
    `ConfigError` (one line: file, line, key, reason, nearest valid key) for
    malformed TOML, unknown keys and bad values.
    """
    if config_path is not None and not Path(config_path).is_file():
        raise FileNotFoundError(f"configuration file {config_path} does not exist")
    path = str(config_path) if config_path is not None else os.environ.get("AUTOFOCUS_CONFIG")
    if config_path is None and path and not Path(path).is_file():
        # Named but missing: running on the defaults (the simulator) would hide the mistake.
        raise FileNotFoundError(
            f"configuration file {path} (from AUTOFOCUS_CONFIG) does not exist"
        )
    text, data = _read_toml(path)
    token = _PARSED_TOML.set(data)
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, path, text, data)) from None
    finally:
        _PARSED_TOML.reset(token)


def _read_toml(path: str | None) -> tuple[str | None, dict[str, Any]]:
    if not path or not Path(path).is_file():
        return None, {}
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot be read as UTF-8 text ({exc})") from None
    try:
        return text, tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None


def _describe(exc: ValidationError, path: str | None, text: str | None, data: dict) -> str:
    """One line for all of `exc`'s errors, each placed in the file where it came from."""
    parts = []
    for err in exc.errors()[:5]:
        loc = tuple(str(p) for p in err.get("loc", ()))
        dotted = ".".join(loc)
        in_file = path is not None and _lookup(data, loc)
        line = _line_of(text, loc) if in_file and text is not None else None
        where = f"{path} line {line}: " if line else (f"{path}: " if in_file else "")
        if err.get("type") == "extra_forbidden":
            section = f" in [{'.'.join(loc[:-1])}]" if len(loc) > 1 else ""
            hint = _nearest(loc)
            msg = f"unknown key {loc[-1]!r}{section}"
            if hint:
                msg += f" (did you mean {hint!r}?)"
        else:
            msg = f"{dotted}: {err.get('msg', 'invalid value')}"
        if not in_file:
            msg += " (from AUTOFOCUS_* variables or the command line)"
        parts.append(where + msg)
    return "invalid settings: " + "; ".join(parts) if not path else "; ".join(parts)


def _lookup(data: dict, loc: tuple[str, ...]) -> bool:
    node: Any = data
    for key in loc:
        if not isinstance(node, dict) or key not in node:
            return False
        node = node[key]
    return True


_TABLE = re.compile(r"^\s*\[\s*([^\[\]]+?)\s*\]\s*(#.*)?$")
_KEY = re.compile(r"^\s*([A-Za-z0-9_.\-\"' ]+?)\s*=")


def _line_of(text: str, loc: tuple[str, ...]) -> int | None:
    """The 1-based line of `text` where the key at `loc` is set (tables and dotted keys)."""
    table: tuple[str, ...] = ()
    for n, raw in enumerate(text.splitlines(), start=1):
        if m := _TABLE.match(raw):
            table = tuple(p.strip().strip("\"'") for p in m.group(1).split("."))
            if table == loc:
                return n
            continue
        if m := _KEY.match(raw):
            full = table + tuple(p.strip().strip("\"'") for p in m.group(1).split("."))
            if loc[: len(full)] == full:
                return n
    return None


def _nearest(loc: tuple[str, ...]) -> str | None:
    """The valid key closest to the misspelt last part of `loc`, or None."""
    model: Any = Settings
    for key in loc[:-1]:
        field = model.model_fields.get(key)
        annotation = getattr(field, "annotation", None)
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return None
        model = annotation
    names = list(model.model_fields)
    found = difflib.get_close_matches(loc[-1], names, n=1, cutoff=0.5)
    if found:
        return found[0]
    prefixed = [n for n in names if n.startswith(loc[-1]) or loc[-1].startswith(n)]
    return prefixed[0] if prefixed else None
