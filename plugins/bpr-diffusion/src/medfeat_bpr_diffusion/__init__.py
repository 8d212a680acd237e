"""medfeat-bpr-diffusion: 3D DDPM pretraining guided by body-part coordinates (paper 2501.19265).

This entry module only names components and their config models; torch and the networks are
imported by the factories when a component is built.
"""

from __future__ import annotations

from typing import Any

from medfeat.api import hookimpl
from medfeat_bpr_diffusion import config as cfg

__version__ = "0.1.0"


def _bbox(config: cfg.BBoxCoordinatesConfig, context: Any) -> Any:
    from medfeat_bpr_diffusion.coordinates import make_bbox

    return make_bbox(config, context)


def _bpr(config: cfg.BPRCoordinatesConfig, context: Any) -> Any:
    from medfeat_bpr_diffusion.coordinates import make_bpr

    return make_bpr(config, context)


def _ape(config: cfg.APECoordinatesConfig, context: Any) -> Any:
    from medfeat_bpr_diffusion.coordinates import make_ape

    return make_ape(config, context)


def _pretrainer(config: cfg.PretrainConfig, context: Any) -> Any:
    from medfeat_bpr_diffusion.pretrain import make_pretrainer

    return make_pretrainer(config, context)


def _backbone(config: cfg.BackboneConfig, context: Any) -> Any:
    from medfeat_bpr_diffusion.backbone import make_backbone

    return make_backbone(config, context)


def _fpn(config: cfg.ProbeConfig, context: Any) -> Any:
    from medfeat_bpr_diffusion.heads import make_fpn

    return make_fpn(config, context)


def _linear(config: cfg.ProbeConfig, context: Any) -> Any:
    from medfeat_bpr_diffusion.heads import make_linear

    return make_linear(config, context)


def _ct_volumes(config: cfg.CTVolumesConfig, context: Any) -> Any:
    from medfeat_bpr_diffusion.datasets import make_ct_volumes

    return make_ct_volumes(config, context)


def _zsplit(config: cfg.ZSplitConfig, context: Any) -> Any:
    from medfeat_bpr_diffusion.datasets import make_zsplit

    return make_zsplit(config, context)


@hookimpl
def medfeat_register_coordinate_providers(register):
    register(
        "bbox-normalised",
        _bbox,
        config=cfg.BBoxCoordinatesConfig,
        summary="Departure, weight-free: world x,y,z normalised to [0, 1] over the body bounding box.",
    )
    register(
        "bpr-slice-score",
        _bpr,
        config=cfg.BPRCoordinatesConfig,
        summary="MIC-DKFZ Body Part Regression (VGG16, local public weights): one score per slice.",
    )
    register(
        "ape",
        _ape,
        config=cfg.APECoordinatesConfig,
        summary="APE dense 3D body-part coordinates (published ConvNeXt-FPN, local weights, stride 4).",
    )


@hookimpl
def medfeat_register_pretrainers(register):
    register(
        "bpr-ddpm",
        _pretrainer,
        config=cfg.PretrainConfig,
        summary="3D DDPM on CT patches with body-part coordinates concatenated to the noisy input.",
    )


@hookimpl
def medfeat_register_backbones(register):
    register(
        "bpr-diffusion",
        _backbone,
        config=cfg.BackboneConfig,
        summary="Frozen bpr-ddpm U-Net decoder features at t=10,30,60, sliding windows (0.5 overlap).",
    )


@hookimpl
def medfeat_register_segmentation_heads(register):
    register(
        "fpn-probe",
        _fpn,
        config=cfg.ProbeConfig,
        summary="vox2vec non-linear FPN probe on frozen features; sigmoid per class, BCE + Dice.",
    )
    register(
        "linear-probe",
        _linear,
        config=cfg.ProbeConfig,
        summary="Linear probe (per-level 1x1 conv to classes, upsampled and summed) on frozen features.",
    )


@hookimpl
def medfeat_register_datasets(register):
    register(
        "ct-volumes",
        _ct_volumes,
        config=cfg.CTVolumesConfig,
        summary="Unlabelled CT files (paths or globs), streamed one at a time, for pretraining.",
    )
    register(
        "labelled-volume-zsplit",
        _zsplit,
        config=cfg.ZSplitConfig,
        summary="One CT + label map split into disjoint train/validation/test slabs along numpy axis 0.",
    )
