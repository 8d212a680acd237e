"""Classical baseline: B-spline free-form deformation with Mattes mutual information (SimpleITK).

NiftyReg-like (reg_f3d): a cubic B-spline control grid, multi-resolution, mutual information,
gradient-based optimisation; an optional affine pre-alignment. Works on intensities, not features.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from medfeat.components import RegistrationResult
from medfeat.geometry import DisplacementField, Grid, Image


class FFDConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    control_point_spacing_mm: float = Field(
        20.0, gt=0, description="B-spline control point spacing at the finest level."
    )
    shrink_factors: list[int] = Field(
        [4, 2, 1], description="Image downsampling per resolution level."
    )
    smoothing_sigmas_vox: list[float] = Field(
        [2.0, 1.0, 0.0], description="Gaussian smoothing per level, in voxels."
    )
    iterations: int = Field(100, ge=1, description="Optimiser iterations per level.")
    histogram_bins: int = Field(32, ge=8)
    sampling_fraction: float = Field(
        0.01,
        gt=0,
        le=1,
        description="Fraction of voxels sampled anew each iteration for the metric.",
    )
    affine_first: bool = Field(True, description="Affine (MI) pre-alignment before the B-spline.")
    compute_inverse: bool = Field(
        True, description="Also return the moving->fixed field (fixed-point inversion)."
    )
    threads: int = Field(0, ge=0, description="ITK threads; 0 = ITK default.")


def _to_sitk(image: Image):
    import SimpleITK as sitk

    img = sitk.GetImageFromArray(image.numpy().astype("float32"))
    img.SetSpacing(image.grid.spacing)
    img.SetOrigin(image.grid.origin)
    img.SetDirection(image.grid.direction.flatten().tolist())
    return img


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

    def _method(self, levels: int):
        import SimpleITK as sitk

        c = self.config
        r = sitk.ImageRegistrationMethod()
        r.SetMetricAsMattesMutualInformation(c.histogram_bins)
        r.SetMetricSamplingStrategy(r.RANDOM)
        r.SetMetricSamplingPercentage(c.sampling_fraction, 42)
        r.SetInterpolator(sitk.sitkLinear)
        r.SetShrinkFactorsPerLevel(c.shrink_factors[:levels])
        r.SetSmoothingSigmasPerLevel(c.smoothing_sigmas_vox[:levels])
        r.SmoothingSigmasAreSpecifiedInPhysicalUnitsOff()
        if c.threads:
            sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(c.threads)
        return r

    def register(
        self, fixed: Image, moving: Image, features_fixed=None, features_moving=None, **_
    ) -> RegistrationResult:
        import numpy as np
        import SimpleITK as sitk

        from medfeat.errors import ConfigError

        c = self.config
        if len(c.shrink_factors) != len(c.smoothing_sigmas_vox):
            raise ConfigError(
                "optimiser sitk-ffd: shrink_factors and smoothing_sigmas_vox need the same length."
            )
        f, m = _to_sitk(fixed), _to_sitk(moving)
        levels = len(c.shrink_factors)
        init = sitk.CenteredTransformInitializer(
            f,
            m,
            sitk.AffineTransform(f.GetDimension()),
            sitk.CenteredTransformInitializerFilter.GEOMETRY,
        )
        if c.affine_first:
            r = self._method(levels)
            r.SetOptimizerAsRegularStepGradientDescent(
                1.0, 1e-4, c.iterations, gradientMagnitudeTolerance=1e-8
            )
            r.SetOptimizerScalesFromPhysicalShift()
            r.SetInitialTransform(init, inPlace=False)
            init = r.Execute(f, m)
        mesh = [
            max(1, int(round(sz * sp / c.control_point_spacing_mm)))
            for sz, sp in zip(f.GetSize(), f.GetSpacing(), strict=True)
        ]
        coarse_mesh = [max(1, n // (2 ** (levels - 1))) for n in mesh]
        bspline = sitk.BSplineTransformInitializer(f, coarse_mesh, order=3)
        r = self._method(levels)
        r.SetMovingInitialTransform(init)
        # the control grid doubles at each finer level, as in NiftyReg
        r.SetInitialTransformAsBSpline(
            bspline, inPlace=True, scaleFactors=[2**i for i in range(levels)]
        )
        r.SetOptimizerAsGradientDescentLineSearch(
            5.0, c.iterations, convergenceMinimumValue=1e-5, convergenceWindowSize=5
        )
        out = r.Execute(f, m)
        composite = sitk.CompositeTransform([init, out]) if c.affine_first else out
        forward = _field_from_transform(composite, fixed.grid, "fixed_to_moving")
        inverse = None
        if c.compute_inverse:
            disp = _to_sitk_vector(forward)
            inv = sitk.InvertDisplacementField(
                disp, maximumNumberOfIterations=20, enforceBoundaryCondition=False
            )
            arr = sitk.GetArrayFromImage(inv)
            # sampled on the fixed grid's box: valid for moving-space points inside it
            inverse = DisplacementField(np.moveaxis(arr, -1, 0), fixed.grid, "moving_to_fixed")
        return RegistrationResult(
            forward, inverse, {"final_metric": float(r.GetMetricValue()), "mesh_size": str(mesh)}
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
    return SitkFFD(config)
