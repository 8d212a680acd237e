"""The plugin registers its components from a light entry module."""

from __future__ import annotations

import subprocess
import sys


def test_entry_module_imports_no_torch():
    code = "import sys, medfeat_dinov3; assert 'torch' not in sys.modules; assert 'transformers' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_components_are_registered():
    from medfeat.plugins import get_registry

    registry = get_registry()
    assert registry.get("backbone", "dinov3-slices").config.__name__ == "Dinov3SlicesConfig"
    assert registry.get("backbone", "dinov2-slices") is not None
    assert registry.get("dataset", "label-mapped-files") is not None
