"""Built-in feature transforms: channel L2 normalisation, multi-level fusion, joint PCA."""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import BaseModel, ConfigDict, Field

from medfeat.components import FeatureLevel, FeatureMap
from medfeat.geometry import Image


class NoConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")


class L2Normalise:
    """Unit length along channels at every voxel, level by level."""

    def apply(self, features: Sequence[FeatureMap], masks=None) -> list[FeatureMap]:
        from medfeat.features import l2_normalise

        return [
            FeatureMap(
                [FeatureLevel(l2_normalise(lv.data), lv.grid, lv.name) for lv in f.levels], f.source
            )
            for f in features
        ]


def make_l2(config: NoConfig, context) -> L2Normalise:
    return L2Normalise()


class FuseConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    levels: list[int] | None = Field(None, description="Level indices to keep (default: all).")
    weights: list[float] | None = Field(
        None, description="Weight per kept level (default: 1 each)."
    )
    target: str = Field(
        "finest", description="'finest' level grid, 'image' grid, or a level index as text."
    )
    normalise: bool = Field(True, description="L2-normalise each level before concatenation.")


class FuseLevels:
    """Resample levels to one grid, L2-normalise each, weight and concatenate (MedDIFT fusion)."""

    def __init__(self, config: FuseConfig) -> None:
        self.config = config

    def _target(self, fmap: FeatureMap):
        t = self.config.target
        if t == "image":
            return fmap.source.grid
        if t == "finest":
            return min(
                (lv.grid for lv in fmap.levels),
                key=lambda g: abs(float(__import__("numpy").prod(g.spacing))),
            )
        return fmap.levels[int(t)].grid

    def apply(self, features: Sequence[FeatureMap], masks=None) -> list[FeatureMap]:
        from medfeat.features import fuse_levels

        out = []
        for f in features:
            keep = self.config.levels if self.config.levels is not None else range(len(f.levels))
            sub = FeatureMap([f.levels[i] for i in keep], f.source)
            out.append(
                fuse_levels(sub, self._target(sub), self.config.weights, self.config.normalise)
            )
        return out


def make_fuse(config: FuseConfig, context) -> FuseLevels:
    return FuseLevels(config)


class PCAConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    dims: int = Field(24, ge=1, description="Output channels.")
    use_mask: bool = Field(
        True, description="Fit on tokens inside the fixed mask when the case has one."
    )
    centre: bool = Field(
        False, description="Subtract the joint mean before projecting (DINO-Reg does not)."
    )
    max_samples: int = Field(200_000, ge=100, description="Tokens sampled to fit the axes.")


class JointPCA:
    """Project fixed and moving features onto principal axes fitted on both together, level by level."""

    def __init__(self, config: PCAConfig, seed: int) -> None:
        self.config, self.seed = config, seed

    def apply(
        self, features: Sequence[FeatureMap], masks: Sequence[Image | None] | None = None
    ) -> list[FeatureMap]:
        from medfeat.features import joint_pca, resample_level

        n_levels = len(features[0].levels)
        new_levels: list[list[FeatureLevel]] = [[] for _ in features]
        for li in range(n_levels):
            levels = [f.levels[li] for f in features]
            level_masks = None
            if self.config.use_mask and masks is not None:
                level_masks = []
                for lv, m in zip(levels, masks, strict=False):
                    if m is None:
                        level_masks.append(None)
                        continue
                    ml = FeatureLevel(m.tensor()[None], m.grid)
                    level_masks.append(resample_level(ml, lv.grid, mode="nearest").data[0])
                level_masks += [None] * (len(levels) - len(level_masks))
            projected, _ = joint_pca(
                [lv.data for lv in levels],
                self.config.dims,
                level_masks,
                self.config.centre,
                self.config.max_samples,
                self.seed,
            )
            for i, (lv, p) in enumerate(zip(levels, projected, strict=True)):
                new_levels[i].append(FeatureLevel(p, lv.grid, f"{lv.name}-pca{self.config.dims}"))
        return [FeatureMap(lv, f.source) for lv, f in zip(new_levels, features, strict=True)]


def make_pca(config: PCAConfig, context) -> JointPCA:
    return JointPCA(config, context.seed)
