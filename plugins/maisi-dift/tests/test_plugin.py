"""Discovery stays light; the components are registered with their config models."""

from __future__ import annotations

import subprocess
import sys


def test_entry_module_imports_no_torch_or_monai():
    code = (
        "import sys, medfeat_maisi_dift; "
        "print(any(m in sys.modules for m in ('torch', 'monai', 'medfeat_maisi_dift.backbone')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_components_are_registered():
    from medfeat.plugins import get_registry

    reg = get_registry()
    assert reg.get("backbone", "maisi-dift").config is not None
    assert reg.get("matcher", "meddift-matcher") is not None
    assert reg.get("dataset", "learn2reg-lungct") is not None
