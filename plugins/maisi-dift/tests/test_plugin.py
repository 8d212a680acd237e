"""Discovery stays light; the components are registered with their config models."""

from __future__ import annotations


def test_components_are_registered():
    from medfeat.plugins import get_registry

    reg = get_registry()
    assert reg.get("backbone", "maisi-dift").config is not None
    assert reg.get("matcher", "meddift-matcher") is not None
    assert reg.get("dataset", "learn2reg-lungct") is not None
