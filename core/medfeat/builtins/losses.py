"""Built-in similarity measures and regularisers: thin wrappers over :mod:`medfeat.engine`.

Each factory returns a callable that also carries its registered ``name`` and options, so an
optimiser with metrics of its own (sitk-ffd) can translate it, and results can say what was used.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator


class NoConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LocalNCCConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    window_vox: int = Field(9, ge=3, description="Side of the cubic window.")

    @field_validator("window_vox")
    @classmethod
    def _odd(cls, value: int) -> int:
        if value % 2 != 1:
            raise ValueError(
                f"window_vox must be odd (the window is centred on a voxel), got {value}"
            )
        return value


class NMIConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    bins: int = Field(32, ge=4, description="Histogram bins per image (count).")
    sigma_bins: float = Field(0.5, gt=0, description="Parzen window width in bins.")


@dataclass(frozen=True, eq=False)
class SimilarityMeasure:
    """A registered similarity ``f(a, b, mask=None)``, with its name and options."""

    name: str
    config: BaseModel
    function: Callable[..., Any]

    def __call__(self, a, b, mask=None):
        return self.function(a, b, mask)


def make_similarity(name: str):
    """Factory for the option-free engine similarity ``name`` (registered with dashes)."""

    def factory(config, context) -> SimilarityMeasure:
        from medfeat.engine import similarity

        return SimilarityMeasure(name.replace("_", "-"), config, getattr(similarity, name))

    return factory


def make_local_ncc(config: LocalNCCConfig, context) -> SimilarityMeasure:
    from functools import partial

    from medfeat.engine.similarity import local_ncc

    return SimilarityMeasure("local-ncc", config, partial(local_ncc, window=config.window_vox))


def make_nmi(config: NMIConfig, context) -> SimilarityMeasure:
    from functools import partial

    from medfeat.engine.similarity import nmi

    fn = partial(nmi, bins=config.bins, sigma_bins=config.sigma_bins)
    return SimilarityMeasure("nmi", config, fn)


class WeightConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    weight: float = Field(1.0, ge=0, description="Multiplier of the penalty.")


@dataclass(frozen=True, eq=False)
class Penalty:
    """A registered regulariser: ``weight * f(disp_vox, spacing_mm)`` with its name."""

    name: str
    weight: float
    function: Callable[..., Any]

    def __call__(self, disp, spacing: Sequence[float] = (1.0, 1.0, 1.0)):
        return self.weight * self.function(disp, tuple(float(s) for s in spacing))


def make_regulariser(name: str):
    """Factory for the engine regulariser ``name`` (registered with dashes), weighted."""

    def factory(config: WeightConfig, context) -> Penalty:
        from medfeat.engine import regularisers

        return Penalty(name.replace("_", "-"), config.weight, getattr(regularisers, name))

    return factory
