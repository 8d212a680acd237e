"""Synthetic phantoms with known deformations, for examples and tests (numpy only, no data files).

The breathing phantom is a chest-like volume: a body ellipsoid, two lungs, a spine and vessel-like
blobs inside the lungs. The *moving* (exhale) image is defined analytically; the *fixed* (inhale)
image samples it through a smooth, known breathing displacement ``u`` (fixed -> moving), so
``fixed(x) = moving(x + u(x))`` holds exactly, with no interpolation error. Landmarks are vessel
centres: exact in the moving image and mapped back to the fixed image by inverting ``x + u(x)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from medfeat.geometry import Grid, Image, PointSet


@dataclass
class PhantomPair:
    fixed: Image
    moving: Image
    fixed_points: PointSet
    moving_points: PointSet
    fixed_labels: Image
    moving_labels: Image
    displacement: np.ndarray  # [3, *shape], world mm, fixed -> moving


def _breathing_displacement(
    points: np.ndarray, centre: np.ndarray, half: np.ndarray, amplitude_mm: float
) -> np.ndarray:
    """Smooth breathing motion (world mm): craniocaudal shift largest at the lung base, mild AP/LR contraction."""
    rel = (points - centre) / half  # roughly in [-1, 1]
    envelope = np.exp(-np.sum(rel[:, :2] ** 2, axis=1) / 0.8)
    base = 0.5 * (1 - np.tanh(2.0 * rel[:, 2]))  # 1 at the inferior end, 0 superior
    u = np.zeros_like(points)
    u[:, 2] = amplitude_mm * base * envelope  # z: the diaphragm moves up at exhale
    u[:, 0] = -0.15 * amplitude_mm * rel[:, 0] * envelope
    u[:, 1] = -0.2 * amplitude_mm * rel[:, 1] * envelope * base
    return u


def _moving_intensity(
    points: np.ndarray, centre: np.ndarray, half: np.ndarray, vessels: np.ndarray, radius_mm: float
) -> tuple[np.ndarray, np.ndarray]:
    """Analytic exhale image and labels (0 background, 1 body, 2 lungs, 3 spine) at world points."""
    rel = (points - centre) / half
    body = np.sum((rel / [0.95, 0.8, 1.2]) ** 2, axis=1) <= 1.0
    lung_l = np.sum(((rel - [-0.42, 0.0, 0.05]) / [0.35, 0.55, 0.8]) ** 2, axis=1) <= 1.0
    lung_r = np.sum(((rel - [0.42, 0.0, 0.05]) / [0.35, 0.55, 0.8]) ** 2, axis=1) <= 1.0
    spine = np.sum(((rel[:, :2] - [0.0, 0.6]) / [0.12, 0.12]) ** 2, axis=1) <= 1.0
    lungs = (lung_l | lung_r) & body
    intensity = np.where(body, 0.55, 0.0)
    intensity = np.where(lungs, 0.12, intensity)
    intensity = np.where(spine & body, 0.95, intensity)
    for c in vessels:
        d2 = np.sum((points - c) ** 2, axis=1)
        intensity = intensity + 0.6 * np.exp(-d2 / (2 * radius_mm**2)) * lungs
    labels = np.where(body, 1, 0)
    labels = np.where(lungs, 2, labels)
    labels = np.where(spine & body, 3, labels)
    return intensity, labels.astype(np.uint8)


def breathing_phantom(
    shape: tuple[int, int, int] = (64, 64, 64),
    spacing_mm: float = 3.0,
    amplitude_mm: float = 12.0,
    num_vessels: int = 60,
    noise: float = 0.01,
    seed: int = 0,
) -> PhantomPair:
    """A synthetic inhale/exhale pair with exact landmarks; ``shape`` is numpy (k, j, i) order."""
    rng = np.random.default_rng(seed)
    grid = Grid.from_shape(
        shape, spacing_mm, origin=(-0.5 * spacing_mm * (s - 1) for s in reversed(shape))
    )
    lo, hi = grid.world_extent()
    centre, half = (lo + hi) / 2, (hi - lo) / 2
    # vessels inside the lungs (rejection sampling in normalised coordinates)
    vessels: list[np.ndarray] = []
    while len(vessels) < num_vessels:
        rel = rng.uniform([-0.75, -0.5, -0.6], [0.75, 0.5, 0.7])
        side = -0.42 if rel[0] < 0 else 0.42
        if np.sum(((rel - [side, 0.0, 0.05]) / [0.28, 0.45, 0.7]) ** 2) <= 1.0:
            vessels.append(centre + rel * half)
    vessels_arr = np.array(vessels)
    radius_mm = 1.2 * spacing_mm

    idx = np.stack(np.meshgrid(*[np.arange(s) for s in shape], indexing="ij"), axis=-1).reshape(
        -1, 3
    )
    world = grid.array_index_to_world(idx)
    disp = _breathing_displacement(world, centre, half, amplitude_mm)
    moving_vals, moving_labels = _moving_intensity(world, centre, half, vessels_arr, radius_mm)
    fixed_vals, fixed_labels = _moving_intensity(world + disp, centre, half, vessels_arr, radius_mm)

    # fixed landmarks: solve x + u(x) = c by fixed-point iteration (u is smooth and small)
    fixed_pts = vessels_arr.copy()
    for _ in range(100):
        fixed_pts = vessels_arr - _breathing_displacement(fixed_pts, centre, half, amplitude_mm)

    def image(values: np.ndarray, name: str) -> Image:
        arr = values.reshape(shape) + noise * rng.standard_normal(shape)
        return Image(arr.astype(np.float32), grid, {"name": name, "modality": "synthetic"})

    return PhantomPair(
        fixed=image(fixed_vals, "phantom-inhale"),
        moving=image(moving_vals, "phantom-exhale"),
        fixed_points=PointSet(fixed_pts, meta={"name": "phantom-inhale landmarks"}),
        moving_points=PointSet(vessels_arr, meta={"name": "phantom-exhale landmarks"}),
        fixed_labels=Image(fixed_labels.reshape(shape), grid, {"name": "phantom-inhale labels"}),
        moving_labels=Image(moving_labels.reshape(shape), grid, {"name": "phantom-exhale labels"}),
        displacement=np.moveaxis(disp.reshape(*shape, 3), -1, 0),
    )
