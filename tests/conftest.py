"""Shared test fixtures.

`real_data_dir` is the folder of real through-focus stacks (with its
`manifest.csv`): `$AUTOFOCUS_REAL_DATA` when set, else `../shared/data/real`
relative to the repository root. Tests that need it are skipped, with the
reason, when it is absent. `real_corpus` loads those stacks lazily, once per
test session, so several tests can share the decoded images.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_REAL_DATA = REPO_ROOT.parent / "shared" / "data" / "real"


def real_data_candidate() -> Path:
    """Where the real stacks are expected: `$AUTOFOCUS_REAL_DATA` or `../shared/data/real`."""
    env = os.environ.get("AUTOFOCUS_REAL_DATA")
    return Path(env).expanduser() if env else DEFAULT_REAL_DATA


@pytest.fixture(scope="session")
def real_data_dir() -> Path:
    """The real z-stack corpus folder (holding manifest.csv); skips the test when absent."""
    candidate = real_data_candidate()
    if not (candidate / "manifest.csv").is_file():
        pytest.skip(
            f"real z-stack data not found: no manifest.csv in {candidate} "
            "(set AUTOFOCUS_REAL_DATA to the folder of shared/data/real)"
        )
    return candidate


class RealCorpus:
    """The real stacks with their manifest labels; images decoded on first use and cached."""

    def __init__(self, root: Path) -> None:
        from autofocus.stacks.readers import read_manifest

        self.root = root
        self.labels = read_manifest(root)
        self._images: dict[str, list[np.ndarray]] = {}

    @property
    def names(self) -> list[str]:
        """Stack names in manifest order."""
        return list(self.labels)

    def stack(self, name: str):
        """The `ZStack` of `name` (planes in z order, not loaded)."""
        return self.labels[name].to_stack()

    def images(self, name: str) -> list[np.ndarray]:
        """Decoded planes of `name` in z order (cached for the session; do not modify)."""
        if name not in self._images:
            self._images[name] = self.stack(name).images()
        return self._images[name]


@pytest.fixture(scope="session")
def real_corpus(real_data_dir: Path) -> RealCorpus:
    """Session-wide lazy cache of the real stacks (skips when the data is absent)."""
    return RealCorpus(real_data_dir)
