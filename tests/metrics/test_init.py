"""``import medfeat.metrics`` stays light: no torch, SimpleITK, nibabel or scipy."""

import subprocess
import sys


def test_importing_metrics_stays_light():
    code = (
        "import sys, medfeat.metrics; "
        "print(sorted(m for m in ('torch', 'SimpleITK', 'nibabel', 'scipy') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
