"""Built-in similarity measures and regularisers: thin wrappers over :mod:`medfeat.engine`.

Each factory returns a callable that also carries its registered ``name`` and options, so an
optimiser with metrics of its own (sitk-ffd) can translate it, and results can say what was used.
Options are in mm; a similarity with lengths (local-ncc) is bound to each grid's voxel size by the
optimiser through :meth:`SimilarityMeasure.for_spacing`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator


class NoConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LocalNCCConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    window_mm: float = Field(
        9.0,
        gt=0,
        le=1e4,
        description="Side of the window (mm). It becomes the nearest odd number of voxels, at "
        "least 3, per axis of the grid the optimiser works on (each level of adam; sitk-ffd: "
        "see that optimiser), so anisotropic grids get a window of the same mm extent per axis.",
    )

    @model_validator(mode="before")
    @classmethod
    def _no_window_vox(cls, data: Any) -> Any:
        if isinstance(data, dict) and "window_vox" in data:
            raise ValueError(
                f"local-ncc no longer takes window_vox (got {data['window_vox']!r}): the window is "
                "given in mm as window_mm, and becomes the nearest odd number of voxels (at least "
                "3) per axis of each grid the optimiser works on. Replace window_vox by window_mm, "
                "the side in mm (the old voxel count times the voxel size, e.g. window_vox: 7 on "
                "a 3 mm grid is window_mm: 21.0)"
            )
        return data


def window_voxels(window_mm: float, spacing_mm: Sequence[float]) -> tuple[int, ...]:
    """Per axis, the odd number of voxels of ``spacing_mm`` nearest to ``window_mm``, at least 3
    (an exact tie between two odd numbers goes to the larger)."""
    sides = []
    for s in spacing_mm:
        if not s > 0:
            raise ValueError(f"voxel spacing must be positive, got {tuple(spacing_mm)}")
        half = math.floor((window_mm / s - 1.0) / 2.0 + 0.5 + 1e-9)
        sides.append(max(3, 2 * half + 1))
    return tuple(sides)


class NMIConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    bins: int = Field(32, ge=4, description="Histogram bins per image (count).")
    sigma_bins: float = Field(0.5, gt=0, description="Parzen window width in bins.")


@dataclass(frozen=True, eq=False)
class SimilarityMeasure:
    """A registered similarity ``f(a, b, mask=None)``, with its name and options.

    A measure with lengths in mm (local-ncc's window) needs the voxel size of the tensors it
    compares: an optimiser calls :meth:`for_spacing` with it for each grid it works on.
    """

    name: str
    config: BaseModel
    function: Callable[..., Any]
    #: spacing (mm, tensor axis order) -> (the function on that grid, what it became there, e.g.
    #: "window 3x5x7 vox"); None: no lengths to convert
    on_grid: Callable[[tuple[float, ...]], tuple[Callable[..., Any], str]] | None = None
    spacing_mm: tuple[float, ...] | None = None
    detail: str = ""

    def __call__(self, a, b, mask=None):
        return self.function(a, b, mask)

    def for_spacing(self, spacing_mm: Sequence[float]) -> SimilarityMeasure:
        """This measure on tensors whose voxels are ``spacing_mm`` along their spatial axes (in
        tensor order, e.g. ``(D, H, W)``); itself when it has no lengths in mm."""
        if self.on_grid is None:
            return self
        spacing = tuple(float(s) for s in spacing_mm)
        function, detail = self.on_grid(spacing)
        return replace(self, function=function, spacing_mm=spacing, detail=detail)


def make_similarity(name: str):
    """Factory for the option-free engine similarity ``name`` (registered with dashes)."""

    def factory(config, context) -> SimilarityMeasure:
        from medfeat.engine import similarity

        return SimilarityMeasure(name.replace("_", "-"), config, getattr(similarity, name))

    return factory


def make_local_ncc(config: LocalNCCConfig, context) -> SimilarityMeasure:
    from functools import partial

    from medfeat.engine.similarity import local_ncc

    def on_grid(spacing_mm: tuple[float, ...]):
        window = window_voxels(config.window_mm, spacing_mm)
        return partial(local_ncc, window=window), f"window {'x'.join(map(str, window))} vox"

    def unbound(a, b, mask=None):
        from medfeat.errors import ConfigError

        raise ConfigError(
            "similarity local-ncc was used by an optimiser that did not tell it the voxel size "
            "of its grid, so its window_mm cannot be converted to voxels.",
            remedy="Use local-ncc with optimiser adam or sitk-ffd, or pick a similarity without "
            "a window (ssd, ncc, nmi) for this optimiser.",
        )

    return SimilarityMeasure("local-ncc", config, unbound, on_grid)


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
