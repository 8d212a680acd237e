"""medfeat-maisi-dift: MedDIFT diffusion-feature correspondence on 3D CT (MAISI v1 networks).

This entry module only names components and their config models; torch, MONAI and the networks
are imported when a component is built.
"""

from __future__ import annotations

from medfeat.api import hookimpl
from medfeat_maisi_dift.config import LungCTConfig, MaisiDiftConfig, MedDiftMatcherConfig

__version__ = "0.1.0"


def _make_backbone(config: MaisiDiftConfig, context):
    from medfeat_maisi_dift.backbone import make_maisi_dift

    return make_maisi_dift(config, context)


def _make_matcher(config: MedDiftMatcherConfig, context):
    from medfeat_maisi_dift.matcher import make_meddift_matcher

    return make_meddift_matcher(config, context)


def _make_lungct(config: LungCTConfig, context):
    from medfeat_maisi_dift.datasets import make_lungct

    return make_lungct(config, context)


@hookimpl
def medfeat_register_backbones(register):
    register(
        "maisi-dift",
        _make_backbone,
        config=MaisiDiftConfig,
        summary="MedDIFT: MAISI v1 diffusion U-Net up-block features (4 levels, 960 ch) of a CT.",
    )


@hookimpl
def medfeat_register_matchers(register):
    register(
        "meddift-matcher",
        _make_matcher,
        config=MedDiftMatcherConfig,
        summary="MedDIFT(-Box) matcher: argmax of mean per-level cosine over B's image voxels.",
    )


@hookimpl
def medfeat_register_datasets(register):
    register(
        "learn2reg-lungct",
        _make_lungct,
        config=LungCTConfig,
        summary="Learn2Reg LungCT: inspiration _0000 keypoints matched into expiration _0001.",
    )


@hookimpl
def medfeat_register_commands(cli):
    from medfeat_maisi_dift.cli import add_ablation_command

    add_ablation_command(cli)
