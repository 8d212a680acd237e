"""The maisi-dift backbone: extraction numerics and geometry on tiny random MAISI networks."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from medfeat_maisi_dift.backbone import MaisiDiftBackbone

from medfeat.geometry import Grid, Image


def ras_image(data_xyz: np.ndarray, spacing=(1.5, 1.2, 2.0)) -> Image:
    """An image whose array axes already point R, A, S: data given in MONAI (x, y, z) layout."""
    grid = Grid.from_shape(
        data_xyz.shape[::-1],
        spacing=spacing,
        origin=(4.0, 2.0, -7.0),
        direction=np.diag([-1, -1, 1]),
    )
    return Image(np.ascontiguousarray(data_xyz.transpose(2, 1, 0)), grid)


def test_features_equal_independent_monai_computation(tiny_config):
    """Same weights and noise: window, stretch, encode+sample, scale, add_noise, hooks on up_blocks."""
    from monai.networks.schedulers import DDPMScheduler

    rng = np.random.default_rng(1)
    hu = rng.uniform(-1200, 1200, (40, 30, 36)).astype(np.float32)  # (x, y, z)
    cfg = tiny_config(intensity="hu", timestep=30, random_scale_factor=0.8)
    bb = MaisiDiftBackbone(cfg, seed=7)
    fmap = bb.extract(ras_image(hu))

    x = ((torch.from_numpy(hu).clamp(-1000, 1000) + 1000) / 2000)[None, None]
    x = F.interpolate(x, size=(32, 32, 32), mode="trilinear", align_corners=False)
    gen = torch.Generator().manual_seed(7)
    captured = {}
    hooks = [
        bb.unet.up_blocks[i].register_forward_hook(
            lambda m, i_, o, i=i: captured.__setitem__(i, o.clone())
        )
        for i in range(4)
    ]
    with torch.no_grad():
        mu, sigma = bb.autoencoder.encode(x)
        z = (mu + sigma * torch.randn(mu.shape, generator=gen)) * 0.8
        noise = torch.randn(z.shape, generator=gen)
        sched = DDPMScheduler(1000, "scaled_linear_beta", beta_start=0.0015, beta_end=0.0195)
        zt = sched.add_noise(z, noise, torch.tensor([30]))
        thorax = torch.tensor([[0.0, 100.0, 0.0, 0.0]])
        bb.unet(
            zt,
            torch.tensor([30]),
            top_region_index_tensor=thorax,
            bottom_region_index_tensor=thorax,
            spacing_tensor=torch.tensor([[150.0, 120.0, 200.0]]),
        )
    for h in hooks:
        h.remove()
    assert [lv.name for lv in fmap.levels] == [f"up_block{i}" for i in range(4)]
    for i, level in enumerate(fmap.levels):
        ref = captured[i][0].permute(0, 3, 2, 1)  # MONAI (x, y, z) -> numpy (z, y, x)
        assert level.data.shape == ref.shape
        torch.testing.assert_close(level.data, ref, atol=1e-4, rtol=1e-4)


def test_level_grids_cover_the_image_box(tiny_backbone, ct_image):
    fmap = tiny_backbone.extract(ct_image)
    assert [int(lv.data.shape[0]) for lv in fmap.levels] == [16, 16, 8, 8]  # tiny: reversed
    box = _edges(ct_image.grid)
    for lv in fmap.levels:
        assert lv.grid.shape == tuple(lv.data.shape[1:])
        np.testing.assert_allclose(_edges(lv.grid), box, atol=1e-6)


def _edges(grid: Grid) -> np.ndarray:
    """World positions of the outer voxel corners (what align_corners=False resizing keeps)."""
    lo = grid.index_to_world(np.full((1, 3), -0.5))
    hi = grid.index_to_world(np.asarray(grid.size_ijk, dtype=float)[None] - 0.5)
    return np.sort(np.concatenate([lo, hi]), axis=0)


def test_reorientation_is_exact_in_world_space(tiny_backbone, ct_image):
    """The same voxels stored LPS-ordered or RAS-ordered give the same features at the same places."""
    g = ct_image.grid
    flipped = ct_image.numpy()[:, ::-1, ::-1].copy()  # numpy (k, j, i): flip j and i
    far = g.index_to_world(np.array([[g.size_ijk[0] - 1, g.size_ijk[1] - 1, 0]]))[0]
    ras = Image(flipped, Grid(g.shape, g.spacing, tuple(far), np.diag([-1.0, -1.0, 1.0])))
    a, b = tiny_backbone.extract(ct_image), tiny_backbone.extract(ras)
    for la, lb in zip(a.levels, b.levels, strict=True):
        assert la.grid.same_as(lb.grid, atol_mm=1e-6)
        torch.testing.assert_close(la.data, lb.data)


def test_translation_moves_grids_not_features(tiny_backbone, ct_image):
    g = ct_image.grid
    moved = Image(
        ct_image.data, Grid(g.shape, g.spacing, tuple(np.add(g.origin, (3, -2, 7))), g.direction)
    )
    a, b = tiny_backbone.extract(ct_image), tiny_backbone.extract(moved)
    for la, lb in zip(a.levels, b.levels, strict=True):
        np.testing.assert_allclose(np.subtract(lb.grid.origin, la.grid.origin), (3, -2, 7))
        torch.testing.assert_close(la.data, lb.data)


def test_options_change_what_they_should(tiny_config, ct_image):
    def level3(seed, **kw):
        return MaisiDiftBackbone(tiny_config(levels=[3], **kw), seed=seed).extract(ct_image)

    ref = level3(1).levels[0].data
    torch.testing.assert_close(level3(1).levels[0].data, ref)  # seeded: reproducible
    assert not torch.allclose(level3(1, posterior="mean").levels[0].data, ref)
    assert not torch.allclose(level3(1, timestep=300).levels[0].data, ref)
    norm = MaisiDiftBackbone(tiny_config(levels=[1, 3], normalise_levels=True), seed=1)
    for lv in norm.extract(ct_image).levels:
        torch.testing.assert_close(lv.data.norm(dim=0), torch.ones(lv.data.shape[1:]))


@pytest.mark.parametrize("mode, expected", [("original", (2.0, 1.2, 1.5)), ("resized", None)])
def test_spacing_input(tiny_config, ct_image, mode, expected):
    bb = MaisiDiftBackbone(tiny_config(spacing_input=mode, levels=[0]), seed=0)
    seen = []
    bb.unet.spacing_layer.register_forward_pre_hook(lambda m, args: seen.append(args[0].clone()))
    bb.extract(ct_image)
    # the RAS array of an identity-direction LPS image keeps the axis order (x flipped): spacing x,y,z
    if expected is None:  # resized: each axis stretched to 32 voxels over the same box
        expected = tuple(
            s * n / 32 for s, n in zip(ct_image.grid.spacing, ct_image.grid.size_ijk, strict=True)
        )
    else:
        expected = ct_image.grid.spacing
    torch.testing.assert_close(seen[0], torch.tensor([expected], dtype=torch.float32) * 100)


def test_bad_input_is_a_clear_error(tiny_backbone):
    from medfeat.errors import DataError

    img2d = Image(np.zeros((20, 20), np.float32), Grid.from_shape((20, 20)))
    with pytest.raises(DataError, match="single-channel 3D CT"):
        tiny_backbone.extract(img2d)


def test_factory_records_random_weights_in_the_run_context(tiny_config, ct_image):
    from medfeat_maisi_dift.backbone import make_maisi_dift

    from medfeat.api import RunContext

    context = RunContext(seed=4)
    backbone = make_maisi_dift(tiny_config(levels=[3]), context)
    assert context.random_weights == ["maisi-dift tiny networks (seed 4)"]
    assert backbone.seed == 4 and backbone.scale_factor == 1.0
    same = MaisiDiftBackbone(tiny_config(levels=[3]), seed=4)  # the seed fixes the random weights
    torch.testing.assert_close(
        backbone.extract(ct_image).levels[0].data, same.extract(ct_image).levels[0].data
    )
