"""medfeat-leaf: LEAF latent-diffusion 2D segmentation with REPA-style encoder distillation.

This entry module stays light (pydantic and medfeat's hook marker only); torch, diffusers and
transformers are imported by the factories.
"""

from __future__ import annotations

from medfeat.api import hookimpl
from medfeat_leaf.config import (
    Dinov2Config,
    ImageMaskFolderConfig,
    LeafConfig,
    PatchDescriptorConfig,
    SyntheticBlobsConfig,
)

__version__ = "0.1.0"


def make_leaf(config: LeafConfig, context):
    from medfeat_leaf.heads import LeafHead

    return LeafHead(config, context)


def make_patch_descriptor(config: PatchDescriptorConfig, context):
    from medfeat_leaf.backbone import PatchDescriptor2D

    return PatchDescriptor2D(config.patch_size_px, config.orientation_bins, config.scales)


def make_dinov2(config: Dinov2Config, context):
    from medfeat_leaf.backbone import Dinov2Teacher

    return Dinov2Teacher(config.model_dir, config.image_size_px, device=context.device)


def make_folder(config: ImageMaskFolderConfig, context):
    from medfeat_leaf.datasets import ImageMaskFolder

    return ImageMaskFolder(config)


def make_blobs(config: SyntheticBlobsConfig, context):
    from medfeat_leaf.datasets import SyntheticBlobs

    return SyntheticBlobs(config)


@hookimpl
def medfeat_register_segmentation_heads(register):
    register(
        "leaf",
        make_leaf,
        config=LeafConfig,
        summary="LEAF latent-diffusion segmentation (single-step x0), optional REPA distillation "
        "from the pipeline's 2D backbone.",
    )


@hookimpl
def medfeat_register_backbones(register):
    register(
        "patch-descriptor-2d",
        make_patch_descriptor,
        config=PatchDescriptorConfig,
        summary="Weight-free 2D patch tokens (orientation histograms + colour statistics).",
    )
    register(
        "dinov2-registers-2d",
        make_dinov2,
        config=Dinov2Config,
        summary="DINOv2 (with registers) 2D patch tokens via transformers, from a local folder.",
    )


@hookimpl
def medfeat_register_datasets(register):
    register(
        "image-mask-folder-2d",
        make_folder,
        config=ImageMaskFolderConfig,
        summary="2D images + binary masks in two folders; group-wise splits (CSV, column, CVC sequences).",
    )
    register(
        "synthetic-blobs-2d",
        make_blobs,
        config=SyntheticBlobsConfig,
        summary="Generated 2D frames with one elliptical blob each (examples and tests).",
    )


@hookimpl
def medfeat_register_commands(cli):
    from medfeat_leaf.cli import add_parser

    add_parser(cli)
