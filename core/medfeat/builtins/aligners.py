"""Built-in pre-alignments (kind ``aligner``): centroid matching and a rigid/affine fit.

Each returns a 4x4 world matrix (LPS mm) that maps a fixed point ``x`` to the moving point
``A @ x`` (the direction of the fixed->moving field); the registration pipeline runs them in
order, each starting from the previous result, and the deformable optimiser then works on the
moving image resampled through the last one. The written fields include it.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field, model_validator

from medfeat.config.base import ConfigModel
from medfeat.geometry import Image

__all__ = ["AffineConfig", "AffineFit", "CentroidsConfig", "Centroids", "centroid_mm"]


class CentroidsConfig(ConfigModel):
    """Options of the `centroids` pre-alignment."""

    of: Literal["body", "image", "masks", "image-centres"] = Field(
        "body",
        description="What is centred: `body` (the automatic body masks, Otsu threshold), `image` "
        "(intensity-weighted centroids, above each image's minimum), `masks` (the pipeline's "
        "fixed and moving masks; the body masks where one is missing) or `image-centres` (the "
        "centres of the two grids).",
    )


def centroid_mm(image: Image, of: str, mask: Image | None = None) -> np.ndarray:
    """World position (LPS mm) of the centre of ``image`` as ``of`` says (see
    :class:`CentroidsConfig`); the grid centre when the weights are all zero."""
    from medfeat.masks import body_mask

    grid = image.grid
    centre = grid.array_index_to_world((np.asarray(grid.shape) - 1) / 2.0)[0]
    if of == "image-centres":
        return centre
    if of == "masks" and mask is not None:
        weights = mask.numpy() > 0
        grid = mask.grid
    elif of == "image":
        arr = image.numpy().astype(np.float64)
        weights = arr - arr.min()
    else:
        weights = body_mask(image)
    weights = np.asarray(weights, dtype=np.float64)
    total = weights.sum()
    if total <= 0:
        return centre
    idx = [
        float((weights.sum(axis=tuple(b for b in range(3) if b != a)) * np.arange(n)).sum()) / total
        for a, n in enumerate(weights.shape)
    ]
    return grid.array_index_to_world(np.asarray(idx))[0]


class Centroids:
    """Translate so that the fixed centre maps onto the moving centre (keeps the linear part of
    the alignment so far)."""

    def __init__(self, config: CentroidsConfig) -> None:
        self.config = config

    def align(
        self,
        fixed: Image,
        moving: Image,
        *,
        initial: np.ndarray,
        fixed_mask: Image | None = None,
        moving_mask: Image | None = None,
    ) -> np.ndarray:
        of = self.config.of
        cf = centroid_mm(fixed, of, fixed_mask)
        cm = centroid_mm(moving, of, moving_mask)
        out = np.array(initial, dtype=np.float64)
        out[:3, 3] = cm - out[:3, :3] @ cf
        return out


def make_centroids(config: CentroidsConfig, context) -> Centroids:
    return Centroids(config)


class AffineConfig(ConfigModel):
    """Options of the `affine` pre-alignment (SimpleITK, from the alignment so far)."""

    transform: Literal["rigid", "affine"] = Field(
        "affine", description="`rigid` (rotation + translation) or `affine` (12 parameters)."
    )
    metric: Literal["mi", "ncc"] = Field(
        "mi",
        description="`mi` (Mattes mutual information, any modalities) or `ncc` (correlation, "
        "same modality).",
    )
    shrink_factors: list[int] = Field(
        [4, 2],
        min_length=1,
        description="Image downsampling per level, coarse to fine (whole voxels, >= 1).",
    )
    smoothing_sigmas_mm: list[float] = Field(
        [4.0, 2.0], min_length=1, description="Gaussian smoothing per level (mm, >= 0)."
    )
    iterations: int = Field(
        100, ge=1, le=10_000, strict=True, description="Optimiser steps per level (count)."
    )
    samples: int = Field(
        20_000,
        ge=1000,
        le=10_000_000,
        strict=True,
        description="Voxels sampled for the metric per level (count).",
    )
    histogram_bins: int = Field(
        32, ge=8, le=256, strict=True, description="Bins of the mutual information (count)."
    )
    use_masks: bool = Field(
        True, description="Evaluate the metric inside the pipeline's fixed and moving masks."
    )
    max_step_mm: float = Field(
        2.0,
        gt=0,
        le=50,
        allow_inf_nan=False,
        description="Largest step of the gradient descent (mm of voxel displacement).",
    )

    @model_validator(mode="after")
    def _levels(self) -> AffineConfig:
        if len(self.shrink_factors) != len(self.smoothing_sigmas_mm):
            raise ValueError(
                f"affine: shrink_factors has {len(self.shrink_factors)} level(s) but "
                f"smoothing_sigmas_mm has {len(self.smoothing_sigmas_mm)}; give one entry per "
                "level in both"
            )
        if any(f < 1 for f in self.shrink_factors):
            raise ValueError("affine: every shrink_factors entry must be at least 1")
        if any(not (0 <= s <= 50) for s in self.smoothing_sigmas_mm):
            raise ValueError("affine: every smoothing_sigmas_mm entry must be between 0 and 50")
        return self


def _sitk(image: Image, dtype=np.float32):
    from medfeat.io.sitk_bridge import image_to_sitk

    return image_to_sitk(Image(image.numpy().astype(dtype), image.grid))


class AffineFit:
    """A rigid or affine fit of the moving image to the fixed one by MI or NCC (SimpleITK)."""

    def __init__(self, config: AffineConfig, seed: int = 0) -> None:
        self.config, self.seed = config, seed

    def align(
        self,
        fixed: Image,
        moving: Image,
        *,
        initial: np.ndarray,
        fixed_mask: Image | None = None,
        moving_mask: Image | None = None,
    ) -> np.ndarray:
        import SimpleITK as sitk

        c = self.config
        initial = np.asarray(initial, dtype=np.float64)
        grid = fixed.grid
        centre = grid.array_index_to_world((np.asarray(grid.shape) - 1) / 2.0)[0]
        lin = initial[:3, :3]
        if c.transform == "rigid":
            tx = sitk.Euler3DTransform()
            tx.SetCenter(centre.tolist())
            u, _, vt = np.linalg.svd(lin)  # nearest rotation to the linear part so far
            tx.SetMatrix((u @ vt).flatten().tolist())
            lin = u @ vt
        else:
            tx = sitk.AffineTransform(3)
            tx.SetCenter(centre.tolist())
            tx.SetMatrix(lin.flatten().tolist())
        tx.SetTranslation((initial[:3, 3] - centre + lin @ centre).tolist())

        r = sitk.ImageRegistrationMethod()
        if c.metric == "mi":
            r.SetMetricAsMattesMutualInformation(c.histogram_bins)
        else:
            r.SetMetricAsCorrelation()
        inside = grid.num_voxels
        if c.use_masks and fixed_mask is not None and (fixed_mask.numpy() > 0).any():
            r.SetMetricFixedMask(_sitk(fixed_mask, np.uint8) > 0)
            inside = int((fixed_mask.numpy() > 0).sum())
        if c.use_masks and moving_mask is not None and (moving_mask.numpy() > 0).any():
            r.SetMetricMovingMask(_sitk(moving_mask, np.uint8) > 0)
        r.SetMetricSamplingStrategy(r.RANDOM)
        r.SetMetricSamplingPercentagePerLevel(
            [min(1.0, c.samples * f**3 / max(inside, 1)) for f in c.shrink_factors],
            int(self.seed) % (2**31 - 1) + 1,
        )
        r.SetInterpolator(sitk.sitkLinear)
        r.SetOptimizerAsRegularStepGradientDescent(
            learningRate=c.max_step_mm,
            minStep=1e-3,
            numberOfIterations=c.iterations,
            relaxationFactor=0.5,
            gradientMagnitudeTolerance=1e-8,
        )
        r.SetOptimizerScalesFromPhysicalShift()
        r.SetShrinkFactorsPerLevel(c.shrink_factors)
        r.SetSmoothingSigmasPerLevel(c.smoothing_sigmas_mm)
        r.SmoothingSigmasAreSpecifiedInPhysicalUnitsOn()
        r.SetInitialTransform(tx, inPlace=True)
        r.Execute(_sitk(fixed), _sitk(moving))
        out = np.eye(4)
        m = np.asarray(tx.GetMatrix()).reshape(3, 3)
        ctr = np.asarray(tx.GetCenter())
        out[:3, :3] = m
        out[:3, 3] = np.asarray(tx.GetTranslation()) + ctr - m @ ctr
        return out


def make_affine(config: AffineConfig, context) -> AffineFit:
    return AffineFit(config, getattr(context, "seed", 0))
