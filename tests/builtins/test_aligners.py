"""The built-in pre-alignments: centroids and the SimpleITK rigid/affine fit (4x4, fixed -> moving)."""

import numpy as np
import pytest

from medfeat.geometry import Grid, Image


def blobs(grid: Grid, centres: np.ndarray, sigma_mm: float = 6.0) -> Image:
    pts = grid.array_index_to_world(np.indices(grid.shape).reshape(3, -1).T)
    values = np.zeros(len(pts))
    for i, c in enumerate(centres):
        values += (1.0 + 0.25 * i) * np.exp(-np.sum((pts - c) ** 2, 1) / (2 * sigma_mm**2))
    return Image(values.reshape(grid.shape).astype(np.float32), grid)


def moved(centres: np.ndarray, a: np.ndarray) -> np.ndarray:
    """Where fixed-image content at ``centres`` sits in the moving image (``A @ x``)."""
    return centres @ a[:3, :3].T + a[:3, 3]


CENTRES = np.array(
    [[-15.0, -10.0, -8.0], [12.0, 8.0, -4.0], [0.0, 14.0, 10.0], [10.0, -12.0, 12.0], [-8, 6, 0]]
)


def test_registered_as_aligners(build):
    assert build("aligner", "centroids").config.of == "body"
    with pytest.raises(Exception, match="shrink_factors"):
        build("aligner", "affine", shrink_factors=[4, 2], smoothing_sigmas_mm=[1.0])


@pytest.mark.parametrize("of", ["image", "body"])
def test_centroids_recover_a_translation_between_differently_stored_images(build, of):
    fixed_grid = Grid.from_shape((24, 24, 24), 2.5, origin=(-30.0, -30.0, -30.0))
    a = np.eye(4)
    a[:3, 3] = (7.0, -4.0, 9.0)
    # the same box moved by the translation, stored with x and z flipped and 3 mm slices
    origin = a[:3, 3] + (27.5, -30.0, 27.0)
    moving_grid = Grid((20, 24, 24), (2.5, 2.5, 3.0), origin, np.diag([-1.0, 1.0, -1.0]))
    fixed = blobs(fixed_grid, CENTRES)
    moving = blobs(moving_grid, moved(CENTRES, a))
    out = build("aligner", "centroids", of=of).align(fixed, moving, initial=np.eye(4))
    tolerance = 0.2 if of == "image" else 2.0
    assert np.allclose(out[:3, :3], np.eye(3))
    assert np.allclose(out[:3, 3], a[:3, 3], atol=tolerance), out[:3, 3]


def test_centroids_keep_the_linear_part_so_far(build):
    grid = Grid.from_shape((8, 8, 8), 2.0)
    image = blobs(grid, CENTRES[:1] * 0.2)
    initial = np.eye(4)
    initial[:3, :3] = np.diag([1.1, 1.0, 0.9])
    out = build("aligner", "centroids", of="image-centres").align(image, image, initial=initial)
    assert np.allclose(out[:3, :3], initial[:3, :3])
    centre = grid.array_index_to_world(np.array([[3.5, 3.5, 3.5]]))[0]
    assert np.allclose(out[:3, :3] @ centre + out[:3, 3], centre)


@pytest.mark.parametrize(("transform", "metric"), [("rigid", "ncc"), ("affine", "mi")])
def test_affine_fit_recovers_a_rotation_and_translation(build, transform, metric):
    grid = Grid.from_shape((28, 28, 28), 2.5, origin=(-34.0, -34.0, -34.0))
    angle = np.deg2rad(6.0)
    a = np.eye(4)
    a[:3, :3] = [[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]]
    a[:3, 3] = (3.0, -2.0, 2.5)
    fixed = blobs(grid, CENTRES)
    moving = blobs(grid, moved(CENTRES, a))
    aligner = build(
        "aligner",
        "affine",
        transform=transform,
        metric=metric,
        shrink_factors=[2, 1],
        smoothing_sigmas_mm=[2.0, 0.0],
        iterations=200,
    )
    out = aligner.align(fixed, moving, initial=np.eye(4))
    err = np.linalg.norm(moved(CENTRES, out) - moved(CENTRES, a), axis=1)
    assert err.max() < 1.0, (err, out)
