"""Running out of memory while decoding an upload is not reported as a corrupt image.

The out-of-memory condition is real: a child process lowers its own address-space
limit (RLIMIT_AS) just above what it uses, then decodes an NPY whose pixels need
more than that.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

CHILD = r"""
import io, resource, sys
import numpy as np
from autofocus.errors import ImageError
from autofocus.service.api.images import DecodeOutOfMemory, decode_frames

buf = io.BytesIO()
np.save(buf, np.zeros((6000, 6000), np.uint16))  # 72 MB of pixels
data = buf.getvalue()
vm = int([l for l in open("/proc/self/status") if l.startswith("VmSize")][0].split()[1]) * 1024
resource.setrlimit(resource.RLIMIT_AS, (vm + 40 * 2**20, resource.RLIM_INFINITY))
try:
    decode_frames(data, "big.npy", max_pixels=10**9)
except DecodeOutOfMemory as exc:
    print("OOM:", exc)
    sys.exit(0)
except ImageError as exc:
    print("IMAGE:", exc)
    sys.exit(3)
print("decoded")
sys.exit(4)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="needs RLIMIT_AS and /proc")
def test_out_of_memory_while_decoding_is_not_corrupt():
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-c", CHILD], cwd=REPO, env=env, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "big.npy" in proc.stdout and "memory" in proc.stdout and "corrupt" not in proc.stdout
    assert proc.stdout.startswith("OOM:")
