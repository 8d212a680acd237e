"""A chain as one dense displacement field on a grid, and Jacobian determinant maps in mm."""

from __future__ import annotations

import numpy as np

from medfeat.apply.chain import TransformChain
from medfeat.geometry import DisplacementField, Grid, Image

__all__ = ["compose_field", "jacobian_map"]


def compose_field(chain: TransformChain, grid: Grid) -> DisplacementField:
    """The chain's whole point map sampled on ``grid``: ``u(x) = T(x) - x`` in world LPS mm.

    ``grid`` lies in the chain's source space; the field maps ``chain.mapping``. It is sampled
    through SimpleITK, like images, so that applying it pulls an image exactly as the chain does
    (where the chain reaches beyond a field's grid, ITK adds no displacement there).
    """
    import SimpleITK as sitk

    out = sitk.TransformToDisplacementField(
        chain.to_sitk(),
        sitk.sitkVectorFloat64,
        [int(s) for s in grid.size_ijk],
        [float(o) for o in grid.origin],
        [float(s) for s in grid.spacing],
        [float(d) for d in grid.direction.ravel()],
    )
    data = np.moveaxis(sitk.GetArrayFromImage(out), -1, 0)
    return DisplacementField(data, grid, chain.mapping, {"transforms": chain.describe()})


def jacobian_map(chain: TransformChain | DisplacementField, grid: Grid | None = None) -> Image:
    """det(d T / d x) of the chain's point map at every voxel of ``grid`` (world mm), float32.

    A single field is differentiated on its own grid unless another ``grid`` is given; otherwise
    the chain is first sampled as one field on ``grid`` (:func:`compose_field`).
    """
    from medfeat.metrics.jacobian import jacobian_determinant_mm

    field = chain if isinstance(chain, DisplacementField) else None
    if field is None and len(chain.parts) == 1 and isinstance(chain.parts[0], DisplacementField):
        field = chain.parts[0]
    if field is None or (grid is not None and not grid.same_as(field.grid)):
        if grid is None:
            grid = chain.source_grid if isinstance(chain, TransformChain) else None
        from medfeat.apply.grids import output_grid

        grid = output_grid(grid)
        source = (
            chain if isinstance(chain, TransformChain) else TransformChain([chain], chain.mapping)
        )
        field = compose_field(source, grid)
    det = jacobian_determinant_mm(field).astype(np.float32)
    return Image(
        det, field.grid, {"name": "jacobian_determinant", "units": "1 (volume ratio, world mm)"}
    )
