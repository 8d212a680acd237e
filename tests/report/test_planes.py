"""World-oriented planes and their drawing: a known world point appears where it should."""

from __future__ import annotations

import numpy as np
import pytest

from medfeat.geometry import Grid, Image
from medfeat.report import figures as F
from medfeat.report.planes import AXIAL, CORONAL, PLANES_3D, SAGITTAL, checkerboard, sample_plane


def rotated_grid() -> Grid:
    """Anisotropic spacing, an origin off zero and a direction that swaps and flips axes."""
    direction = np.array([[0.0, 1.0, 0.0], [-1.0, 0.0, 0.0], [0.0, 0.0, -1.0]])
    return Grid.from_shape(
        (20, 30, 24), (1.5, 2.0, 2.5), origin=(40.0, -10.0, 30.0), direction=direction
    )


def bright_point_image(grid: Grid, point_mm: np.ndarray) -> Image:
    """An image that is 1 at the voxel nearest ``point_mm`` and 0 elsewhere."""
    data = np.zeros(grid.shape, np.float32)
    k = np.round(grid.world_to_array_index(point_mm[None])[0]).astype(int)
    data[tuple(k)] = 1.0
    return Image(data, grid)


@pytest.fixture
def scene():
    grid = rotated_grid()
    lo, hi = grid.world_extent()
    voxel = np.array([5, 17, 9])  # (k, j, i)
    point = grid.array_index_to_world(voxel[None].astype(float))[0]
    assert np.all(point > lo) and np.all(point < hi)
    return grid, point, bright_point_image(grid, point)


@pytest.mark.parametrize("plane", PLANES_3D, ids=lambda p: p.name)
def test_the_sampled_plane_shows_a_point_at_its_world_coordinates(scene, plane):
    grid, point, image = scene
    view = sample_plane(image, plane, point, pixel_mm=0.5)
    r, c = np.unravel_index(np.nanargmax(view.data), view.data.shape)
    # the brightest pixel sits at the point's two in-plane world coordinates (within a voxel)
    assert abs(view.u_mm[c] - point[plane.u]) <= 1.3
    assert abs(view.v_mm[r] - point[plane.v]) <= 1.3
    assert view.data[r, c] > 0.5


@pytest.mark.parametrize("plane", PLANES_3D, ids=lambda p: p.name)
def test_a_drawn_point_lands_at_its_world_position_on_the_rendered_panel(scene, plane):
    grid, point, image = scene
    view = sample_plane(image, plane, point, pixel_mm=0.5)
    fig, axes = F.new_figure(1, 1, panel_in=4)
    ax = axes[0][0]
    F.show_view(ax, view, cmap="gray", vmin=0, vmax=1, scale_bar=False)
    for text in list(ax.texts):  # keep only the image (no orientation letters)
        text.remove()
    fig.canvas.draw()
    rgb = np.asarray(fig.canvas.buffer_rgba())[..., :3].astype(float)
    bright = rgb.sum(axis=-1) >= 3 * 250  # white: the point (the figure's margin is cut below)
    bbox = ax.get_window_extent()
    h = rgb.shape[0]
    rows, cols = np.nonzero(bright)
    inside = (
        (cols > bbox.x0 + 1)
        & (cols < bbox.x1 - 1)
        & (h - rows > bbox.y0 + 1)
        & (h - rows < bbox.y1 - 1)
    )
    x_disp, y_disp = cols[inside].mean(), h - rows[inside].mean()
    u, v = ax.transData.inverted().transform((x_disp, y_disp))
    assert abs(u - point[plane.u]) <= 1.5 and abs(v - point[plane.v]) <= 1.5


def test_panels_follow_radiological_orientation():
    grid = Grid.from_shape((40, 40, 40), 1.0, origin=(-20.0, -20.0, -20.0))
    left = np.array([15.0, 0.0, 0.0])  # +x is the patient's left
    anterior = np.array([0.0, -15.0, 0.0])  # -y is anterior
    superior = np.array([0.0, 0.0, 15.0])  # +z is superior
    image = Image(np.zeros(grid.shape, np.float32), grid)
    fig, axes = F.new_figure(1, 3)
    for ax, plane in zip(axes[0], (AXIAL, CORONAL, SAGITTAL), strict=True):
        F.show_view(ax, sample_plane(image, plane), scale_bar=False)
    fig.canvas.draw()

    def display(ax, view_plane, p):
        return ax.transData.transform(p[[view_plane.u, view_plane.v]])

    ax_axial, ax_cor, ax_sag = axes[0]
    centre = np.zeros(3)
    # axial: patient left on the panel's right, anterior up
    assert display(ax_axial, AXIAL, left)[0] > display(ax_axial, AXIAL, centre)[0]
    assert display(ax_axial, AXIAL, anterior)[1] > display(ax_axial, AXIAL, centre)[1]
    # coronal: superior up, left on the right
    assert display(ax_cor, CORONAL, superior)[1] > display(ax_cor, CORONAL, centre)[1]
    assert display(ax_cor, CORONAL, left)[0] > display(ax_cor, CORONAL, centre)[0]
    # sagittal: superior up, anterior on the left
    assert display(ax_sag, SAGITTAL, superior)[1] > display(ax_sag, SAGITTAL, centre)[1]
    assert display(ax_sag, SAGITTAL, anterior)[0] < display(ax_sag, SAGITTAL, centre)[0]


@pytest.mark.parametrize(
    "width_mm, expected", [(400.0, 100.0), (200.0, 50.0), (90.0, 20.0), (7.0, 1.0), (3.0, 0.5)]
)
def test_scale_bar_length_is_a_round_number_near_a_quarter_of_the_panel(width_mm, expected):
    assert F.nice_length_mm(width_mm) == pytest.approx(expected)


def test_scale_bar_is_as_long_as_it_says_on_the_rendered_panel():
    grid = Grid.from_shape((50, 60, 80), (2.0, 1.0, 0.5), origin=(0.0, 0.0, 0.0))
    image = Image(np.random.default_rng(0).random(grid.shape).astype(np.float32), grid)
    view = sample_plane(image, AXIAL)
    fig, axes = F.new_figure(1, 1)
    ax = axes[0][0]
    F.show_view(ax, view, scale_bar=False)
    bar, length = F.add_scale_bar(ax, view)
    fig.canvas.draw()
    assert length == F.nice_length_mm(view.width_mm)
    assert bar.get_width() == pytest.approx(length)  # in data units = mm
    # on screen: the bar spans length / width of the panel's drawn width
    x0, x1 = bar.get_window_extent().x0, bar.get_window_extent().x1
    axes_px = ax.get_window_extent().width
    assert (x1 - x0) / axes_px == pytest.approx(length / view.width_mm, rel=0.03)
    assert any(t.get_text() == f"{length:g} mm" for t in ax.texts)


def test_checkerboard_alternates_every_tile():
    grid = Grid.from_shape((1, 40, 40), 1.0)
    a = sample_plane(Image(np.zeros(grid.shape, np.float32), grid), AXIAL, pixel_mm=1.0)
    b = a.with_data(np.ones_like(a.data))
    board = checkerboard(a, b, tile_mm=10.0).data
    assert board[0, 0] == 0 and board[0, 10] == 1 and board[10, 0] == 1 and board[10, 10] == 0
    assert board[0:10, 0:10].max() == 0 and board[0:10, 10:20].min() == 1


def test_points_outside_the_image_are_blank_not_edge_values():
    grid = Grid.from_shape((10, 10, 10), 1.0)
    image = Image(np.ones(grid.shape, np.float32), grid)
    lo, hi = grid.world_extent()
    view = sample_plane(image, AXIAL, bounds=(lo - 5.0, hi + 5.0), pixel_mm=1.0)
    assert np.isnan(view.data[0, 0]) and view.data[7, 7] == pytest.approx(1.0)


def test_a_world_affine_shows_the_image_where_the_transform_puts_it(scene):
    """Panel point x shows the image at A x: a bright point at p appears at A^-1 p."""
    grid, point, image = scene
    a = np.eye(4)
    a[:3, 3] = (3.0, -2.0, 2.5)
    shown_at = point - a[:3, 3]
    lo, hi = grid.world_extent()
    bounds = (lo - 10.0, hi + 10.0)  # wide enough for the shifted point
    for plane in PLANES_3D:
        view = sample_plane(
            image, plane, shown_at, bounds=bounds, pixel_mm=0.5, world_affine=a, fill=0.0
        )
        r, c = np.unravel_index(np.argmax(view.data), view.data.shape)
        assert view.data[r, c] > 0.5
        assert abs(view.u_mm[c] - shown_at[plane.u]) <= 1.3
        assert abs(view.v_mm[r] - shown_at[plane.v]) <= 1.3
