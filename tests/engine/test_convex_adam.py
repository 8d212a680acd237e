import pytest
import torch

from medfeat.engine.convex_adam import (
    ConvexAdamConfig,
    convex_adam,
    coupled_convex,
    displacement_candidates,
    make_inverse_consistent,
    ssd_cost_volume,
)
from medfeat.engine.mind import mind_ssc
from medfeat.engine.warp import compose, jacobian_determinant_vox, warp

MM = 2.0  # feature spacing of these tests: the defaults are the original voxel defaults at 2 mm


def test_candidates_cover_the_cube():
    c = displacement_candidates(2)
    assert c.shape == (125, 3)
    assert c.min() == -2 and c.max() == 2
    assert torch.equal(c[62], torch.zeros(3))


def test_cost_volume_matches_brute_force_and_finds_shift():
    fixed = torch.rand(1, 4, 8, 7, 9)
    moving = torch.roll(fixed, shifts=(1, -1, 2), dims=(2, 3, 4))
    cost = ssd_cost_volume(fixed, moving, radius=2, smoothing_passes=0)
    cand = displacement_candidates(2)
    pad = torch.nn.functional.pad(moving, (2,) * 6)[0]
    for k in (0, 31, 62, 100, 124):
        a, b, c = (int(v) + 2 for v in cand[k])
        ref = (fixed[0] - pad[:, a : a + 8, b : b + 7, c : c + 9]).pow(2).sum(0)
        assert torch.allclose(cost[..., k], ref, atol=1e-4)
    best = cand[cost[3, 3, 4].argmin()]
    assert best.tolist() == [1.0, -1.0, 2.0]


def test_coupled_convex_returns_constant_field_for_consistent_costs():
    cand = displacement_candidates(2)
    target = torch.tensor([1.0, 0.0, -1.0])
    cost = (cand - target).pow(2).sum(1).view(1, 1, 1, -1).expand(6, 5, 4, -1).contiguous()
    field = coupled_convex(cost, cand, (0.1, 1.0))
    assert torch.allclose(field, target.view(1, 3, 1, 1, 1).expand(1, 3, 6, 5, 4))


def test_inverse_consistency_reduces_composition_error():
    g = torch.Generator().manual_seed(1)
    coarse = torch.randn(1, 3, 3, 3, 3, generator=g)
    fwd = torch.nn.functional.interpolate(
        coarse, size=(12, 12, 12), mode="trilinear", align_corners=True
    )
    bwd = -fwd + 0.3 * torch.randn(1, 3, 12, 12, 12, generator=g)  # a poor inverse
    before = compose(fwd, bwd).pow(2).mean()
    f2, b2 = make_inverse_consistent(fwd, bwd, iterations=15)
    after = compose(f2, b2).pow(2).mean()
    assert after < 0.2 * before


def test_recovers_constant_translation_of_blob_phantom(blob_phantom):
    shift = (3.0, -2.0, 2.0)  # voxels; fixed(x) = moving(x + shift)
    moving = blob_phantom((32, 32, 32))
    u = torch.tensor(shift).view(1, 3, 1, 1, 1).expand(1, 3, 32, 32, 32)
    fixed = warp(moving, u)
    params = ConvexAdamConfig(
        grid_spacing_mm=8,
        search_radius_mm=16,
        adam_iterations=30,
        io_max_points=0,
        compute_inverse=True,
    )
    calls = []
    fwd, bwd = convex_adam(
        mind_ssc(fixed, 1, 1),
        mind_ssc(moving, 1, 1),
        params,
        progress=lambda step, frac: calls.append((step, frac)),
        spacing_mm=MM,
    )
    assert fwd.shape == (1, 3, 32, 32, 32)
    inner = fwd[:, :, 8:-8, 8:-8, 8:-8]
    err = (inner - u[:, :, 8:-8, 8:-8, 8:-8]).norm(dim=1)
    assert err.mean() < 0.35
    assert (jacobian_determinant_vox(fwd) > 0).all()
    assert bwd is not None and torch.allclose(
        bwd[:, :, 8:-8, 8:-8, 8:-8].mean((2, 3, 4)), -torch.tensor([shift]), atol=0.4
    )
    steps = {s for s, _ in calls}
    assert {"cost_volume", "coupled_convex", "instance_optimisation"} <= steps
    assert all(0.0 <= f <= 1.0 for _, f in calls)


def test_coarse_only_and_shape_validation(blob_phantom):
    img = blob_phantom((24, 24, 24))
    feat = mind_ssc(img, 1, 1)
    params = ConvexAdamConfig(
        grid_spacing_mm=8, search_radius_mm=8, adam_iterations=0, compute_inverse=False
    )
    fwd, bwd = convex_adam(feat, feat, params, spacing_mm=MM)
    assert bwd is None
    assert fwd.abs().max() < 1e-5
    try:
        convex_adam(feat, feat[..., :-1], params, spacing_mm=MM)
    except ValueError:
        pass
    else:  # pragma: no cover
        raise AssertionError("mismatched shapes must raise")


def test_inverse_at_half_resolution_still_inverts_a_smooth_field():
    from medfeat.engine.convex_adam import ConvexAdamConfig, convex_adam
    from medfeat.engine.warp import warp

    torch.manual_seed(0)
    shape = (24, 28, 32)
    base = torch.randn(1, 12, *shape)
    base = torch.nn.functional.avg_pool3d(base, 5, stride=1, padding=2)
    moving = torch.roll(base, shifts=(1, -2, 1), dims=(2, 3, 4))
    params = dict(grid_spacing_mm=4, search_radius_mm=8, adam_iterations=20, compute_inverse=True)
    fwd, bwd_full = convex_adam(base, moving, ConvexAdamConfig(**params), spacing_mm=MM)
    half = ConvexAdamConfig(**params, inverse_spacing_mm=2 * MM)
    _, bwd_half = convex_adam(base, moving, half, spacing_mm=MM)
    assert bwd_half.shape == fwd.shape
    inner = (slice(None), slice(None), slice(4, -4), slice(4, -4), slice(4, -4))
    # composition fwd o bwd ~ identity, and both inverses agree to a fraction of a voxel
    residual = (bwd_half + warp(fwd, bwd_half))[inner].abs().mean()
    assert residual < 0.1, residual
    assert (bwd_half - bwd_full)[inner].abs().mean() < 0.1


def test_seed_picks_the_random_voxel_subsets_of_the_adam_steps(blob_phantom):
    moving = blob_phantom((16, 16, 16))
    fixed = torch.roll(moving, shifts=(1, 0, -1), dims=(2, 3, 4))
    config = ConvexAdamConfig(
        grid_spacing_mm=8,
        search_radius_mm=8,
        io_max_points=64,
        adam_iterations=5,
        compute_inverse=False,
    )
    first, _ = convex_adam(fixed, moving, config, seed=0, spacing_mm=MM)
    again, _ = convex_adam(fixed, moving, config, seed=0, spacing_mm=MM)
    other, _ = convex_adam(fixed, moving, config, seed=1, spacing_mm=MM)
    assert torch.equal(first, again)
    assert not torch.equal(first, other)


def test_the_yaml_options_of_convex_adam_are_the_engine_config():
    import pydantic

    from medfeat.plugins import get_registry

    assert get_registry().get("optimiser", "convex-adam").config is ConvexAdamConfig
    config = ConvexAdamConfig.model_validate({"coupling_schedule": [0.1, 1]})
    assert config.coupling_schedule == (0.1, 1.0)
    with pytest.raises(pydantic.ValidationError):
        ConvexAdamConfig(grid_spacing_mm=0)


def test_lengths_in_mm_become_whole_voxels_of_the_feature_grid():
    from medfeat.engine.convex_adam_config import voxel_plan

    lung = ConvexAdamConfig(
        io_spacing_mm=2, io_control_spacing_mm=8, adam_lr_mm=2, inverse_spacing_mm=4
    )
    plan = voxel_plan(lung, 2.0)
    assert (plan.grid, plan.radius, plan.io, plan.io_control) == (6, 4, 1, 4)
    assert (plan.smoothing_kernel, plan.lr, plan.inverse) == (3, 1.0, 2)
    # the same lengths on a 1 mm grid: twice the voxels, the same millimetres
    fine = voxel_plan(lung, 1.0)
    assert (fine.grid, fine.radius, fine.io, fine.io_control, fine.inverse) == (12, 4, 2, 4, 4)
    assert fine.describe()["search_radius_mm"] == plan.describe()["search_radius_mm"] == 48.0


@pytest.mark.parametrize(
    "options",
    [
        {"grid_spacing_mm": 1000},
        {"grid_spacing_vox": 6},
        {"coupling_schedule": []},
        {"coupling_schedule": [0.1, -1.0]},
        {"smoothness_weight": float("inf")},
        {"adam_lr_mm": 1e308},
        {"adam_iterations": True},
    ],
)
def test_absurd_or_voxel_options_are_refused_when_read(options):
    import pydantic

    with pytest.raises(pydantic.ValidationError):
        ConvexAdamConfig.model_validate(options)


def test_a_coarse_grid_larger_than_the_image_is_a_clear_error(blob_phantom):
    from medfeat.errors import ConfigError

    feat = mind_ssc(blob_phantom((16, 16, 16)), 1, 1)
    config = ConvexAdamConfig(grid_spacing_mm=90, search_radius_mm=90)
    with pytest.raises(ConfigError, match="grid_spacing_mm = 90 mm leaves fewer than 2 voxels"):
        convex_adam(feat, feat, config, spacing_mm=MM)


def test_instance_optimisation_subsets_use_every_point_once_per_pass():
    import torch

    from medfeat.engine.convex_adam import _Subsets

    rows = torch.arange(10)
    subsets = _Subsets((rows, rows * 2.0), 3, torch.Generator().manual_seed(0))
    one_pass = [subsets.next() for _ in range(4)]  # 10 rows dealt into 4 subsets of <= 3
    taken = torch.cat([a for a, _ in one_pass])
    assert sorted(taken.tolist()) == list(range(10))  # every row once per pass
    assert all(len(a) <= 3 and torch.equal(b, a * 2.0) for a, b in one_pass)  # aligned arrays
    assert all(bool((a.diff() == 4).all()) for a, _ in one_pass)  # interleaved, raster order
    next_pass = torch.cat([subsets.next()[0] for _ in range(4)])
    assert sorted(next_pass.tolist()) == list(range(10))
    everything = _Subsets((rows,), 20, torch.Generator().manual_seed(0)).next()[0]
    assert torch.equal(everything, rows)  # all rows when the subset is not smaller
