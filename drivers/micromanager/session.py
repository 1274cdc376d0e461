"""Reaching an MMCore: a running Micro-Manager over ZMQ, or MMCore started in this process.

`connect_core(port)` attaches to Micro-Manager's ZMQ server (images come back
flat there); `start_headless_core(adapter_dir, config_file)` starts pycromanager's
in-process core (Python backend) and `stop_headless()` stops it. The demo kit
finds the DemoCamera/DStage adapters of `mm-test-adapters`. pycromanager is
imported lazily; nothing here knows about the `Microscope` protocol.
"""

from __future__ import annotations

import math
import os
import socket
from pathlib import Path
from typing import Any

from autofocus_drivers.errors import ConfigurationError
from autofocus_drivers.micromanager.core_api import core_method, missing_extra, vendor_message

DEFAULT_PORT = 4827
"""Port of Micro-Manager's ZMQ (pycro-manager) server."""

DEFAULT_TIMEOUT_S = 5.0
"""Default for answering the ZMQ handshake and, headless, for MMCore's device waits."""

DEMO_ADAPTERS = "mm-test-adapters"
"""Special `headless_adapter_dir` value: the DemoCamera adapters of the mm-test-adapters package."""

_ENABLE_SERVER_HINT = (
    "Start Micro-Manager and enable its server: Tools > Options > 'Run server on port {port}' "
    "(newer versions call it 'Run pycro-manager server on port {port}'). Without a running "
    "Micro-Manager, start it headless instead "
    "(--mm-headless ADAPTER_DIR --mm-config FILE)."
)


def connect_core(port: int = DEFAULT_PORT, timeout_s: float = DEFAULT_TIMEOUT_S) -> Any:
    """The core of a running Micro-Manager over its ZMQ server on 127.0.0.1:`port`.

    Fails fast with `ConfigurationError` (saying how to enable the server) when nothing
    listens on the port, and within `timeout_s` seconds when something listens but no
    Micro-Manager answers.
    """
    if not (isinstance(port, int) and 0 < port < 65536):
        raise ConfigurationError(f"Micro-Manager port must be 1-65535, got {port!r}")
    if not (math.isfinite(timeout_s) and timeout_s > 0):
        raise ConfigurationError(f"timeout_s must be a positive number, got {timeout_s!r}")
    hint = _ENABLE_SERVER_HINT.format(port=port)
    _probe_tcp_port(port, timeout_s, hint)
    try:
        # Not pycromanager.Core(): that returns an in-process headless core whenever one
        # is running, whatever port was asked for.
        from mmpycorex.core import ZMQRemoteMMCoreJ
    except ImportError as exc:
        raise ConfigurationError(missing_extra("pycromanager")) from exc
    try:
        core = ZMQRemoteMMCoreJ(port=port, timeout=int(timeout_s * 1000))
    except Exception as exc:
        raise ConfigurationError(
            f"something listens on port {port} but no Micro-Manager ZMQ server answered "
            f"within {timeout_s:g} s ({vendor_message(exc)}). {hint}"
        ) from exc
    return core


def start_headless_core(
    adapter_dir: str | os.PathLike[str],
    config_file: str | os.PathLike[str],
    *,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    buffer_size_mb: int = 64,
) -> Any:
    """Start MMCore in this process (pycromanager headless, Python backend); return the core.

    See `MicroManagerMicroscope.start_headless` for the arguments. The caller stops the
    core with `stop_headless()`. Raises `ConfigurationError` for missing paths, a config
    that fails to load, or a headless core already running.
    """
    adapter_path = Path(adapter_dir).expanduser().resolve()
    if not adapter_path.is_dir():
        raise ConfigurationError(f"Micro-Manager adapter folder {adapter_path} does not exist")
    config_path = resolve_config_file(adapter_path, config_file)
    if not (math.isfinite(timeout_s) and timeout_s > 0):
        raise ConfigurationError(f"timeout_s must be a positive number, got {timeout_s!r}")
    try:
        import pycromanager
        from mmpycorex import is_pymmcore_active
    except ImportError as exc:
        raise ConfigurationError(missing_extra("pycromanager")) from exc
    if is_pymmcore_active():
        raise ConfigurationError(
            "a headless Micro-Manager core is already running in this process; close the "
            "microscope that started it first (pycromanager runs one per process)"
        )
    try:
        # An absolute config path: pycromanager resolves relative ones against adapter_dir.
        pycromanager.start_headless(
            str(adapter_path),
            str(config_path),
            python_backend=True,
            buffer_size_mb=int(buffer_size_mb),
        )
    except Exception as exc:
        stop_headless()
        raise ConfigurationError(
            f"Micro-Manager could not load {config_path.name} with the adapters in "
            f"{adapter_path}: {vendor_message(exc)}"
        ) from exc
    try:
        core = pycromanager.Core()
        core_method(core, "set_timeout_ms")(int(timeout_s * 1000))
        return core
    except BaseException:
        stop_headless()
        raise


def resolve_config_file(
    adapter_dir: str | os.PathLike[str], config_file: str | os.PathLike[str]
) -> Path:
    """The absolute path of a Micro-Manager configuration file.

    An absolute path is taken as it is. A relative one is looked up in `adapter_dir`
    first, as pycromanager and Micro-Manager do (`MMConfig_demo.cfg` next to the
    adapters), then in the current folder. Raises `ConfigurationError` naming every
    place tried when the file is in none of them.
    """
    given = Path(config_file).expanduser()
    if given.is_absolute():
        candidates = [given]
    else:
        candidates = [Path(adapter_dir).expanduser() / given, Path.cwd() / given]
    for candidate in candidates:
        if candidate.is_file():
            return candidate.resolve()
    tried = " or ".join(str(c.resolve()) for c in candidates)
    raise ConfigurationError(
        f"Micro-Manager configuration file {given} not found (looked for {tried})"
    )


def _probe_tcp_port(port: int, timeout_s: float, hint: str) -> None:
    """Fail fast when nothing listens: a ZMQ client would otherwise retry silently."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=min(timeout_s, 2.0)):
            pass
    except ConnectionRefusedError as exc:
        raise ConfigurationError(
            f"no Micro-Manager ZMQ server is running on port {port} (connection refused). {hint}"
        ) from exc
    except OSError as exc:
        raise ConfigurationError(
            f"could not reach a Micro-Manager ZMQ server on port {port}: {exc}. {hint}"
        ) from exc


def stop_headless() -> None:
    """Stop pycromanager's in-process core and let a later start build a fresh engine."""
    import pycromanager
    from pycromanager.acquisition.acq_eng_py.internal.engine import Engine

    pycromanager.stop_headless()
    # pycromanager keeps its acquisition engine as a class-level singleton that is shut down
    # but never cleared; clearing it lets a later start_headless make a working one.
    if hasattr(Engine, "singleton"):
        del Engine.singleton


# ---------------------------------------------------------------------- demo kit
def demo_adapter_dir() -> Path:
    """The folder of Micro-Manager's demo adapters shipped by the mm-test-adapters package.

    Raises `ConfigurationError` when the package is not installed.
    """
    try:
        import mm_test_adapters
    except ImportError as exc:
        raise ConfigurationError(missing_extra("mm-test-adapters")) from exc
    return Path(mm_test_adapters.device_adapter_path())


def demo_config_file() -> Path:
    """`MMConfig_demo.cfg` as shipped next to the mm-test-adapters demo adapters."""
    return demo_adapter_dir() / "MMConfig_demo.cfg"


# DemoCamera only couples its image to Z in "Fluorescent Beads" mode: each bead is a
# Gaussian of sigma sqrt((BeadSize*f)^2 + (BeadBlurRate*|z|)^2) px, where z is the position
# of the stage labelled "Z", so the true focus is Z = 0 µm. The default "Artificial Waves"
# mode only dims with |z| (a brightness change, invisible to normalised focus measures).
DEMOCAMERA_FOCUS_PROPERTIES: tuple[tuple[str, str, str], ...] = (
    ("Camera", "Mode", "Fluorescent Beads"),
    ("Camera", "BeadBlurRate", "0.5"),
    ("Camera", "BeadSize", "2.0"),
    ("Camera", "BeadDensity", "100"),
)
"""Device properties that make DemoCamera's image blur with Z (focus at Z = 0 µm)."""


def write_democamera_focus_config(destination: str | os.PathLike[str]) -> Path:
    """Write the demo configuration with DemoCamera switched to its Z-dependent bead mode.

    The file is the shipped `MMConfig_demo.cfg` plus `DEMOCAMERA_FOCUS_PROPERTIES` as
    post-initialisation `Property` lines; `destination` is a file path or a folder (then
    `MMConfig_demo_focus.cfg` inside it). Returns the path written.
    """
    dest = Path(destination)
    if dest.is_dir():
        dest = dest / "MMConfig_demo_focus.cfg"
    lines = [demo_config_file().read_text(), "", "# Autofocus demo: DemoCamera blurs with |Z|"]
    lines += [f"Property,{dev},{prop},{value}" for dev, prop, value in DEMOCAMERA_FOCUS_PROPERTIES]
    dest.write_text("\n".join(lines) + "\n")
    return dest
