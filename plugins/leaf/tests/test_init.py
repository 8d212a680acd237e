"""The plugin registers its components through the entry point, each under its kind."""

from __future__ import annotations


def test_the_components_are_registered_by_the_plugin():
    from medfeat.plugins import build_registry

    r = build_registry()
    names = [("segmentation_head", "leaf"), ("backbone", "patch-descriptor-2d"),
             ("backbone", "dinov2-registers-2d"), ("dataset", "image-mask-folder-2d"),
             ("dataset", "synthetic-blobs-2d")]  # fmt: skip
    assert [r.get(kind, name).plugin for kind, name in names] == ["medfeat-leaf"] * len(names)
