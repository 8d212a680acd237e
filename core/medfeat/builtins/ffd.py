"""Classical baseline: B-spline free-form deformation with SimpleITK's metrics.

NiftyReg-like (reg_f3d): an affine pre-alignment, then cubic B-spline control grids from coarse to
fine, the metric restricted to the fixed mask (e.g. the lungs), gradient-based optimisation.
Works on intensities, not features. The metric is Mattes mutual information unless the pipeline
gives a `similarity` that SimpleITK has (:data:`SITK_METRICS`); SimpleITK has no penalty on the
B-spline, so a `regulariser` is refused (optimiser `adam` takes any similarity and regulariser).

Each B-spline level is its own SimpleITK registration: a fresh B-spline grid at that level's
control point spacing, optimised on that level's image pyramid step on top of everything found
before (affine, then the coarser grids), so iterations, sampling and spacing are set per level.

local-ncc's window_mm becomes ANTS neighbourhood correlation's radius. SimpleITK takes one radius
(an unsigned int) for all axes, not a vector, so the window is the nearest odd number of voxels
(at least 3) of the geometric-mean voxel size of the grid the metric works on: the fixed image's
spacing times the registration's shrink factor (the finest one of the multi-level affine).

Cost: ITK's v4 metric derivative for a B-spline transform is dense, about (control points) x
(samples) per evaluation, so fine grids are expensive; the metric samples a fixed number of
voxels (inside the mask) and each grid covers only the mask's box plus a margin.
"""

from __future__ import annotations

import math
import time

from pydantic import BaseModel, ConfigDict, Field, model_validator

from medfeat.components import RegistrationResult
from medfeat.errors import ConfigError
from medfeat.geometry import DisplacementField, Grid, Image

#: pipeline similarity -> the SimpleITK metric used for it (with the similarity's options)
SITK_METRICS = {
    "ssd": "MeanSquares",
    "ncc": "Correlation",
    "local-ncc": "ANTSNeighborhoodCorrelation (radius from window_mm, see :func:`lncc_radius`)",
    "nmi": "MattesMutualInformation (its bins)",
}


class FFDConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    control_point_spacing_mm: list[float] = Field(
        [40.0, 20.0],
        min_length=1,
        description="B-spline control point spacing per level, coarse to fine (mm). Each level "
        "optimises a new grid on top of the previous levels.",
    )
    shrink_factors: list[int] = Field(
        [2, 1], description="Image downsampling factor per B-spline level (voxels)."
    )
    smoothing_sigmas_mm: list[float] = Field(
        [2.0, 0.0], description="Gaussian smoothing per B-spline level (standard deviation, mm)."
    )
    iterations_per_level: list[int] = Field(
        [100, 60],
        description="L-BFGS-B iterations per B-spline level (at most; at most twice as many "
        "metric evaluations).",
    )
    metric_samples: int = Field(
        10000,
        ge=1000,
        description="Voxels sampled (once per level, inside the fixed mask when one is used) "
        "for the metric; all voxels if the level has fewer.",
    )
    histogram_bins: int = Field(
        32,
        ge=8,
        description="Mattes mutual information histogram bins, when the pipeline gives no "
        "`similarity` (`nmi` brings its own bins).",
    )
    use_fixed_mask: bool = Field(
        True,
        description="Evaluate the metric only inside the pipeline's fixed mask (set `fixed_mask: "
        "auto-lung` in the pipeline for lung CT) when one is given; ignored when there is none.",
    )
    affine_first: bool = Field(True, description="Affine (MI) pre-alignment before the B-spline.")
    affine_iterations: int = Field(100, ge=1, description="Affine iterations per affine level.")
    affine_shrink_factors: list[int] = Field(
        [4, 2], description="Image downsampling per affine level (voxels)."
    )
    affine_smoothing_sigmas_mm: list[float] = Field(
        [4.0, 2.0], description="Gaussian smoothing per affine level (standard deviation, mm)."
    )
    compute_inverse: bool = Field(
        True, description="Also return the moving->fixed field (fixed-point inversion)."
    )
    inverse_iterations: int = Field(
        20, ge=1, description="Fixed-point iterations of the field inversion."
    )
    threads: int = Field(0, ge=0, description="ITK threads; 0 = ITK default.")

    @model_validator(mode="after")
    def _check_lengths(self) -> FFDConfig:
        n = len(self.control_point_spacing_mm)
        per_level = {
            "shrink_factors": self.shrink_factors,
            "smoothing_sigmas_mm": self.smoothing_sigmas_mm,
            "iterations_per_level": self.iterations_per_level,
        }
        wrong = {k: len(v) for k, v in per_level.items() if len(v) != n}
        if wrong:
            got = ", ".join(f"{k} has {v}" for k, v in wrong.items())
            raise ValueError(
                f"sitk-ffd needs one entry per B-spline level in shrink_factors, "
                f"smoothing_sigmas_mm and iterations_per_level: control_point_spacing_mm has "
                f"{n} level(s) but {got}"
            )
        if len(self.affine_shrink_factors) != len(self.affine_smoothing_sigmas_mm):
            raise ValueError(
                f"sitk-ffd: affine_shrink_factors has {len(self.affine_shrink_factors)} level(s) "
                f"but affine_smoothing_sigmas_mm has {len(self.affine_smoothing_sigmas_mm)}; "
                "give one entry per affine level in both"
            )
        for name in ("control_point_spacing_mm", "smoothing_sigmas_mm"):
            if any(
                v < 0 or (name == "control_point_spacing_mm" and v == 0)
                for v in getattr(self, name)
            ):
                raise ValueError(f"sitk-ffd: every {name} entry must be positive")
        for name in ("shrink_factors", "iterations_per_level", "affine_shrink_factors"):
            if any(v < 1 for v in getattr(self, name)):
                raise ValueError(f"sitk-ffd: every {name} entry must be at least 1")
        if any(v < 0 for v in self.affine_smoothing_sigmas_mm):
            raise ValueError("sitk-ffd: every affine_smoothing_sigmas_mm entry must be >= 0")
        return self


def _to_sitk(image: Image, dtype: str = "float32"):
    import SimpleITK as sitk

    img = sitk.GetImageFromArray(image.numpy().astype(dtype))
    img.SetSpacing(image.grid.spacing)
    img.SetOrigin(image.grid.origin)
    img.SetDirection(image.grid.direction.flatten().tolist())
    return img


def _domain(image, bbox, spacing_mm: float):
    """The B-spline's domain: the mask's box grown by three control spacings.

    ITK's B-spline metric derivative is dense (its cost grows with the number of control points
    times the number of samples), so control points that no masked sample can move are left out.
    Outside its domain a B-spline displaces nothing; with a three-spacing margin the control points
    that shape the domain's faces reach no masked sample, get no gradient and stay zero, so the
    displacement stays continuous across the faces.
    """
    if bbox is None:
        return image
    lo, hi = [], []
    for a, b, n, sp in zip(*bbox, image.GetSize(), image.GetSpacing(), strict=True):
        margin = int(math.ceil(3 * spacing_mm / sp))
        lo.append(max(0, a - margin))
        hi.append(min(n - 1, b + margin))
    return image[lo[0] : hi[0] + 1, lo[1] : hi[1] + 1, lo[2] : hi[2] + 1]


def _field_from_transform(transform, grid: Grid, direction: str) -> DisplacementField:
    import numpy as np
    import SimpleITK as sitk

    f = sitk.TransformToDisplacementFieldFilter()
    f.SetReferenceImage(_to_sitk(Image(np.zeros(grid.shape, "float32"), grid)))
    f.SetOutputPixelType(sitk.sitkVectorFloat64)
    arr = sitk.GetArrayFromImage(f.Execute(transform))  # [*shape, ndim] world LPS mm
    return DisplacementField(np.moveaxis(arr, -1, 0), grid, direction)


class SitkFFD:
    def __init__(self, config: FFDConfig, progress=None) -> None:
        self.config, self.progress = config, progress

    def _method(
        self,
        metric,
        mask,
        mask_voxels: int | None,
        shrink: list[int],
        sigmas: list[float],
        size,
        spacing: tuple[float, ...],
    ):
        import SimpleITK as sitk

        c = self.config
        r = sitk.ImageRegistrationMethod()
        metric(r, tuple(s * shrink[-1] for s in spacing))
        # ITK draws the sample once per level over the shrunk fixed image and keeps the points
        # inside the mask: the percentage is relative to the (masked) voxels of each level.
        whole = math.prod(size)
        inside = whole if mask_voxels is None else mask_voxels
        r.SetMetricSamplingStrategy(r.RANDOM)
        r.SetMetricSamplingPercentagePerLevel(
            [min(1.0, c.metric_samples * s ** len(size) / max(inside, 1)) for s in shrink], 42
        )
        if mask is not None:
            r.SetMetricFixedMask(mask)
        r.SetInterpolator(sitk.sitkLinear)
        r.SetShrinkFactorsPerLevel(shrink)
        r.SetSmoothingSigmasPerLevel(sigmas)
        r.SmoothingSigmasAreSpecifiedInPhysicalUnitsOn()
        return r

    def _report_iterations(self, method, step: str, iterations: int) -> None:
        """Report ``method``'s optimiser iterations as the fraction of ``iterations`` done."""
        if self.progress is None or iterations <= 0:
            return
        import SimpleITK as sitk

        report = self.progress
        method.AddCommand(
            sitk.sitkIterationEvent,
            lambda: report(step, min(1.0, method.GetOptimizerIteration() / iterations)),
        )

    def register(
        self,
        fixed: Image,
        moving: Image,
        features_fixed=None,
        features_moving=None,
        *,
        similarity=None,
        regulariser=None,
        fixed_mask: Image | None = None,
    ) -> RegistrationResult:
        import numpy as np
        import SimpleITK as sitk

        c = self.config
        label, metric = _sitk_metric(similarity, c.histogram_bins)
        if regulariser is not None:
            raise ConfigError(
                f"optimiser sitk-ffd cannot use regulariser "
                f"{getattr(regulariser, 'name', regulariser)!r}: SimpleITK has no penalty on the "
                "B-spline (its smoothness comes from the control point spacing).",
                remedy="Remove `regulariser` and tune control_point_spacing_mm, or use optimiser "
                "`adam`, which takes any regulariser.",
            )
        if c.threads:
            sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(c.threads)
        f, m = _to_sitk(fixed), _to_sitk(moving)
        mask, mask_voxels = None, None
        if c.use_fixed_mask and fixed_mask is not None:
            if fixed_mask.grid.shape != fixed.grid.shape:
                raise ConfigError(
                    f"optimiser sitk-ffd: the fixed mask's grid {fixed_mask.grid.shape} differs "
                    f"from the fixed image's {fixed.grid.shape}.",
                    remedy="Give a mask on the fixed image's grid, or use_fixed_mask: false.",
                )
            mask_voxels = int(np.count_nonzero(fixed_mask.numpy()))
            if mask_voxels > 0:
                mask = _to_sitk(
                    Image((fixed_mask.numpy() > 0).astype("uint8"), fixed.grid), "uint8"
                )
            else:
                mask_voxels = None
        size = f.GetSize()

        transform = sitk.CompositeTransform(f.GetDimension())
        info: dict = {}
        t0 = time.perf_counter()
        if c.affine_first:
            init = sitk.CenteredTransformInitializer(
                f,
                m,
                sitk.AffineTransform(f.GetDimension()),
                sitk.CenteredTransformInitializerFilter.GEOMETRY,
            )
            r = self._method(
                metric,
                mask,
                mask_voxels,
                c.affine_shrink_factors,
                c.affine_smoothing_sigmas_mm,
                size,
                f.GetSpacing(),
            )
            r.SetOptimizerAsRegularStepGradientDescent(
                1.0, 1e-4, c.affine_iterations, gradientMagnitudeTolerance=1e-8
            )
            r.SetOptimizerScalesFromPhysicalShift()
            r.SetInitialTransform(init, inPlace=True)
            self._report_iterations(r, "affine", c.affine_iterations)
            r.Execute(f, m)
            transform.AddTransform(init)
            info["affine"] = f"{label} {r.GetMetricValue():.4f}, {time.perf_counter() - t0:.0f} s"

        bbox = None
        if mask is not None:  # sitk index order (x, y, z), inclusive
            nz = np.argwhere(fixed_mask.numpy() > 0)
            bbox = (nz.min(0)[::-1].tolist(), nz.max(0)[::-1].tolist())
        meshes, value = [], float("nan")
        levels = len(c.control_point_spacing_mm)
        for spacing_mm, shrink, sigma, iterations in zip(
            c.control_point_spacing_mm,
            c.shrink_factors,
            c.smoothing_sigmas_mm,
            c.iterations_per_level,
            strict=True,
        ):
            domain = _domain(f, bbox, spacing_mm)
            mesh = [
                max(1, int(round(sz * sp / spacing_mm)))
                for sz, sp in zip(domain.GetSize(), domain.GetSpacing(), strict=True)
            ]
            bspline = sitk.BSplineTransformInitializer(domain, mesh, order=3)
            r = self._method(metric, mask, mask_voxels, [shrink], [sigma], size, f.GetSpacing())
            # ITK cannot chain the metric gradient through a B-spline in the moving initial
            # transform (no Jacobian w.r.t. position), so warp the moving image by what was found
            # so far and register the fixed image to that: one interpolation of the original.
            warped = m
            if transform.GetNumberOfTransforms():
                warped = sitk.Resample(m, f, transform, sitk.sitkLinear, 0.0, sitk.sitkFloat32)
            r.SetInitialTransform(bspline, inPlace=True)
            # unbounded L-BFGS-B on unit scales (it ignores optimiser scales): the parameters are
            # control point displacements in mm, all alike
            r.SetOptimizerAsLBFGSB(
                gradientConvergenceTolerance=1e-9,
                numberOfIterations=iterations,
                maximumNumberOfCorrections=5,
                maximumNumberOfFunctionEvaluations=2 * iterations,
                costFunctionConvergenceFactor=1e7,
            )
            self._report_iterations(r, f"level {len(meshes) + 1}/{levels}", iterations)
            r.Execute(f, warped)
            value = float(r.GetMetricValue())
            transform.AddTransform(bspline)
            meshes.append(mesh)
            info[f"level_{len(meshes)}"] = (
                f"mesh {mesh}, {r.GetOptimizerIteration()} it, {label} {value:.4f}, "
                f"{time.perf_counter() - t0:.0f} s: "
                f"{r.GetOptimizerStopConditionDescription()}"
            )

        forward = _field_from_transform(transform, fixed.grid, "fixed_to_moving")
        inverse = None
        if c.compute_inverse:
            disp = _to_sitk_vector(forward)
            inv = sitk.InvertDisplacementField(
                disp, maximumNumberOfIterations=c.inverse_iterations, enforceBoundaryCondition=False
            )
            arr = sitk.GetArrayFromImage(inv)
            # sampled on the fixed grid's box: valid for moving-space points inside it
            inverse = DisplacementField(np.moveaxis(arr, -1, 0), fixed.grid, "moving_to_fixed")
        info.update(
            final_metric=value,
            metric=label,
            mesh_size=str(meshes[-1]),
            masked_metric=mask is not None,
        )
        if label == "LNCC":  # the radius of each SimpleITK registration (affine first)
            shrinks = ([c.affine_shrink_factors[-1]] if c.affine_first else []) + c.shrink_factors
            window = similarity.config.window_mm
            info["lncc_radius_vox"] = str(
                [lncc_radius(window, [s * k for s in f.GetSpacing()]) for k in shrinks]
            )
        return RegistrationResult(forward, inverse, info)


def lncc_radius(window_mm: float, spacing_mm) -> int:
    """ANTS neighbourhood radius (voxels, all axes) of a ``window_mm`` window: half the nearest
    odd number of voxels, at least 3, of the geometric-mean voxel size (SimpleITK takes one
    radius, not one per axis)."""
    from medfeat.builtins.losses import window_voxels

    mean = math.prod(spacing_mm) ** (1.0 / len(spacing_mm))
    return window_voxels(window_mm, (mean,))[0] // 2


def _sitk_metric(similarity, histogram_bins: int):
    """``(label, set_metric(method, spacing_mm))`` for the pipeline's similarity: Mattes MI when
    there is none. ``spacing_mm`` is the voxel size of the grid the metric works on."""
    if similarity is None:
        return "MI", lambda r, _: r.SetMetricAsMattesMutualInformation(histogram_bins)
    name, options = getattr(similarity, "name", None), getattr(similarity, "config", None)
    if name == "ssd":
        return "MSE", lambda r, _: r.SetMetricAsMeanSquares()
    if name == "ncc":
        return "NCC", lambda r, _: r.SetMetricAsCorrelation()
    if name == "local-ncc":
        return "LNCC", lambda r, spacing: r.SetMetricAsANTSNeighborhoodCorrelation(
            lncc_radius(options.window_mm, spacing)
        )
    if name == "nmi":
        return "MI", lambda r, _: r.SetMetricAsMattesMutualInformation(options.bins)
    raise ConfigError(
        f"optimiser sitk-ffd cannot use similarity {name or similarity!r}: SimpleITK has no such "
        f"metric (it takes {', '.join(SITK_METRICS)}).",
        remedy=f"Use similarity {', '.join(SITK_METRICS)} with sitk-ffd, or optimiser `adam`, "
        "which takes any similarity.",
    )


def _to_sitk_vector(field: DisplacementField):
    import numpy as np
    import SimpleITK as sitk

    img = sitk.GetImageFromArray(np.moveaxis(field.numpy(), 0, -1), isVector=True)
    img.SetSpacing(field.grid.spacing)
    img.SetOrigin(field.grid.origin)
    img.SetDirection(field.grid.direction.flatten().tolist())
    return img


def make_sitk_ffd(config: FFDConfig, context) -> SitkFFD:
    progress = getattr(context, "progress", None)
    return SitkFFD(config, progress.callback("B-spline") if progress is not None else None)
