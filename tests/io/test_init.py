"""``import medfeat.io`` stays light: no torch, SimpleITK, nibabel or scipy until a reader runs."""

import subprocess
import sys


def test_importing_io_stays_light():
    code = (
        "import sys, medfeat.io; "
        "print(sorted(m for m in ('torch', 'SimpleITK', 'nibabel', 'scipy') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
