"""Import names no user module shadows (issue: acquisition tools, item 2).

A microscopist's acquisition script often sits next to its own `models.py` or
`drivers.py`. Python puts the script's folder first on `sys.path`, so if the
runtime imported top-level packages called `models` or `drivers`, those user
files would replace them. The folders keep the design card's names, but they are
installed as `autofocus_models` and `autofocus_drivers`.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = r'''
import json
from autofocus.search.focus import focus
from autofocus_drivers.sim import SimConfig, SimulatedMicroscope

mic = SimulatedMicroscope(SimConfig.preset("beads"), seed=3)
result = focus(mic, range_um=30.0, scorer="focusnet")
out = {"success": result.success, "scorer": result.scorer}
try:
    from autofocus.acquire.mda import AutofocusEngine  # noqa: F401  (needs the mm extra)
    out["mda"] = "imported"
except ImportError as exc:
    out["mda"] = f"skipped: {exc}"
print(json.dumps(out))
'''


def test_user_models_and_drivers_modules_do_not_shadow_the_runtime(tmp_path):
    # Files a user might really have; each fails loudly if the runtime imports it.
    (tmp_path / "models.py").write_text("raise RuntimeError('the user models.py was imported')\n")
    (tmp_path / "drivers.py").write_text("raise RuntimeError('the user drivers.py was imported')\n")
    script = tmp_path / "acquire.py"
    script.write_text(SCRIPT)
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTOFOCUS_")}
    env.pop("PYTHONPATH", None)
    proc = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "the user" not in proc.stderr
    line = proc.stdout.strip().splitlines()[-1]
    assert '"success": true' in line, line
    assert '"mda": "imported"' in line or '"mda": "skipped' in line, line


def test_the_old_top_level_names_are_not_imported_anywhere():
    bad = []
    for folder in ("autofocus", "drivers", "models", "tests", "examples", "benchmarks"):
        for path in (ROOT / folder).rglob("*.py"):
            for n, text in enumerate(path.read_text().splitlines(), 1):
                if re.match(r"\s*(from|import)\s+(models|drivers)\b", text):
                    bad.append(f"{path.relative_to(ROOT)}:{n}: {text.strip()}")
    assert not bad, "\n".join(bad)


def test_every_package_folder_is_listed_for_installation():
    """pyproject lists packages by hand (package-dir renames them); none may be missed."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    renames = {folder: name for name, folder in config["package-dir"].items()}
    found = set()
    for folder in ("autofocus", "drivers", "models"):
        for init in (ROOT / folder).rglob("__init__.py"):
            parts = list(init.parent.relative_to(ROOT).parts)
            parts[0] = renames[parts[0]]
            found.add(".".join(parts))
    assert found == listed, f"missing {sorted(found - listed)}, stale {sorted(listed - found)}"


@pytest.mark.parametrize("name", ["autofocus_models", "autofocus_drivers"])
def test_renamed_packages_resolve_to_the_design_folders(name):
    module = __import__(name)
    assert Path(module.__file__).parent.name in ("models", "drivers")
