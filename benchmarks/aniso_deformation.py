"""A known smooth deformation (small rigid motion + Gaussian radial-basis displacement) in world mm.

The benchmark's moving image is a copy of the fixed one seen through this deformation, so the
true correspondence of every point is known exactly:

* ``moving_to_fixed(y)``: the fixed world point ``x = psi(y)`` whose content the moving image
  shows at its world point ``y``; ``psi(y) = z + u(z)`` with ``z = R (y - c) + c + t`` (a
  rotation ``R`` about the centre ``c``, a translation ``t``) and ``u`` a sum of Gaussians.
* ``fixed_to_moving(x)``: its inverse (fixed-point iteration, exact to ``tol_mm``): where a fixed
  landmark lies in the moving image.

The moving image is made by sampling the source at ``psi`` of every moving voxel's world point
(:func:`sample_on_grid`), so image warp and point mapping use one function. World coordinates
are LPS mm throughout; nothing here depends on how an array is stored.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from medfeat.geometry import Grid, Image

__all__ = ["KnownDeformation", "random_deformation", "rotation_matrix", "sample_on_grid"]

_CHUNK = 400_000  # points per block when evaluating the Gaussians (bounded memory)


def rotation_matrix(angles_deg: np.ndarray) -> np.ndarray:
    """Rotation about world x, then y, then z by ``angles_deg`` (degrees)."""
    ax, ay, az = np.deg2rad(np.asarray(angles_deg, dtype=np.float64))
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    return rz @ ry @ rx


@dataclass(frozen=True)
class KnownDeformation:
    """``psi(y) = z + u(z)``, ``z = R (y - c) + c + t``, ``u(z) = sum_k a_k exp(-|z - c_k|^2 / 2 s^2)``."""

    rotation: np.ndarray  # (3, 3)
    centre_mm: np.ndarray  # (3,)
    translation_mm: np.ndarray  # (3,)
    rbf_centres_mm: np.ndarray  # (K, 3)
    rbf_amplitudes_mm: np.ndarray  # (K, 3)
    rbf_sigma_mm: float

    def rigid(self, points: np.ndarray) -> np.ndarray:
        """``z = R (y - c) + c + t`` for ``(N, 3)`` world points."""
        p = np.asarray(points, dtype=np.float64)
        return (p - self.centre_mm) @ self.rotation.T + self.centre_mm + self.translation_mm

    def displacement(self, points: np.ndarray) -> np.ndarray:
        """The smooth part ``u(z)`` (mm) at ``(N, 3)`` world points."""
        p = np.asarray(points, dtype=np.float64).reshape(-1, 3)
        out = np.empty_like(p)
        inv = -0.5 / self.rbf_sigma_mm**2
        for s in range(0, len(p), _CHUNK):
            block = p[s : s + _CHUNK]
            d2 = ((block[:, None, :] - self.rbf_centres_mm[None]) ** 2).sum(-1)
            out[s : s + _CHUNK] = np.exp(d2 * inv) @ self.rbf_amplitudes_mm
        return out

    def moving_to_fixed(self, points: np.ndarray) -> np.ndarray:
        """``psi``: moving world points -> the fixed world points they show."""
        z = self.rigid(points)
        return z + self.displacement(z)

    def fixed_to_moving(
        self, points: np.ndarray, tol_mm: float = 1e-7, max_iter: int = 200
    ) -> np.ndarray:
        """``psi^-1``: fixed world points -> their position in the moving image.

        Solves ``z + u(z) = x`` by ``z <- x - u(z)`` (a contraction while ``|grad u| < 1``, which
        :func:`random_deformation` guarantees), then undoes the rigid part.
        """
        x = np.asarray(points, dtype=np.float64).reshape(-1, 3)
        z = x.copy()
        for _ in range(max_iter):
            z_new = x - self.displacement(z)
            step = float(np.abs(z_new - z).max()) if len(z) else 0.0
            z = z_new
            if step < tol_mm:
                break
        else:
            raise ArithmeticError(
                f"inverting the known deformation did not converge (last step {step:.2e} mm)"
            )
        return (z - self.centre_mm - self.translation_mm) @ self.rotation + self.centre_mm

    def max_gradient(self, points: np.ndarray, h_mm: float = 0.5) -> float:
        """Largest spectral norm of the Jacobian of ``u`` at ``points`` (central differences)."""
        p = np.asarray(points, dtype=np.float64).reshape(-1, 3)
        jac = np.empty((len(p), 3, 3))
        for a in range(3):
            e = np.zeros(3)
            e[a] = h_mm
            jac[:, :, a] = (self.displacement(p + e) - self.displacement(p - e)) / (2 * h_mm)
        return float(np.linalg.norm(jac, ord=2, axis=(1, 2)).max()) if len(p) else 0.0

    def describe(self) -> dict:
        """JSON-friendly parameters (for the results file)."""
        return {
            "rotation": np.round(self.rotation, 9).tolist(),
            "centre_mm": np.round(self.centre_mm, 6).tolist(),
            "translation_mm": np.round(self.translation_mm, 6).tolist(),
            "rbf_sigma_mm": self.rbf_sigma_mm,
            "rbf_count": int(len(self.rbf_centres_mm)),
        }


def random_deformation(
    seed: int,
    box_min_mm: np.ndarray,
    box_max_mm: np.ndarray,
    *,
    amplitude_mm: float = 4.0,
    sigma_mm: float = 25.0,
    n_rbf: int = 16,
    max_rotation_deg: tuple[float, float, float] = (3.0, 3.0, 3.0),
    max_translation_mm: tuple[float, float, float] = (4.0, 4.0, 4.0),
) -> KnownDeformation:
    """A seeded deformation whose Gaussians lie in the world box ``[box_min, box_max]``.

    The smooth part is scaled so that its largest displacement on a probe lattice of the box is
    ``amplitude_mm``; rotation angles (degrees, about world x, y, z) and translations (mm) are
    uniform within the given bounds. Raises ``ValueError`` when the smooth part could fold or
    not be inverted (``|grad u| >= 0.5`` somewhere).
    """
    rng = np.random.default_rng(seed)
    lo, hi = np.asarray(box_min_mm, float), np.asarray(box_max_mm, float)
    centres = lo + (hi - lo) * rng.random((n_rbf, 3))
    amps = rng.normal(size=(n_rbf, 3))
    angles = (2 * rng.random(3) - 1) * np.asarray(max_rotation_deg, float)
    shift = (2 * rng.random(3) - 1) * np.asarray(max_translation_mm, float)
    probe = np.stack(np.meshgrid(*[np.linspace(a, b, 15) for a, b in zip(lo, hi, strict=True)]), -1)
    probe = probe.reshape(-1, 3)
    unit = KnownDeformation(np.eye(3), (lo + hi) / 2, np.zeros(3), centres, amps, float(sigma_mm))
    peak = float(np.linalg.norm(unit.displacement(probe), axis=1).max())
    deformation = KnownDeformation(
        rotation=rotation_matrix(angles),
        centre_mm=(lo + hi) / 2,
        translation_mm=shift,
        rbf_centres_mm=centres,
        rbf_amplitudes_mm=amps * (amplitude_mm / max(peak, 1e-12)),
        rbf_sigma_mm=float(sigma_mm),
    )
    grad = deformation.max_gradient(probe)
    if grad >= 0.5:
        raise ValueError(
            f"the random deformation is too steep (|grad u| = {grad:.2f}); lower amplitude_mm "
            "or raise sigma_mm"
        )
    return deformation


def sample_on_grid(
    source: Image,
    grid: Grid,
    deformation: KnownDeformation | None = None,
    *,
    order: int = 1,
    dtype: type | None = None,
) -> Image:
    """``source`` seen through ``deformation`` at every voxel of ``grid``.

    Voxel ``y`` of the result holds ``source(psi(y))`` (``psi`` = identity without a
    deformation): linear interpolation for ``order=1``, nearest neighbour (label maps) for
    ``order=0``. Points beyond the source repeat its border voxels (no artificial edges).
    """
    from scipy.ndimage import map_coordinates

    idx = np.indices(grid.shape, dtype=np.float64).reshape(3, -1).T
    world = grid.array_index_to_world(idx)
    if deformation is not None:
        world = deformation.moving_to_fixed(world)
    src_idx = source.grid.world_to_array_index(world).T
    arr = source.numpy()
    out_dtype = dtype or (np.float32 if order > 0 else arr.dtype)
    values = map_coordinates(arr, src_idx, order=order, mode="nearest", output=np.float64)
    if order == 0 or np.issubdtype(np.dtype(out_dtype), np.integer):
        values = np.rint(values)
    return Image(values.reshape(grid.shape).astype(out_dtype), grid, {"name": "synthetic"})
