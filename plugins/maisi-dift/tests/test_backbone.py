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
    gen = torch.Generator().manual_seed(42)  # the reference's noise seed, not the weights' seed
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
            # the spacing in float16 (1.2 mm -> 1.2001953125 mm), then x 100
            spacing_tensor=torch.tensor([[150.0, 120.01953125, 200.0]]),
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


def permuted_image(spacing=(0.7871, 1.2, 2.5)) -> Image:
    """File axes i, j, k along world S, P, L: RAS reorientation permutes the axes (x <- k, z <- i)."""
    rng = np.random.default_rng(2)
    direction = np.array([[0.0, 0.0, 1.0], [0.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    grid = Grid.from_shape(
        (30, 36, 40), spacing=spacing, origin=(3.0, -4.0, 5.0), direction=direction
    )
    return Image(rng.random((30, 36, 40)).astype(np.float32), grid)


def seen_spacing(tiny_config, image: Image, **options) -> torch.Tensor:
    bb = MaisiDiftBackbone(tiny_config(levels=[0], **options), seed=0)
    seen = []
    bb.unet.spacing_layer.register_forward_pre_hook(lambda m, args: seen.append(args[0].clone()))
    bb.extract(image)
    return seen[0]


def test_reorientation_of_the_permuted_image_permutes_the_axes(tiny_backbone):
    from medfeat_maisi_dift.preprocess import ras_axis_of_file_axes, reorient_to_ras

    image = permuted_image()
    assert ras_axis_of_file_axes(image.grid) == (2, 1, 0)
    arr, ras_grid = reorient_to_ras(image)
    assert arr.shape == (30, 36, 40)  # (x, y, z) <- (k, j, i) sizes
    np.testing.assert_allclose(ras_grid.spacing, (2.5, 1.2, 0.7871))


# expected conditioning from the documented maths: float16(spacing mm) x 100, file axis order;
# float16(0.7871) = 0.787109375 and float16(1.2) = 1.2001953125 exactly, 2.5 is exact
FILE_ORDER = [78.7109375, 120.01953125, 250.0]


@pytest.mark.parametrize(
    "options, expected",
    [
        ({}, FILE_ORDER),  # reference: the file's own axis order, float16
        ({"spacing_axis_order": "ras"}, FILE_ORDER[::-1]),  # departure: the network's axes
        ({"spacing_float16": False}, [78.71, 120.0, 250.0]),  # departure: float32
    ],
)
def test_spacing_conditioning_of_an_axis_permuted_file(tiny_config, options, expected):
    got = seen_spacing(tiny_config, permuted_image(), **options)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, torch.tensor([expected]), rtol=0, atol=1e-5)


def test_resized_spacing_in_file_order(tiny_config):
    image = permuted_image()
    got = seen_spacing(tiny_config, image, spacing_input="resized")
    # each file axis (sizes i, j, k = 40, 36, 30) is stretched to 32 voxels over the same box
    mm = [s * n / 32 for s, n in zip(image.grid.spacing, image.grid.size_ijk, strict=True)]
    expected = torch.tensor([mm], dtype=torch.float16).float() * 100
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)
    assert not torch.allclose(got, seen_spacing(tiny_config, image))


# ------------------------------------------------------------------------------------- noise
RANDN = torch.randn  # the real one, for the expected streams


@pytest.fixture
def draws(monkeypatch):
    """Every tensor drawn by ``torch.randn`` during the test, in order."""
    record: list[torch.Tensor] = []
    real = torch.randn

    def spy(*args, **kwargs):
        out = real(*args, **kwargs)
        record.append(out.clone())
        return out

    monkeypatch.setattr(torch, "randn", spy)
    return record


def reference_stream(shapes, seed=42) -> list[torch.Tensor]:
    """What one generator seeded ``seed`` gives for ``shapes`` drawn in that order."""
    gen = torch.Generator().manual_seed(seed)
    return [RANDN(s, generator=gen) for s in shapes]


def pair_images(ct_image) -> tuple[Image, Image]:
    """A and B of different sizes (latents 8x8x8 and 16x8x8 in MONAI x, y, z)."""
    g = ct_image.grid
    big = np.concatenate([ct_image.numpy(), ct_image.numpy()], axis=2)  # i: 40 -> 80 -> 64
    return ct_image, Image(big, Grid(big.shape, g.spacing, g.origin, g.direction))


def test_pair_stream_draws_what_one_generator_seeded_42_draws(tiny_config, ct_image, draws):
    a, b = pair_images(ct_image)
    bb = MaisiDiftBackbone(tiny_config(levels=[3]), seed=0)
    bb.extract(a)
    bb.extract(b)
    shapes = [tuple(t.shape) for t in draws]
    # A's posterior and diffusion noise, then B's
    assert shapes == [(1, 4, 8, 8, 8)] * 2 + [(1, 4, 16, 8, 8)] * 2
    for got, want in zip(draws, reference_stream(shapes), strict=True):
        torch.testing.assert_close(got, want, rtol=0, atol=0)
    bb.extract(a)  # a third extraction starts the next pair: the stream restarts
    torch.testing.assert_close(draws[4], reference_stream(shapes[:1])[0], rtol=0, atol=0)


def test_extract_pair_restarts_the_stream(tiny_config, ct_image):
    a, b = pair_images(ct_image)
    bb = MaisiDiftBackbone(tiny_config(levels=[3]), seed=0)
    bb.extract(b)  # an unpaired extraction before the pair does not shift its noise
    fa, fb = bb.extract_pair(a, b)
    fresh = MaisiDiftBackbone(tiny_config(levels=[3]), seed=0)
    torch.testing.assert_close(fa.levels[0].data, fresh.extract(a).levels[0].data)
    torch.testing.assert_close(fb.levels[0].data, fresh.extract(b).levels[0].data)


def test_per_image_noise_restarts_for_every_image(tiny_config, ct_image, draws):
    a, b = pair_images(ct_image)
    bb = MaisiDiftBackbone(tiny_config(levels=[3], noise="per-image", noise_seed=5), seed=0)
    bb.extract(a)
    bb.extract(b)
    shapes = [tuple(t.shape) for t in draws]
    want = reference_stream(shapes[:2], seed=5) + reference_stream(shapes[2:], seed=5)
    for got, w in zip(draws, want, strict=True):
        torch.testing.assert_close(got, w, rtol=0, atol=0)


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


def test_memory_refusal_names_the_settings(tiny_config, ct_image, monkeypatch):
    import medfeat.resources as resources
    from medfeat.errors import ResourceError

    streaming = MaisiDiftBackbone(tiny_config(architecture="v1", size_multiple_vox=128), seed=0)
    monai = MaisiDiftBackbone(
        tiny_config(architecture="v1", size_multiple_vox=128, encoder="monai"), seed=0
    )
    recompute = MaisiDiftBackbone(
        tiny_config(architecture="v1", size_multiple_vox=128, encoder_recompute=True), seed=0
    )
    assert monai.estimate_memory_bytes(ct_image) > streaming.estimate_memory_bytes(ct_image)
    assert streaming.estimate_memory_bytes(ct_image) > recompute.estimate_memory_bytes(ct_image)
    monkeypatch.setattr(resources, "available_bytes", lambda device: 2**30)
    with pytest.raises(ResourceError) as err:
        resources.check_fits(streaming, "Feature extraction", "cpu", ct_image)
    assert "encoder_slab_mib" in err.value.remedy and "encoder: streaming" in err.value.remedy
    assert "encoder_recompute: true" in err.value.remedy
