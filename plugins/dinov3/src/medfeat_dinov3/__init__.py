"""medfeat-dinov3: DINOv3 / DINOv2-with-registers slice features for 3D images.

This entry module stays light (pydantic and medfeat's hook marker only); torch, transformers and the
model code are imported inside the factories.
"""

from __future__ import annotations

from medfeat.api import hookimpl
from medfeat_dinov3.config import (
    Dinov2SlicesConfig,
    Dinov3ImageConfig,
    Dinov3SlicesConfig,
    LabelMappedFilesConfig,
)

__version__ = "0.1.0"


def make_dinov3_slices(config: Dinov3SlicesConfig, context):
    from medfeat_dinov3.backbone import make_dinov3_slices

    return make_dinov3_slices(config, context)


def make_dinov2_slices(config: Dinov2SlicesConfig, context):
    from medfeat_dinov3.backbone import make_dinov2_slices

    return make_dinov2_slices(config, context)


def make_dinov3_2d(config: Dinov3ImageConfig, context):
    from medfeat_dinov3.backbone import make_dinov3_2d

    return make_dinov3_2d(config, context)


def make_label_mapped_files(config: LabelMappedFilesConfig, context):
    from medfeat_dinov3.datasets import make_label_mapped_files

    return make_label_mapped_files(config, context)


@hookimpl
def medfeat_register_backbones(register):
    register(
        "dinov3-slices",
        make_dinov3_slices,
        config=Dinov3SlicesConfig,
        summary="Frozen DINOv3 ViT on 2D slices of a 3D volume (every k-th, interpolated), with geometry.",
    )
    register(
        "dinov2-slices",
        make_dinov2_slices,
        config=Dinov2SlicesConfig,
        summary="Frozen DINOv2-with-registers ViT on 2D slices (DINO-Reg's backbone), with geometry.",
    )
    register(
        "dinov3-2d",
        make_dinov3_2d,
        config=Dinov3ImageConfig,
        summary="Frozen DINOv3 ViT on 2D images (RGB or grey): patch tokens with geometry; a 2D teacher.",
    )


@hookimpl
def medfeat_register_datasets(register):
    register(
        "label-mapped-files",
        make_label_mapped_files,
        config=LabelMappedFilesConfig,
        summary="A fixed/moving pair whose label ids are mapped to shared ids (e.g. CT vs MR label sets).",
    )
