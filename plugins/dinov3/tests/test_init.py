"""Registration: the plugin's components under their names, with their config models and factories."""

from __future__ import annotations

import pytest

from medfeat.api import RunContext, get_registry


@pytest.mark.parametrize(
    "kind, name, config",
    [
        ("backbone", "dinov3-slices", "Dinov3SlicesConfig"),
        ("backbone", "dinov2-slices", "Dinov2SlicesConfig"),
        ("backbone", "dinov3-2d", "Dinov3ImageConfig"),
        ("dataset", "label-mapped-files", "LabelMappedFilesConfig"),
    ],
)
def test_components_are_registered_with_their_config_models(kind, name, config):
    import medfeat_dinov3.config

    component = get_registry().get(kind, name)
    assert component.config is getattr(medfeat_dinov3.config, config)
    assert component.plugin == "medfeat-dinov3"


def test_factories_build_the_plugins_classes(tmp_path):
    from medfeat_dinov3.backbone import ImageBackbone2D, SliceBackbone
    from medfeat_dinov3.datasets import LabelMappedFiles

    reg = get_registry()
    tiny = {"model": "tiny", "random_weights": True}
    slices = reg.get("backbone", "dinov2-slices").build(tiny, RunContext())
    assert isinstance(slices, SliceBackbone) and slices.model.patch_size == 14
    image = reg.get("backbone", "dinov3-2d").build(tiny, RunContext())
    assert isinstance(image, ImageBackbone2D) and image.dim == 64
    paths = {k: tmp_path / k for k in ("fixed", "moving", "fixed_labels", "moving_labels")}
    data = reg.get("dataset", "label-mapped-files").build(
        {**paths, "fixed_label_map": {1: [3]}, "moving_label_map": {1: [30, 31]}}, RunContext()
    )
    assert isinstance(data, LabelMappedFiles) and data.config.moving_label_map == {1: [30, 31]}
