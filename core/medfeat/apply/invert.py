"""Invert transforms: fields by the engine's fixed-point iteration, affines exactly."""

from __future__ import annotations

import numpy as np

from medfeat.errors import GeometryError
from medfeat.geometry import DisplacementField
from medfeat.io.transform_files import AffineMap, ItkTransform, TransformPart

__all__ = ["invert_field", "invert_part"]


def _flip(mapping: str | None) -> str | None:
    from medfeat.apply.chain import opposite

    return None if mapping is None else opposite(mapping)


def invert_field(field: DisplacementField, iterations: int = 20) -> DisplacementField:
    """The inverse of ``x -> x + u(x)`` on the same grid, ``v(y) = -u(y + v(y))`` iterated.

    This is the engine's :func:`medfeat.engine.warp.invert_fixed_point` (run in float64); it converges
    where the field does not fold. The result maps the other way (``fixed_to_moving`` becomes
    ``moving_to_fixed``) and, as the engine writes its inverse, lives on the same grid box.
    """
    import torch

    from medfeat.engine.warp import invert_fixed_point

    if field.grid.ndim != 3:
        raise GeometryError(
            f"Inverting a field is implemented for 3D fields; this one is {field.grid.ndim}D.",
            remedy="Use the field of the opposite registration direction instead.",
        )
    if iterations < 1:
        raise GeometryError(
            f"invert_iterations must be at least 1, got {iterations}.", remedy="Use e.g. 20."
        )
    disp = torch.from_numpy(np.ascontiguousarray(field.to_array_voxels()))[None]
    inverse = invert_fixed_point(disp, iterations)[0].numpy()
    out = DisplacementField.from_array_voxels(inverse, field.grid, _flip(field.mapping))
    out.meta.update(field.meta)
    out.meta["inverted"] = f"fixed-point iteration, {iterations} iterations"
    return out


def invert_part(part: TransformPart, iterations: int = 20) -> TransformPart:
    """The inverse of one part of a chain (fields: :func:`invert_field`; affines: exactly)."""
    if isinstance(part, DisplacementField):
        return invert_field(part, iterations)
    if isinstance(part, AffineMap):
        try:
            inverse = np.linalg.inv(part.matrix)
        except np.linalg.LinAlgError:
            raise GeometryError(
                f"The affine transform {part.meta.get('path', '')} is singular and has no inverse.",
                remedy="Check the transform file.",
            ) from None
        return AffineMap(inverse, _flip(part.mapping), {**part.meta, "inverted": "exact"})
    try:
        inverse = part.transform.GetInverse()
    except RuntimeError:
        raise GeometryError(
            f"The {part.meta.get('itk_class', 'ITK')} transform {part.meta.get('path', '')} has no "
            "closed-form inverse.",
            remedy="Write it as a displacement field first (medfeat apply --transform FILE "
            "--write-field field.nii.gz --reference IMAGE), then --invert that field.",
        ) from None
    return ItkTransform(inverse, part.ndim, _flip(part.mapping), {**part.meta, "inverted": "ITK"})
