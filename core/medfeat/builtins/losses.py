"""Built-in similarity measures and regularisers: thin wrappers over :mod:`medfeat.engine`."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class NoConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LocalNCCConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    window_vox: int = Field(9, ge=3, description="Side of the cubic window.")


class NMIConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    bins: int = Field(32, ge=4)
    sigma_bins: float = Field(0.5, gt=0, description="Parzen window width in bins.")


def make_similarity(name: str):
    """Factory for an engine similarity function without options."""

    def factory(config, context):
        from medfeat.engine import similarity

        return getattr(similarity, name)

    return factory


def make_local_ncc(config: LocalNCCConfig, context):
    from functools import partial

    from medfeat.engine.similarity import local_ncc

    return partial(local_ncc, window=config.window_vox)


def make_nmi(config: NMIConfig, context):
    from functools import partial

    from medfeat.engine.similarity import nmi

    return partial(nmi, bins=config.bins, sigma_bins=config.sigma_bins)


class WeightConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    weight: float = Field(1.0, ge=0, description="Multiplier of the penalty.")


def make_regulariser(name: str):
    def factory(config: WeightConfig, context):
        from medfeat.engine import regularisers

        fn = getattr(regularisers, name)

        def penalty(disp, spacing=(1.0, 1.0, 1.0)):
            return config.weight * fn(disp, tuple(spacing))

        penalty.__name__ = name
        return penalty

    return factory
