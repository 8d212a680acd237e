"""Planes through an image in world orientation (LPS mm), sampled for display.

A :class:`PlaneView` is a 2D array whose columns run along one world axis and whose rows run along
another, so that matplotlib can draw it with ``extent`` in millimetres: any world point then lands
at ``(point[u], point[v])`` in the panel, whatever the image's spacing, origin and direction matrix.
Panels follow the radiological convention: axial and coronal views show the patient's right on the
left of the panel; axial views show anterior up, coronal and sagittal views superior up, and
sagittal views anterior on the left.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from medfeat.geometry import Grid, Image

#: Most pixels along a panel side (coarser sampling beyond it).
MAX_PANEL_PX = 400


@dataclass(frozen=True)
class Plane:
    """A display plane: world axis ``u`` left to right, ``v`` along the rows (down if ``v_down``)."""

    name: str
    u: int
    v: int
    v_down: bool
    letters: tuple[str, str, str, str]  # left, right, top, bottom edges

    @property
    def normal(self) -> int:
        """The world axis across the plane (its slice position)."""
        return 3 - self.u - self.v


AXIAL = Plane("axial", 0, 1, True, ("R", "L", "A", "P"))
CORONAL = Plane("coronal", 0, 2, False, ("R", "L", "S", "I"))
SAGITTAL = Plane("sagittal", 1, 2, False, ("A", "P", "S", "I"))
#: The three orthogonal planes of a 3D image.
PLANES_3D = (AXIAL, CORONAL, SAGITTAL)
#: The single plane of a 2D image (x to the right, y down, like a photograph).
PLANE_2D = Plane("image", 0, 1, True, ("", "", "", ""))


def planes_for(ndim: int) -> tuple[Plane, ...]:
    """The planes to show for a 2D or 3D image."""
    return PLANES_3D if ndim == 3 else (PLANE_2D,)


@dataclass
class PlaneView:
    """Samples of an image on a plane: ``data`` is ``[rows, cols]`` (or ``[rows, cols, C]``)."""

    plane: Plane
    data: np.ndarray
    u_mm: np.ndarray  # world coordinate of each column centre
    v_mm: np.ndarray  # world coordinate of each row centre
    center_mm: np.ndarray

    @property
    def pixel_mm(self) -> float:
        return float(abs(self.u_mm[1] - self.u_mm[0])) if len(self.u_mm) > 1 else 1.0

    @property
    def extent(self) -> tuple[float, float, float, float]:
        """``(left, right, bottom, top)`` in mm for ``imshow(..., origin="upper")``."""
        h = self.pixel_mm / 2
        v_step = h if self.plane.v_down else -h
        return (
            float(self.u_mm[0] - h),
            float(self.u_mm[-1] + h),
            float(self.v_mm[-1] + v_step),
            float(self.v_mm[0] - v_step),
        )

    @property
    def width_mm(self) -> float:
        return float(abs(self.extent[1] - self.extent[0]))

    def panel_coords(self, points_mm: np.ndarray) -> np.ndarray:
        """World points ``[N, ndim]`` -> panel coordinates ``[N, 2]`` (mm, as drawn)."""
        pts = np.atleast_2d(np.asarray(points_mm, dtype=np.float64))
        return pts[:, [self.plane.u, self.plane.v]]

    def distance_to_plane_mm(self, points_mm: np.ndarray) -> np.ndarray:
        """How far each world point lies off the plane (0 for a 2D image)."""
        pts = np.atleast_2d(np.asarray(points_mm, dtype=np.float64))
        if pts.shape[1] < 3:
            return np.zeros(len(pts))
        n = self.plane.normal
        return np.abs(pts[:, n] - self.center_mm[n])

    def pixel_grid_mm(self) -> tuple[np.ndarray, np.ndarray]:
        """World ``(U, V)`` coordinates of every pixel centre, each ``[rows, cols]``."""
        return np.meshgrid(self.u_mm, self.v_mm)

    def with_data(self, data: np.ndarray) -> PlaneView:
        return PlaneView(self.plane, data, self.u_mm, self.v_mm, self.center_mm)


def world_bounds(grid: Grid) -> tuple[np.ndarray, np.ndarray]:
    """World bounding box (min, max) of the voxel centres of ``grid``."""
    return grid.world_extent()


def default_pixel_mm(grid: Grid, bounds: tuple[np.ndarray, np.ndarray]) -> float:
    """The finest voxel spacing, coarsened so that no panel side exceeds :data:`MAX_PANEL_PX`."""
    span = float(np.max(bounds[1] - bounds[0]))
    return max(min(grid.spacing), span / MAX_PANEL_PX, 1e-6)


def _axis_samples(lo: float, hi: float, pixel_mm: float) -> np.ndarray:
    n = int(np.floor((hi - lo) / pixel_mm + 1e-9)) + 1
    return lo + pixel_mm * np.arange(max(n, 1))


def sample_plane(
    image: Image,
    plane: Plane,
    center_mm: np.ndarray | None = None,
    *,
    bounds: tuple[np.ndarray, np.ndarray] | None = None,
    pixel_mm: float | None = None,
    order: int = 1,
    fill: float = np.nan,
    world_affine: np.ndarray | None = None,
) -> PlaneView:
    """Sample ``image`` on ``plane`` through ``center_mm`` (world LPS mm), in world orientation.

    ``bounds`` (default: the image's world box) sets the panel's extent, so that images on different
    grids (fixed, moving) give panels of identical geometry. ``order``: 1 linear, 0 nearest (labels).
    Points outside the image get ``fill``. Multi-channel images give ``[rows, cols, C]``.
    ``world_affine`` (4x4, world mm): each panel point ``x`` shows the image at ``A @ x``, e.g. the
    moving image through a fixed->moving pre-alignment, on the fixed image's panels.
    """
    from scipy.ndimage import map_coordinates

    grid = image.grid
    bounds = bounds or world_bounds(grid)
    lo, hi = (np.asarray(b, dtype=np.float64) for b in bounds)
    center = (lo + hi) / 2 if center_mm is None else np.asarray(center_mm, dtype=np.float64)
    pixel_mm = pixel_mm or default_pixel_mm(grid, (lo, hi))
    u = _axis_samples(lo[plane.u], hi[plane.u], pixel_mm)
    v = _axis_samples(lo[plane.v], hi[plane.v], pixel_mm)
    if not plane.v_down:
        v = v[::-1]
    points = np.broadcast_to(center, (len(v), len(u), grid.ndim)).copy()
    points[..., plane.u] = u[None, :]
    points[..., plane.v] = v[:, None]
    world = points.reshape(-1, grid.ndim)
    if world_affine is not None:
        a = np.asarray(world_affine, dtype=np.float64)
        world = world @ a[: grid.ndim, : grid.ndim].T + a[: grid.ndim, grid.ndim]
    idx = grid.world_to_array_index(world).T
    data = image.numpy()
    channels = [data] if data.ndim == grid.ndim else list(data)
    sampled = [
        map_coordinates(
            np.asarray(c, dtype=np.float32), idx, order=order, mode="constant", cval=fill
        ).reshape(len(v), len(u))
        for c in channels
    ]
    out = sampled[0] if data.ndim == grid.ndim else np.stack(sampled, axis=-1)
    return PlaneView(plane, out, u, v, center)


def sample_planes(
    image: Image,
    center_mm: np.ndarray | None = None,
    *,
    bounds: tuple[np.ndarray, np.ndarray] | None = None,
    pixel_mm: float | None = None,
    order: int = 1,
    fill: float = np.nan,
    world_affine: np.ndarray | None = None,
) -> list[PlaneView]:
    """:func:`sample_plane` on every plane of the image (three for 3D, one for 2D)."""
    data = image.numpy()
    if data.dtype != np.float32:  # converted once, not once per plane
        image = Image(data.astype(np.float32), image.grid, image.meta)
    return [
        sample_plane(
            image,
            p,
            center_mm,
            bounds=bounds,
            pixel_mm=pixel_mm,
            order=order,
            fill=fill,
            world_affine=world_affine,
        )
        for p in planes_for(image.grid.ndim)
    ]


def checkerboard(a: PlaneView, b: PlaneView, tile_mm: float) -> PlaneView:
    """Tiles of ``a`` and ``b`` (same plane geometry) alternating every ``tile_mm`` in world mm."""
    uu, vv = a.pixel_grid_mm()
    parity = (np.floor((uu - a.u_mm.min()) / tile_mm) + np.floor((vv - a.v_mm.min()) / tile_mm)) % 2
    return a.with_data(np.where(parity == 0, a.data, b.data))
