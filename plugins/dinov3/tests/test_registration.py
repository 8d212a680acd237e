"""The plugin registers its components from a light entry module."""

from __future__ import annotations


def test_components_are_registered():
    from medfeat.plugins import get_registry

    registry = get_registry()
    assert registry.get("backbone", "dinov3-slices").config.__name__ == "Dinov3SlicesConfig"
    assert registry.get("backbone", "dinov2-slices") is not None
    assert registry.get("dataset", "label-mapped-files") is not None
