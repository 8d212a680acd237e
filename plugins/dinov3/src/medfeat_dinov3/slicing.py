"""From a 3D image to a stack of 2D slices and back, with exact geometry.

The volume is first viewed in an LPS-canonical array order (flips and axis permutations only, no
resampling) so that a CT stored RAS and an MR stored LPS give the ViT slices in the same orientation;
the chosen plane's normal becomes array axis 0. Every operation on the array is mirrored on its
:class:`~medfeat.geometry.Grid`, so the features stay placed in world space.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from medfeat.api import GeometryError, Grid

# numpy-order permutation of the canonical (z, y, x) array that puts each plane's normal first, and
# whether the rows (superior-inferior in coronal/sagittal slices) are flipped so the head is on top.
_PLANES = {"axial": ((0, 1, 2), False), "coronal": ((1, 0, 2), True), "sagittal": ((2, 0, 1), True)}


def flip_grid(grid: Grid, axis: int) -> Grid:
    """The grid of ``data.flip(axis)`` (``axis`` in numpy order)."""
    a = grid.ndim - 1 - axis
    index = np.zeros(grid.ndim)
    index[a] = grid.size_ijk[a] - 1
    origin = grid.index_to_world(index)[0]
    direction = grid.direction.copy()
    direction[:, a] *= -1
    return Grid(grid.shape, grid.spacing, tuple(origin), direction)


def permute_grid(grid: Grid, perm: tuple[int, ...]) -> Grid:
    """The grid of ``data.permute(perm)`` (``perm`` in numpy order)."""
    n = grid.ndim
    shape = tuple(grid.shape[p] for p in perm)
    old_itk = [n - 1 - perm[n - 1 - b] for b in range(n)]  # new ITK axis b <- old ITK axis
    spacing = tuple(grid.spacing[a] for a in old_itk)
    direction = grid.direction[:, old_itk]
    return Grid(shape, spacing, grid.origin, direction)


@dataclass(frozen=True)
class SliceView:
    """Flips then a permutation (numpy order) that present a volume as slices of one plane."""

    flips: tuple[int, ...]
    perm: tuple[int, ...]
    row_flip: bool
    grid: Grid

    def apply(self, data: torch.Tensor) -> torch.Tensor:
        """``[*spatial]`` in the image's array order -> ``[slices, rows, columns]``."""
        if self.flips:
            data = data.flip(self.flips)
        data = data.permute(self.perm)
        return data.flip(1) if self.row_flip else data


def slice_view(grid: Grid, plane: str) -> SliceView:
    """The view of ``grid`` whose axis 0 is the normal of the world ``plane``."""
    if grid.ndim != 3:
        raise GeometryError(f"Slice features need a 3D image, got a {grid.ndim}D grid.")
    world_axis = np.abs(grid.direction).argmax(axis=0)  # per ITK axis
    if sorted(world_axis.tolist()) != [0, 1, 2]:
        raise GeometryError(
            f"The image direction is too oblique to tell its planes apart:\n{grid.direction}",
            remedy="Resample the image to an axis-aligned grid first.",
        )
    flips = tuple(
        2 - a for a in range(3) if grid.direction[world_axis[a], a] < 0
    )  # numpy axes to flip
    g = grid
    for axis in flips:
        g = flip_grid(g, axis)
    # canonical numpy axis of world axis w is 2 - w; the image's numpy axis holding it is 2 - a
    to_canonical = tuple(2 - int(np.where(world_axis == w)[0][0]) for w in (2, 1, 0))
    plane_perm, row_flip = _PLANES[plane]
    perm = tuple(to_canonical[p] for p in plane_perm)
    g = permute_grid(g, perm)
    if row_flip:
        g = flip_grid(g, 1)
    return SliceView(flips, perm, row_flip, g)


def patch_grid_shape(
    view_grid: Grid, patch_spacing_mm: float, explicit: tuple[int, int] | None
) -> tuple[int, int]:
    """In-plane token grid: explicit, or the slice extent divided by the patch spacing."""
    if explicit is not None:
        return int(explicit[0]), int(explicit[1])
    sp = view_grid.spacing_array_order
    return tuple(max(1, round(view_grid.shape[i] * sp[i] / patch_spacing_mm)) for i in (1, 2))  # type: ignore[return-value]


def token_grid(view_grid: Grid, patch_grid: tuple[int, int]) -> Grid:
    """World grid of the token centres: same physical box as the slices, patch-sized voxels.

    A slice of ``H`` voxels resized (``align_corners=False``) to ``Hp`` patches of ``P`` pixels puts
    token ``i``'s centre at voxel ``(i + 0.5) * H / Hp - 0.5`` - exactly :meth:`Grid.resized`.
    """
    return view_grid.resized((view_grid.shape[0], *patch_grid))


def slice_plan(num_slices: int, stride: int, first: int = 0, last: int | None = None) -> list[int]:
    """Encoded slice indices: every ``stride``-th from ``first`` and ``last`` itself (default: the
    last slice). Slices outside [first, last] are not encoded."""
    last = num_slices - 1 if last is None else last
    anchors = list(range(first, last + 1, stride))
    if anchors[-1] != last:
        anchors.append(last)
    return anchors


def fill_between(tokens: torch.Tensor, anchors: list[int], num_slices: int) -> torch.Tensor:
    """``[n, C, h, w]`` features of the anchor slices -> ``[C, S, h, w]``, linear in between and
    zero outside the first and last anchors."""
    n, c, h, w = tokens.shape
    out = tokens.new_zeros((c, num_slices, h, w))
    for i, s in enumerate(anchors):
        out[:, s] = tokens[i]
        if i + 1 < len(anchors):
            nxt = anchors[i + 1]
            for t in range(s + 1, nxt):
                weight = (t - s) / (nxt - s)
                out[:, t] = (1 - weight) * tokens[i] + weight * tokens[i + 1]
    return out


def normalise_intensity(volume: torch.Tensor, config) -> tuple[torch.Tensor, str]:
    """Map a volume to [0, 1]: CT window (HU) or MR percentiles. Returns the modality used."""
    x = volume.float()
    modality = config.modality
    if modality == "auto":
        modality = "ct" if float(x.min()) < -500 else "mr"
    if modality == "ct":
        lo = config.ct_window_centre_hu - config.ct_window_width_hu / 2
        return ((x - lo) / config.ct_window_width_hu).clamp(0, 1), modality
    flat = x.flatten()
    sample = flat[:: max(1, flat.numel() // 1_000_000)]
    q = torch.quantile(sample, torch.tensor(config.mr_percentiles, dtype=x.dtype) / 100.0)
    return ((x - q[0]) / (q[1] - q[0]).clamp_min(1e-12)).clamp(0, 1), modality
