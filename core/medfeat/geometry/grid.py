"""A sampling grid in physical space, following the ITK conventions.

Conventions (the same as SimpleITK, elastix, ANTs):

* world coordinates are LPS millimetres;
* ``spacing``, ``origin`` and the columns of ``direction`` are in ITK index order ``(i, j, k)``
  (x fastest);
* arrays are stored in numpy order ``(k, j, i)``, as ``sitk.GetArrayFromImage`` returns them, so
  ``shape`` is the numpy shape.

``index`` below always means an ITK continuous index ``(i, j, k)``; ``array_index`` means numpy order
``(k, j, i)``. Both are converted explicitly, never guessed.

A grid has four named coordinate spaces (:data:`SPACES`), converted only here:

* ``world``: LPS millimetres;
* ``index``: ITK continuous index ``(i, j, k)``;
* ``array``: numpy-order continuous index ``(k, j, i)``;
* ``cube``: the normalised coordinates of ``torch.nn.functional.grid_sample`` with
  ``align_corners=True``: axes in ``grid_sample``'s ``(x, y, z)`` order, which is the ITK order
  ``(i, j, k)``, and voxel centre ``0`` at ``-1``, centre ``n - 1`` at ``+1``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from medfeat.errors import GeometryError

#: The coordinate spaces of a grid (see the module docstring).
SPACES = ("world", "index", "array", "cube")


@dataclass(frozen=True)
class Grid:
    """Shape (numpy order) plus spacing/origin/direction (ITK order) of a 2D or 3D image."""

    shape: tuple[int, ...]
    spacing: tuple[float, ...]
    origin: tuple[float, ...]
    direction: np.ndarray = field(repr=False)

    def __post_init__(self) -> None:
        ndim = len(self.shape)
        if ndim not in (2, 3):
            raise GeometryError(f"Grids must be 2D or 3D, got shape {self.shape}.")
        object.__setattr__(self, "shape", tuple(int(s) for s in self.shape))
        object.__setattr__(self, "spacing", tuple(float(s) for s in self.spacing))
        object.__setattr__(self, "origin", tuple(float(o) for o in self.origin))
        direction = np.asarray(self.direction, dtype=np.float64).reshape(ndim, ndim)
        object.__setattr__(self, "direction", direction)
        if len(self.spacing) != ndim or len(self.origin) != ndim:
            raise GeometryError(
                f"Grid of shape {self.shape} needs {ndim} spacing and origin values, got "
                f"spacing={self.spacing}, origin={self.origin}."
            )
        if any(s <= 0 or not np.isfinite(s) for s in self.spacing):
            raise GeometryError(
                f"Voxel spacing must be positive and finite, got {self.spacing} mm."
            )
        if not np.allclose(direction.T @ direction, np.eye(ndim), atol=1e-4):
            raise GeometryError(f"Direction matrix is not orthonormal:\n{direction}")

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_shape(
        cls,
        shape: tuple[int, ...],
        spacing: tuple[float, ...] | float = 1.0,
        origin: tuple[float, ...] | None = None,
        direction: np.ndarray | None = None,
    ) -> Grid:
        """A grid with identity direction unless given; ``spacing`` may be a scalar."""
        ndim = len(shape)
        if np.isscalar(spacing):
            spacing = (float(spacing),) * ndim
        origin = origin if origin is not None else (0.0,) * ndim
        direction = direction if direction is not None else np.eye(ndim)
        return cls(tuple(shape), tuple(spacing), tuple(origin), np.asarray(direction))

    # ------------------------------------------------------------------ properties
    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def size_ijk(self) -> tuple[int, ...]:
        """Number of voxels along ITK index axes (i, j, k): the reverse of ``shape``."""
        return tuple(reversed(self.shape))

    @property
    def spacing_array_order(self) -> tuple[float, ...]:
        """Spacing along numpy axes (k, j, i), for code that works on arrays."""
        return tuple(reversed(self.spacing))

    @property
    def num_voxels(self) -> int:
        return int(np.prod(self.shape))

    # ------------------------------------------------------------------ affine maps
    def index_to_world_matrix(self) -> np.ndarray:
        """Homogeneous matrix mapping ITK continuous index (i, j, k, 1) to LPS world mm."""
        n = self.ndim
        m = np.eye(n + 1)
        m[:n, :n] = self.direction @ np.diag(self.spacing)
        m[:n, n] = self.origin
        return m

    def array_index_to_world_matrix(self) -> np.ndarray:
        """Homogeneous matrix mapping numpy-order index (k, j, i, 1) to LPS world mm."""
        n = self.ndim
        flip = np.eye(n + 1)
        flip[:n, :n] = np.eye(n)[::-1]
        return self.index_to_world_matrix() @ flip

    def index_to_world(self, index: np.ndarray) -> np.ndarray:
        """ITK continuous indices ``[N, ndim]`` (i, j, k) -> world LPS mm ``[N, ndim]``."""
        index = np.atleast_2d(np.asarray(index, dtype=np.float64))
        self._check_points(index)
        m = self.index_to_world_matrix()
        return index @ m[:-1, :-1].T + m[:-1, -1]

    def world_to_index(self, points: np.ndarray) -> np.ndarray:
        """World LPS mm ``[N, ndim]`` -> ITK continuous indices (i, j, k)."""
        points = np.atleast_2d(np.asarray(points, dtype=np.float64))
        self._check_points(points)
        m = np.linalg.inv(self.index_to_world_matrix())
        return points @ m[:-1, :-1].T + m[:-1, -1]

    def array_index_to_world(self, array_index: np.ndarray) -> np.ndarray:
        """Numpy-order continuous indices (k, j, i) -> world LPS mm."""
        return self.index_to_world(np.asarray(array_index, dtype=np.float64)[..., ::-1])

    def world_to_array_index(self, points: np.ndarray) -> np.ndarray:
        """World LPS mm -> numpy-order continuous indices (k, j, i)."""
        return self.world_to_index(points)[..., ::-1]

    def vector_array_to_world(self, vectors: np.ndarray) -> np.ndarray:
        """Displacements in numpy-order voxel units ``[..., ndim]`` -> world mm vectors."""
        lin = self.index_to_world_matrix()[:-1, :-1]
        return np.asarray(vectors, dtype=np.float64)[..., ::-1] @ lin.T

    def vector_world_to_array(self, vectors: np.ndarray) -> np.ndarray:
        """World mm vectors ``[..., ndim]`` -> numpy-order voxel-unit displacements."""
        lin_inv = np.linalg.inv(self.index_to_world_matrix()[:-1, :-1])
        return (np.asarray(vectors, dtype=np.float64) @ lin_inv.T)[..., ::-1]

    # ------------------------------------------------------------------ grid_sample coordinates
    def cube_scale(self) -> tuple[float, ...]:
        """Index-to-cube scale ``2 / (n - 1)`` per ITK axis (i, j, k); ``2`` for a single voxel."""
        return tuple(2.0 / max(n - 1, 1) for n in self.size_ijk)

    def index_to_cube(self, index):
        """ITK continuous indices ``[..., ndim]`` (i, j, k) -> ``grid_sample`` coordinates (x, y, z).

        Takes numpy arrays (computed in float64) and torch tensors (kept in their dtype and device).
        """
        scale = self.cube_scale()
        if _is_tensor(index):
            return index * index.new_tensor(scale) - 1.0
        return np.asarray(index, dtype=np.float64) * np.asarray(scale) - 1.0

    def cube_to_index(self, cube):
        """``grid_sample`` coordinates ``[..., ndim]`` (x, y, z) -> ITK continuous indices (i, j, k)."""
        scale = self.cube_scale()
        if _is_tensor(cube):
            return (cube + 1.0) / cube.new_tensor(scale)
        return (np.asarray(cube, dtype=np.float64) + 1.0) / np.asarray(scale)

    def array_index_to_cube(self, array_index):
        """Numpy-order indices ``[..., ndim]`` (k, j, i) -> ``grid_sample`` coordinates (x, y, z).

        This is the grid argument ``grid_sample`` takes for an array stored in numpy order.
        """
        if _is_tensor(array_index):
            return self.index_to_cube(array_index.flip(-1))
        return self.index_to_cube(np.asarray(array_index)[..., ::-1])

    def cube_to_array_index(self, cube):
        """``grid_sample`` coordinates ``[..., ndim]`` (x, y, z) -> numpy-order indices (k, j, i)."""
        index = self.cube_to_index(cube)
        return index.flip(-1) if _is_tensor(index) else index[..., ::-1]

    # ------------------------------------------------------------------ any space to any space
    def to_world_matrix(self, space: str) -> np.ndarray:
        """Homogeneous matrix mapping coordinates of ``space`` (one of :data:`SPACES`) to world mm."""
        n = self.ndim
        if space == "world":
            return np.eye(n + 1)
        if space == "index":
            return self.index_to_world_matrix()
        if space == "array":
            return self.array_index_to_world_matrix()
        if space == "cube":
            cube_to_index = np.eye(n + 1)
            inv_scale = 1.0 / np.asarray(self.cube_scale())
            cube_to_index[:n, :n] = np.diag(inv_scale)
            cube_to_index[:n, n] = inv_scale
            return self.index_to_world_matrix() @ cube_to_index
        raise GeometryError(
            f"Unknown coordinate space {space!r}.", remedy=f"Use one of {', '.join(SPACES)}."
        )

    def transform_matrix(self, source: str, target: str, to: Grid | None = None) -> np.ndarray:
        """Homogeneous matrix from ``source`` coordinates of this grid to ``target`` coordinates of
        grid ``to`` (this grid if not given); both spaces are names from :data:`SPACES`.

        ``target_grid.transform_matrix("array", "array", to=source_grid)`` gives, for every voxel of
        ``target_grid``, its position in ``source_grid``: what resampling onto a grid needs.
        """
        to = self if to is None else to
        if target == "world":
            return self.to_world_matrix(source)
        return np.linalg.inv(to.to_world_matrix(target)) @ self.to_world_matrix(source)

    def transform(
        self, points: np.ndarray, source: str, target: str, to: Grid | None = None
    ) -> np.ndarray:
        """Points ``[N, ndim]`` in ``source`` space of this grid -> ``target`` space of ``to`` (or this
        grid), e.g. ``grid.transform(p, source="world", target="cube")``."""
        points = np.atleast_2d(np.asarray(points, dtype=np.float64))
        self._check_points(points)
        m = self.transform_matrix(source, target, to)
        return points @ m[:-1, :-1].T + m[:-1, -1]

    def world_extent(self) -> tuple[np.ndarray, np.ndarray]:
        """Axis-aligned bounding box (min, max) of the voxel centres in world mm."""
        corners = np.array(np.meshgrid(*[[0, s - 1] for s in self.size_ijk], indexing="ij"))
        pts = self.index_to_world(corners.reshape(self.ndim, -1).T)
        return pts.min(axis=0), pts.max(axis=0)

    def contains_world(self, points: np.ndarray, margin_vox: float = 0.5) -> np.ndarray:
        """Boolean mask of world points that fall inside the grid (with a half-voxel margin)."""
        idx = self.world_to_index(points)
        upper = np.asarray(self.size_ijk) - 1 + margin_vox
        return np.all((idx >= -margin_vox) & (idx <= upper), axis=1)

    # ------------------------------------------------------------------ relations
    def same_as(self, other: Grid, atol_mm: float = 1e-3) -> bool:
        """True when both grids sample the same physical points."""
        return (
            self.shape == other.shape
            and np.allclose(self.spacing, other.spacing, atol=atol_mm)
            and np.allclose(self.origin, other.origin, atol=atol_mm)
            and np.allclose(self.direction, other.direction, atol=1e-5)
        )

    def describe(self) -> str:
        """One-line human description, for messages and provenance."""
        sp = "x".join(f"{s:g}" for s in self.spacing)
        return f"{'x'.join(map(str, self.size_ijk))} voxels (i,j,k) at {sp} mm, origin {tuple(round(o, 3) for o in self.origin)}"

    def to_dict(self) -> dict:
        return {
            "size_ijk": list(self.size_ijk),
            "spacing_mm": list(self.spacing),
            "origin_mm_lps": list(self.origin),
            "direction": self.direction.flatten().tolist(),
        }

    def with_shape_and_spacing(self, shape: tuple[int, ...], spacing: tuple[float, ...]) -> Grid:
        """A grid over the same physical box, sampled with another shape, keeping voxel corners aligned.

        The box spanned by voxel edges (not centres) is kept, which is what ``align_corners=False``
        resampling does; origin moves by half a voxel accordingly.
        """
        old_sp = np.asarray(self.spacing)
        new_sp = np.asarray(spacing, dtype=np.float64)
        shift_index = (new_sp - old_sp) / 2.0  # in mm along each index axis
        origin = np.asarray(self.origin) + self.direction @ shift_index
        return Grid(tuple(shape), tuple(new_sp), tuple(origin), self.direction)

    def resized(self, shape: tuple[int, ...]) -> Grid:
        """Same physical box (voxel edges), new shape: spacing scales with the size ratio."""
        size_old = np.asarray(self.size_ijk, dtype=np.float64)
        size_new = np.asarray(tuple(reversed(shape)), dtype=np.float64)
        spacing = np.asarray(self.spacing) * size_old / size_new
        return self.with_shape_and_spacing(tuple(shape), tuple(spacing))

    def _check_points(self, points: np.ndarray) -> None:
        if points.shape[-1] != self.ndim:
            raise GeometryError(
                f"Expected points with {self.ndim} coordinates for a {self.ndim}D grid, got shape {points.shape}."
            )


def _is_tensor(values) -> bool:
    """True for torch tensors, told apart without importing torch."""
    return hasattr(values, "new_tensor") and hasattr(values, "flip")
