"""The plugin registers its components through the entry point, each under its kind."""

from __future__ import annotations

from medfeat.plugins import get_registry


def test_components_are_registered_under_their_kinds():
    reg = get_registry()
    assert {"bbox-normalised", "bpr-slice-score", "ape"} <= set(reg.names("coordinate_provider"))
    assert "ape-exported" not in reg.names("coordinate_provider")  # .pt2 programs unpickle
    assert "bpr-ddpm" in reg.names("pretrainer")
    assert "bpr-diffusion" in reg.names("backbone")
    assert {"fpn-probe", "linear-probe"} <= set(reg.names("segmentation_head"))
    assert {"ct-volumes", "labelled-volume-zsplit"} <= set(reg.names("dataset"))
    assert not [p for p in reg.problems if "bpr" in p.plugin]
    assert reg.get("backbone", "bpr-diffusion").plugin == "medfeat-bpr-diffusion"
