"""Reference preprocessing with exact geometry: RAS reorientation, HU window, stretch-resize.

The network sees tensors in MONAI's layout ``[N, C, x, y, z]`` (ITK index order), as the reference
(MONAI ``LoadImage`` + ``Orientation("RAS")``) feeds it. Every tensor here travels with the
:class:`~medfeat.geometry.Grid` that places it in the file's world space, so features computed on
the reoriented, resized volume are mapped back exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from medfeat.api import Grid, Image

#: LPS <-> RAS world coordinates (x and y flip).
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


@dataclass
class NetworkInput:
    """A volume in MONAI layout ``[1, 1, x, y, z]`` and the grid of its voxels (numpy order = z, y, x)."""

    tensor: torch.Tensor
    grid: Grid


def grid_from_index_affine(affine: np.ndarray, size_ijk: tuple[int, ...]) -> Grid:
    """The :class:`Grid` whose ITK continuous index ``(i, j, k, 1)`` maps to LPS mm by ``affine``."""
    lin = np.asarray(affine, dtype=np.float64)[:3, :3]
    spacing = np.linalg.norm(lin, axis=0)
    return Grid(tuple(reversed(size_ijk)), tuple(spacing), tuple(affine[:3, 3]), lin / spacing)


def reorient_to_ras(image: Image) -> tuple[np.ndarray, Grid]:
    """The image in MONAI layout ``(x, y, z)`` with axes along +R, +A, +S, and its grid.

    Uses nibabel's orientation tools on the image's RAS affine: axes are permuted and flipped, no
    interpolation, so the result samples exactly the same world points.
    """
    from nibabel.orientations import apply_orientation, inv_ornt_aff, io_orientation

    grid = image.grid
    arr_ijk = np.transpose(image.numpy(), (2, 1, 0))  # numpy (k, j, i) -> (i, j, k)
    index_to_lps = grid.index_to_world_matrix()
    ornt = io_orientation(LPS_TO_RAS @ index_to_lps)
    out = np.ascontiguousarray(apply_orientation(arr_ijk, ornt))
    new_to_old = inv_ornt_aff(ornt, arr_ijk.shape)
    return out, grid_from_index_affine(index_to_lps @ new_to_old, out.shape)


def ras_axis_of_file_axes(grid: Grid) -> tuple[int, ...]:
    """For each file axis (ITK i, j, k), the axis (x, y, z) of the RAS-reoriented array it becomes."""
    from nibabel.orientations import io_orientation

    ornt = io_orientation(LPS_TO_RAS @ grid.index_to_world_matrix())
    return tuple(int(a) for a in ornt[:, 0])


def spacing_condition(spacing_mm: tuple[float, ...], *, float16: bool = True) -> torch.Tensor:
    """The U-Net's ``spacing_tensor`` ``[1, 3]``: spacing (mm) x 100, float32.

    With ``float16`` the spacing is first rounded to float16, as the reference builds it
    (0.7871 mm -> 0.787109375 mm); the x100 is then applied in float32.
    """
    t = torch.tensor([list(spacing_mm)], dtype=torch.float64)
    t = t.to(torch.float16 if float16 else torch.float32).to(torch.float32)
    return t * 100.0


def round_half_even_multiple(d: int, multiple: int = 128) -> int:
    """``max(round(d / multiple), 1) * multiple`` with Python's round (half to even), as the reference."""
    return max(round(d / multiple), 1) * multiple


def window_intensity(x: torch.Tensor, mode: str, lo: float, hi: float) -> torch.Tensor:
    """``hu``: clip to ``[lo, hi]`` and map to [0, 1]; ``unit``: the data already are in [0, 1]."""
    if mode == "unit":
        return x.clamp(0.0, 1.0)
    return (x.clamp(lo, hi) - lo) / (hi - lo)


def prepare(
    image: Image,
    *,
    intensity: str = "hu",
    window_hu: tuple[float, float] = (-1000.0, 1000.0),
    size_multiple_vox: int = 128,
    device: str | torch.device = "cpu",
) -> tuple[NetworkInput, Grid]:
    """Reorient, window and stretch-resize (trilinear, ``align_corners=False``).

    Returns the network input on the resized grid, and the RAS grid before resizing (whose spacing
    the reference passes to the U-Net).
    """
    arr, ras_grid = reorient_to_ras(image)
    x = torch.from_numpy(arr.astype(np.float32, copy=False)).to(device)[None, None]
    x = window_intensity(x, intensity, *window_hu)
    size = tuple(round_half_even_multiple(d, size_multiple_vox) for d in arr.shape)
    if size != tuple(arr.shape):
        x = F.interpolate(x, size=size, mode="trilinear", align_corners=False)
    return NetworkInput(x, ras_grid.resized(tuple(reversed(size)))), ras_grid


def level_grid(resized: Grid, level_shape_xyz: tuple[int, ...]) -> Grid:
    """Grid of a feature map covering the resized volume's box with ``level_shape_xyz`` cells."""
    return resized.resized(tuple(reversed(level_shape_xyz)))


def to_numpy_order(data_xyz: torch.Tensor) -> torch.Tensor:
    """``[C, x, y, z]`` (MONAI layout) -> ``[C, z, y, x]`` (medfeat's numpy order), contiguous."""
    return data_xyz.permute(0, 3, 2, 1).contiguous()
