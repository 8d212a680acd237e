"""Slicing: LPS-canonical slice views that keep every voxel in place, and intensity windows."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from medfeat_dinov3.config import Dinov3SlicesConfig
from medfeat_dinov3.slicing import normalise_intensity, slice_view

from medfeat.geometry import Grid

PERMUTED = np.array([[0, 0, 1], [-1, 0, 0], [0, 1, 0]], dtype=float)  # oblique storage order


@pytest.mark.parametrize("direction", [np.eye(3), np.diag([-1.0, -1.0, 1.0]), PERMUTED])
@pytest.mark.parametrize("plane", ["axial", "coronal", "sagittal"])
def test_slice_view_keeps_every_voxel_in_place(direction, plane):
    grid = Grid((5, 6, 7), (1.0, 2.0, 3.0), (10.0, -20.0, 5.0), direction)
    data = torch.arange(grid.num_voxels, dtype=torch.float32).reshape(grid.shape)
    view = slice_view(grid, plane)
    viewed = view.apply(data)
    assert tuple(viewed.shape) == view.grid.shape
    idx = np.argwhere(np.ones(view.grid.shape))
    world = view.grid.array_index_to_world(idx)
    back = np.rint(grid.world_to_array_index(world)).astype(int)
    assert np.array_equal(viewed.numpy()[tuple(idx.T)], data.numpy()[tuple(back.T)])
    normal = {"axial": 2, "coronal": 1, "sagittal": 0}[plane]
    # axis 0 of the view steps along the plane's world normal
    assert np.argmax(np.abs(view.grid.direction[:, 2])) == normal


def test_intensity_windows():
    config = Dinov3SlicesConfig(model="tiny", random_weights=True)
    ct = torch.tensor([-1000.0, -150.0, 50.0, 250.0, 1000.0])
    out, modality = normalise_intensity(ct, config)
    assert modality == "ct"
    torch.testing.assert_close(out, torch.tensor([0.0, 0.0, 0.5, 1.0, 1.0]))
    mr = torch.linspace(0, 1000, 1001)
    out, modality = normalise_intensity(mr, config.model_copy(update={"mr_percentiles": (10, 90)}))
    assert modality == "mr"
    assert out[100] == 0 and out[900] == 1 and abs(float(out[500]) - 0.5) < 1e-5
