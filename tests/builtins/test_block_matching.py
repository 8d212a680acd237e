"""The `block-matching` pre-alignment: MIND-SSC block matches and a trimmed least-squares fit."""

import numpy as np
import pytest
import torch

from medfeat.builtins.block_matching import fit_transform, match_blocks
from medfeat.errors import GeometryError
from medfeat.geometry import Grid, Image

RNG = np.random.default_rng(7)
CENTRES = RNG.uniform(-30.0, 30.0, (40, 3))


def blobs(grid: Grid, centres: np.ndarray, sigma_mm: float = 4.0) -> Image:
    """Gaussian blobs of five brightnesses at world ``centres``."""
    pts = grid.array_index_to_world(np.indices(grid.shape).reshape(3, -1).T)
    values = np.zeros(len(pts))
    for i, c in enumerate(centres):
        values += (1.0 + 0.25 * (i % 5)) * np.exp(-np.sum((pts - c) ** 2, 1) / (2 * sigma_mm**2))
    return Image(values.reshape(grid.shape).astype(np.float32), grid)


def rotation_z(degrees: float) -> np.ndarray:
    t = np.deg2rad(degrees)
    return np.array([[np.cos(t), -np.sin(t), 0], [np.sin(t), np.cos(t), 0], [0, 0, 1]])


def mapped(points: np.ndarray, a: np.ndarray) -> np.ndarray:
    return points @ a[:3, :3].T + a[:3, 3]


FAST = dict(spacings_mm=[5.0, 2.5], block_size_mm=[20.0, 10.0], search_radius_mm=[15.0, 5.0])


def test_registered_and_levels_checked(build):
    assert build("aligner", "block-matching").config.transform == "affine"
    with pytest.raises(Exception, match="one entry per level"):
        build("aligner", "block-matching", spacings_mm=[8.0, 4.0], block_size_mm=[32.0])
    with pytest.raises(Exception, match="at least twice"):
        build("aligner", "block-matching", spacings_mm=[4.0], block_size_mm=[6.0],
              search_radius_mm=[8.0])  # fmt: skip


@pytest.mark.parametrize(
    "direction",
    [np.diag([-1.0, 1.0, -1.0]), np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])],
    ids=["flipped", "left-handed"],
)
def test_affine_recovered_between_differently_stored_images(build, direction):
    """A 6 degree rotation, 6 % scaling and a shift; the moving image has another spacing, another
    origin and flipped or swapped (left-handed) axes, so only world coordinates relate the two."""
    fixed_grid = Grid.from_shape((40, 40, 40), 2.5, origin=(-49.0, -49.0, -49.0))
    a = np.eye(4)
    a[:3, :3] = 1.06 * rotation_z(6.0)
    a[:3, 3] = (3.0, -2.0, 2.5)
    box = np.array([[0, 0, 0], [39, 43, 35]]) * (2.5, 2.25, 3.0)  # index extent in mm (i, j, k)
    centre = box.mean(0)
    origin = -(direction @ centre)  # the moving grid centred on the world origin
    moving_grid = Grid((36, 44, 40), (2.5, 2.25, 3.0), tuple(origin), direction)
    fixed = blobs(fixed_grid, CENTRES)
    moving = blobs(moving_grid, mapped(CENTRES, a))
    out = build("aligner", "block-matching", **FAST).align(fixed, moving, initial=np.eye(4))
    before = np.linalg.norm(CENTRES - mapped(CENTRES, a), axis=1)
    err = np.linalg.norm(mapped(CENTRES, out) - mapped(CENTRES, a), axis=1)
    assert before.mean() > 4.0
    assert err.max() < 0.3, (err.max(), out)


def test_rigid_fit_is_a_rotation(build):
    grid = Grid.from_shape((40, 40, 40), 2.5, origin=(-49.0, -49.0, -49.0))
    a = np.eye(4)
    a[:3, :3] = rotation_z(-5.0)
    a[:3, 3] = (-4.0, 1.5, 3.0)
    fixed, moving = blobs(grid, CENTRES), blobs(grid, mapped(CENTRES, a))
    out = build("aligner", "block-matching", transform="rigid", **FAST).align(
        fixed, moving, initial=np.eye(4)
    )
    assert np.allclose(out[:3, :3] @ out[:3, :3].T, np.eye(3), atol=1e-9)
    err = np.linalg.norm(mapped(CENTRES, out) - mapped(CENTRES, a), axis=1)
    assert err.max() < 0.3, err.max()


def test_trimmed_fit_ignores_a_third_of_wrong_matches():
    p = RNG.uniform(-50, 50, (90, 3))
    a = np.eye(4)
    a[:3, :3] = rotation_z(10.0) @ np.diag([1.1, 0.95, 1.0])
    a[:3, 3] = (5.0, -3.0, 1.0)
    q = mapped(p, a)
    q[:30] += RNG.normal(0, 20.0, (30, 3))  # sliding organs, partial coverage, pathology
    plain = fit_transform(p, q, "affine", inlier_fraction=1.0)
    trimmed = fit_transform(p, q, "affine", inlier_fraction=0.5)
    assert np.abs(plain - a).max() > 0.05
    assert np.allclose(trimmed, a, atol=1e-8)


@pytest.mark.parametrize("shift", [(1.0, -2.0, 2.0), (0.3, -0.25, 0.4), (1.6, 0.7, -1.2)])
def test_block_shifts_are_found(shift):
    """A smooth random texture shifted by whole voxels or by fractions of one: every block finds
    the shift to within 0.15 voxels (the quadratic through the neighbouring costs)."""
    from scipy import ndimage

    texture = ndimage.gaussian_filter(np.random.default_rng(3).normal(size=(28, 28, 28)), 1.5)
    moved = ndimage.shift(texture, shift, order=3, mode="nearest")  # moved(x + shift) = texture(x)
    fixed = torch.tensor(texture, dtype=torch.float32)[None, None]
    moving = torch.tensor(moved, dtype=torch.float32)[None, None]
    centres, shifts, _, _ = match_blocks(fixed, moving, block=7, radius=3)
    inner = np.all((centres > 5) & (centres < 22), axis=1)  # away from the zero padding
    assert inner.sum() >= 8
    assert np.allclose(shifts[inner], shift, atol=0.15), shifts[inner]


def test_thin_image_and_empty_mask_refused_with_a_remedy(build):
    thin = Grid.from_shape((3, 40, 40), 2.5)
    image = blobs(thin, CENTRES)
    with pytest.raises(GeometryError, match="block_size_mm to at most"):
        build("aligner", "block-matching").align(image, image, initial=np.eye(4))
    grid = Grid.from_shape((40, 40, 40), 2.5, origin=(-49.0, -49.0, -49.0))
    fixed = blobs(grid, CENTRES)
    empty = Image(np.zeros(grid.shape, np.uint8), grid)
    with pytest.raises(GeometryError, match="found 0 usable block"):
        build("aligner", "block-matching", **FAST).align(
            fixed, fixed, initial=np.eye(4), fixed_mask=empty
        )


def test_coarse_level_skipped_on_a_thin_slab(build, monkeypatch):
    """A 40 mm slab fits no 32 mm block three times: only the finer level runs, and aligns it."""
    from medfeat.builtins import block_matching

    blocks = []

    def recording(fixed, moving, block, radius):
        blocks.append(block)
        return match_blocks(fixed, moving, block, radius)

    monkeypatch.setattr(block_matching, "match_blocks", recording)
    grid = Grid.from_shape((16, 40, 40), 2.5, origin=(-20.0, -49.0, -49.0))
    centres = CENTRES * [0.25, 1.0, 1.0]
    a = np.eye(4)
    a[:3, 3] = (2.0, -3.0, 1.0)
    fixed, moving = blobs(grid, centres), blobs(grid, mapped(centres, a))
    out = build(
        "aligner", "block-matching", transform="rigid", spacings_mm=[8.0, 2.5],
        block_size_mm=[32.0, 7.5], search_radius_mm=[16.0, 5.0],
    ).align(fixed, moving, initial=np.eye(4))  # fmt: skip
    assert blocks and set(blocks) == {3}  # 7.5 mm blocks of 2.5 mm voxels only
    err = np.linalg.norm(mapped(centres, out) - mapped(centres, a), axis=1)
    assert err.max() < 0.5, (err.max(), out)


def test_levels_sample_anti_aliased_images():
    """Stripes 3 mm apart seen at 8 mm: plain sampling turns them into a false coarse pattern
    (aliasing), the level's smoothing leaves the mean grey."""
    from medfeat.builtins.block_matching import _antialiased
    from medfeat.geometry.working import resample_image, working_grid

    grid = Grid.from_shape((32, 32, 64), 1.0)
    stripes = np.broadcast_to(np.cos(2 * np.pi * np.arange(64) / 3), grid.shape).astype(np.float32)
    image = Image(np.ascontiguousarray(stripes), grid)
    coarse = working_grid(grid, 8.0)
    assert np.abs(resample_image(image, coarse).numpy()).max() > 0.4
    smoothed = resample_image(_antialiased(image, 8.0), coarse).numpy()
    assert np.abs(smoothed[..., 1:-1]).max() < 0.05  # away from the replicated border
    assert _antialiased(image, 1.0) is image  # nothing finer than the target: unchanged


@pytest.mark.parametrize("transform", ["rigid", "affine"])
def test_moving_image_covering_a_third_of_the_fixed_one(build, transform):
    """Blocks whose match would fall outside the moving image, or find no texture there, are not
    used (they used to report one false shift together and win the trimmed fit: 38.7 mm rigid,
    3.7 mm affine)."""
    fixed_grid = Grid.from_shape((40, 40, 40), 2.5, origin=(-49.0, -49.0, -49.0))
    a = np.eye(4)
    a[:3, 3] = (4.0, -3.0, 2.0)
    part = Grid((14, 40, 40), (2.5, 2.5, 2.5), (-49.0, -49.0, 16.0), np.eye(3))  # z >= 16 mm
    fixed = blobs(fixed_grid, CENTRES)
    moving = blobs(part, mapped(CENTRES, a))
    out = build("aligner", "block-matching", transform=transform, **FAST).align(
        fixed, moving, initial=np.eye(4)
    )
    overlap = CENTRES[mapped(CENTRES, a)[:, 2] > 21.0]
    err = np.linalg.norm(mapped(overlap, out) - mapped(overlap, a), axis=1)
    assert err.max() < 0.6, (err.max(), out)


def test_constant_moving_image_is_refused_with_the_reason(build):
    grid = Grid.from_shape((40, 40, 40), 2.5, origin=(-49.0, -49.0, -49.0))
    fixed = blobs(grid, CENTRES)
    flat = Image(np.full(grid.shape, 3.0, np.float32), grid)
    with pytest.raises(GeometryError, match="found no texture in it") as info:
        build("aligner", "block-matching", **FAST).align(fixed, flat, initial=np.eye(4))
    assert "overlap" in info.value.remedy


def test_affine_fit_refuses_blocks_in_one_plane_but_rigid_fits_them():
    p = np.c_[RNG.uniform(-50, 50, (60, 2)), np.zeros(60)]  # one layer of blocks
    q = p + (1.0, 2.0, 3.0)
    with pytest.raises(GeometryError, match="one plane"):
        fit_transform(p, q, "affine")
    assert np.allclose(fit_transform(p, q, "rigid")[:3, 3], (1.0, 2.0, 3.0))
