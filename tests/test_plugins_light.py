"""Every plugin's entry module (the built-ins' included) is light: discovery imports no model code."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import entry_points

import pytest

HEAVY = ("torch", "monai", "transformers", "diffusers", "SimpleITK", "scipy")
ENTRY_POINTS = sorted(entry_points(group="medfeat"), key=lambda ep: ep.name)


def test_the_plugins_of_this_checkout_are_installed():
    names = {ep.value for ep in ENTRY_POINTS}
    assert {
        "medfeat.builtins",
        "medfeat_maisi_dift",
        "medfeat_dinov3",
        "medfeat_leaf",
        "medfeat_bpr_diffusion",
    } <= names


@pytest.mark.parametrize("entry_point", ENTRY_POINTS, ids=lambda ep: ep.value)
def test_entry_module_imports_no_heavy_module(entry_point):
    code = (
        f"import sys, {entry_point.value}; "
        f"print(' '.join(m for m in {HEAVY!r} if m in sys.modules) or 'none')"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "none", f"{entry_point.value} imports {out.stdout.strip()}"
