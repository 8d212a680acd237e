"""The plugin registers its components through the entry point, and its entry module stays light."""

from __future__ import annotations

import subprocess
import sys

from medfeat.plugins import get_registry


def test_components_are_registered_under_their_kinds():
    reg = get_registry()
    assert {"bbox-normalised", "bpr-slice-score", "ape", "ape-exported"} <= set(
        reg.names("coordinate_provider")
    )
    assert "bpr-ddpm" in reg.names("pretrainer")
    assert "bpr-diffusion" in reg.names("backbone")
    assert {"fpn-probe", "linear-probe"} <= set(reg.names("segmentation_head"))
    assert {"ct-volumes", "labelled-volume-zsplit"} <= set(reg.names("dataset"))
    assert not [p for p in reg.problems if "bpr" in p.plugin]


def test_entry_module_imports_no_torch():
    code = "import sys, medfeat_bpr_diffusion; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
