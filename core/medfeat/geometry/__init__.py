"""Physical geometry: grids, images, point sets and displacement fields that never lose their space."""

from medfeat.geometry.field import DisplacementField
from medfeat.geometry.grid import Grid
from medfeat.geometry.image import Image
from medfeat.geometry.points import PointSet

__all__ = ["DisplacementField", "Grid", "Image", "PointSet"]
