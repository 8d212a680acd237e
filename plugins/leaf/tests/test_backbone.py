"""2D backbones (the teachers): the weight-free descriptor's geometry, DINOv2 from a local folder, token resizing."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from medfeat_leaf.backbone import Dinov2Teacher, PatchDescriptor2D, teacher_tokens

from medfeat.errors import CheckpointError, DataError
from medfeat.geometry import Grid, Image


def _texture(h, w, seed=0):
    rng = np.random.default_rng(seed)
    return rng.random((3, h, w)).astype(np.float32)


def test_patch_descriptor_is_weight_free_deterministic_and_unit_norm():
    d = PatchDescriptor2D(patch_size_px=8, orientation_bins=8, scales=(1, 2))
    image = Image(_texture(64, 48), Grid.from_shape((64, 48)))
    a, b = d.extract(image), d.extract(image)
    tok = a.levels[0].data
    assert tok.shape == (d.dim, 8, 6)
    torch.testing.assert_close(tok, b.levels[0].data)
    torch.testing.assert_close(tok.norm(dim=0), torch.ones(8, 6))
    assert not any(isinstance(v, torch.nn.Parameter) for v in vars(d).values())


def test_patch_tokens_sit_at_patch_centres_and_shift_with_the_image():
    p = 8
    d = PatchDescriptor2D(patch_size_px=p, scales=(1,))
    grid = Grid((64, 64), (0.5, 0.25), (10.0, 20.0), np.array([[0.0, -1.0], [1.0, 0.0]]))
    img = _texture(64, 64 + p)
    fm = d.extract(Image(img[:, :, :64], grid))
    tg = fm.levels[0].grid
    # token (0, 0) is the centre of pixels 0..7 in both axes; spacing grows by the patch size
    np.testing.assert_allclose(tg.array_index_to_world(np.array([[0.0, 0.0]])),
                               grid.array_index_to_world(np.array([[3.5, 3.5]])))  # fmt: skip
    np.testing.assert_allclose(tg.spacing, (4.0, 2.0))
    np.testing.assert_allclose(tg.direction, grid.direction)
    # the image shifted left by one patch gives the tokens shifted by one column (away from the
    # image borders, where the gradient sees the padding)
    shifted = d.extract(Image(img[:, :, p : 64 + p], grid)).levels[0].data
    torch.testing.assert_close(shifted[:, :, 1:6], fm.levels[0].data[:, :, 2:7])
    assert not torch.allclose(shifted[:, :, 1:6], fm.levels[0].data[:, :, 1:6])


def test_teacher_tokens_resize_to_the_student_grid():
    d = PatchDescriptor2D(patch_size_px=8)
    rgb = torch.from_numpy(_texture(64, 64))
    tok = teacher_tokens(d, rgb, (4, 4))
    assert tok.shape == (16, d.dim)

    class ExtractOnly:  # any registered backbone: extract(Image) -> FeatureMap
        def extract(self, image):
            return d.extract(image)

    torch.testing.assert_close(teacher_tokens(ExtractOnly(), rgb, (4, 4)), tok)


def test_2d_teacher_rejects_3d_images():
    with pytest.raises(DataError, match="2D"):
        PatchDescriptor2D().extract(
            Image(np.zeros((4, 16, 16), np.float32), Grid.from_shape((4, 16, 16)))
        )


def test_dinov2_with_registers_from_a_local_folder(tmp_path):
    from transformers import Dinov2WithRegistersConfig, Dinov2WithRegistersModel

    cfg = Dinov2WithRegistersConfig(
        hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
        patch_size=14, image_size=56, num_register_tokens=4,
    )  # fmt: skip
    torch.manual_seed(0)
    Dinov2WithRegistersModel(cfg).save_pretrained(tmp_path / "dino")
    teacher = Dinov2Teacher(tmp_path / "dino", image_size_px=56)
    grid = Grid((70, 42), (0.5, 0.5), (0.0, 0.0), np.eye(2))
    fm = teacher.extract(Image(_texture(70, 42), grid))
    level = fm.levels[0]
    assert level.data.shape == (32, 4, 4) and teacher.dim == 32  # CLS + 4 registers dropped
    np.testing.assert_allclose(level.grid.spacing, (0.5 * 42 / 4, 0.5 * 70 / 4))
    with pytest.raises(CheckpointError, match="no config.json"):
        Dinov2Teacher(tmp_path / "nothing")
