"""Re-storing an image in another array orientation without changing its world geometry.

The voxels are only transposed and flipped (no interpolation); spacing, origin and direction
are rewritten so that every voxel keeps its world position (LPS mm). The four storages of the
orientation check:

* ``as-is``: unchanged;
* ``flipped``: two numpy axes reversed (right-handed, a 180 degree turn of the index frame);
* ``permuted``: numpy axes cycled and two of them reversed (right-handed);
* ``left-handed``: two numpy axes swapped and two reversed (the direction matrix's determinant
  changes sign).
"""

from __future__ import annotations

import numpy as np

from medfeat.geometry import Grid, Image

__all__ = ["ORIENTATIONS", "array_index_map", "handedness", "restore", "restore_as"]

#: name -> (numpy axis permutation, numpy axes of the permuted array that are reversed)
ORIENTATIONS: dict[str, tuple[tuple[int, int, int], tuple[int, ...]]] = {
    "as-is": ((0, 1, 2), ()),
    "flipped": ((0, 1, 2), (1, 2)),
    "permuted": ((2, 0, 1), (0, 2)),
    "left-handed": ((0, 2, 1), (0, 1)),
}


def array_index_map(
    perm: tuple[int, ...], flips: tuple[int, ...], new_shape: tuple[int, ...]
) -> np.ndarray:
    """Homogeneous ``4x4`` matrix: numpy index of the re-stored array -> numpy index of the original."""
    q = np.zeros((4, 4))
    q[3, 3] = 1.0
    for n, old in enumerate(perm):
        if n in flips:
            q[old, n] = -1.0
            q[old, 3] = new_shape[n] - 1
        else:
            q[old, n] = 1.0
    return q


def restore(image: Image, perm: tuple[int, ...], flips: tuple[int, ...] = ()) -> Image:
    """``image`` with its numpy axes permuted by ``perm`` and the (new) axes ``flips`` reversed,
    placed so that every voxel keeps its world position."""
    if sorted(perm) != [0, 1, 2] or any(f not in (0, 1, 2) for f in flips):
        raise ValueError(f"perm must order (0, 1, 2) and flips name axes 0-2; got {perm}, {flips}")
    arr = np.transpose(image.numpy(), perm)
    for axis in flips:
        arr = np.flip(arr, axis)
    arr = np.ascontiguousarray(arr)
    world = image.grid.array_index_to_world_matrix() @ array_index_map(perm, flips, arr.shape)
    cols = [world[:3, 2 - m] for m in range(3)]  # ITK axis m = numpy axis 2 - m
    spacing = tuple(float(np.linalg.norm(c)) for c in cols)
    direction = np.stack([c / s for c, s in zip(cols, spacing, strict=True)], axis=1)
    grid = Grid(arr.shape, spacing, tuple(world[:3, 3]), direction)
    return Image(arr, grid, {**image.meta, "name": f"{image.name} (re-stored {perm}/{flips})"})


def restore_as(image: Image, orientation: str) -> Image:
    """``image`` stored as one of :data:`ORIENTATIONS` says."""
    perm, flips = ORIENTATIONS[orientation]
    return restore(image, perm, flips)


def handedness(grid: Grid) -> int:
    """+1 for a right-handed direction matrix, -1 for a left-handed one."""
    return int(np.sign(np.linalg.det(grid.direction)))
