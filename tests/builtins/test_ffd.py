"""The SimpleITK B-spline FFD baseline (optimiser `sitk-ffd`) on a small synthetic breathing pair."""

from __future__ import annotations

import textwrap

import numpy as np
import pytest

from medfeat.builtins.ffd import FFDConfig, SitkFFD
from medfeat.geometry import Image

# small and quick: affine + 2 coarse B-spline levels on a 32^3 phantom at 5 mm (a few seconds)
FAST = dict(
    control_point_spacing_mm=[80.0, 40.0],
    shrink_factors=[2, 1],
    smoothing_sigmas_mm=[5.0, 0.0],
    iterations_per_level=[20, 15],
    metric_samples=1000,
    affine_iterations=30,
    affine_shrink_factors=[2],
    affine_smoothing_sigmas_mm=[5.0],
    compute_inverse=False,
    threads=1,
)


@pytest.fixture(scope="module")
def pair():
    from medfeat.phantoms import breathing_phantom

    return breathing_phantom((32, 32, 32), 5.0, amplitude_mm=8.0, num_vessels=20)


def lung_mask(pair) -> Image:
    from scipy import ndimage

    lungs = ndimage.binary_dilation(pair.fixed_labels.numpy() == 2, iterations=2)
    return Image(lungs.astype(np.uint8), pair.fixed.grid, {"name": "phantom lung mask"})


def mean_tre(pair, forward) -> float:
    moved = forward.transform_points(pair.fixed_points.points)
    return float(np.linalg.norm(moved - pair.moving_points.points, axis=1).mean())


def test_masked_ffd_reduces_landmark_error_and_uses_the_mask(pair, monkeypatch):
    import SimpleITK as sitk

    masks_seen = []
    original = sitk.ImageRegistrationMethod.SetMetricFixedMask

    def spy(self, mask):
        masks_seen.append(int(sitk.GetArrayViewFromImage(mask).astype(bool).sum()))
        return original(self, mask)

    monkeypatch.setattr(sitk.ImageRegistrationMethod, "SetMetricFixedMask", spy)
    mask = lung_mask(pair)
    res = SitkFFD(FFDConfig(**FAST)).register(pair.fixed, pair.moving, fixed_mask=mask)

    before = np.linalg.norm(pair.fixed_points.points - pair.moving_points.points, axis=1).mean()
    after = mean_tre(pair, res.forward)
    assert after < 0.5 * before, (before, after, res.info)
    # the lung mask reached the metric of the affine and of every B-spline level
    assert res.info["masked_metric"] is True
    assert masks_seen == [int(mask.numpy().sum())] * 3
    assert res.forward.mapping == "fixed_to_moving"


def test_mask_is_ignored_when_switched_off(pair, monkeypatch):
    import SimpleITK as sitk

    calls = []
    monkeypatch.setattr(
        sitk.ImageRegistrationMethod, "SetMetricFixedMask", lambda self, m: calls.append(m)
    )
    cfg = FFDConfig(**{**FAST, "use_fixed_mask": False, "iterations_per_level": [2, 2]})
    res = SitkFFD(cfg).register(pair.fixed, pair.moving, fixed_mask=lung_mask(pair))
    assert calls == [] and res.info["masked_metric"] is False


def test_mask_on_another_grid_is_a_config_error(pair):
    from medfeat.errors import ConfigError
    from medfeat.geometry import Grid

    other = Image(np.ones((8, 8, 8), np.uint8), Grid.from_shape((8, 8, 8), 5.0))
    with pytest.raises(ConfigError, match="fixed mask"):
        SitkFFD(FFDConfig(**FAST)).register(pair.fixed, pair.moving, fixed_mask=other)


def resolve(optimiser_yaml: str):
    from medfeat.config.resolve import resolve_pipeline
    from medfeat.config.source import parse_yaml
    from medfeat.plugins import get_registry

    text = textwrap.dedent(
        """\
        kind: registration
        data: {name: breathing-phantom}
        fixed_mask: auto-lung
        optimiser:
          name: sitk-ffd
        """
    ) + textwrap.indent(textwrap.dedent(optimiser_yaml), "  ")
    return resolve_pipeline(parse_yaml(text, "p.yaml"), get_registry(), [])


def test_example_style_config_resolves():
    resolved = resolve(
        """\
        control_point_spacing_mm: [40.0, 20.0, 10.0]
        shrink_factors: [4, 2, 1]
        smoothing_sigmas_mm: [2.0, 1.0, 0.0]
        iterations_per_level: [100, 50, 25]
        """
    )
    config = resolved.components["optimiser"].config
    assert config.control_point_spacing_mm == [40.0, 20.0, 10.0]
    assert config.iterations_per_level == [100, 50, 25]


@pytest.mark.parametrize(
    "options, message",
    [
        (
            "control_point_spacing_mm: [40.0, 20.0, 10.0]\nshrink_factors: [4, 2]\n",
            r"one entry per B-spline level.*control_point_spacing_mm has 3 level\(s\) but "
            r"shrink_factors has 2",
        ),
        (
            "iterations_per_level: [100, 50, 25]\n",
            r"control_point_spacing_mm has 2 level\(s\) but iterations_per_level has 3",
        ),
        (
            "affine_shrink_factors: [4, 2, 1]\n",
            r"affine_shrink_factors has 3 level\(s\) but affine_smoothing_sigmas_mm has 2",
        ),
        (
            "control_point_spacing_mm: [20.0, 0.0]\nshrink_factors: [2, 1]\n"
            "smoothing_sigmas_mm: [1, 0]\niterations_per_level: [5, 5]\n",
            r"must be positive",
        ),
        ("iterations: 30\n", r"unknown option 'iterations'"),
    ],
)
def test_bad_config_is_a_clear_config_error(options, message):
    from medfeat.errors import ConfigError

    with pytest.raises(ConfigError, match=message) as err:
        resolve(options)
    assert "optimiser" in str(err.value)


# the pipeline's similarity becomes SimpleITK's metric; few iterations: only the wiring is tested
WIRING = {**FAST, "iterations_per_level": [4, 4], "affine_iterations": 5}


def similarity(name: str | None, **options):
    from medfeat.context import RunContext
    from medfeat.plugins import get_registry

    if name is None:
        return None
    return get_registry().get("similarity", name).build(options, RunContext())


@pytest.fixture(scope="module")
def default_field(pair):
    return SitkFFD(FFDConfig(**WIRING)).register(pair.fixed, pair.moving).forward.numpy()


@pytest.mark.parametrize(
    "name, options, method, args, label",
    [
        (None, {}, "SetMetricAsMattesMutualInformation", [(32,)] * 3, "MI"),
        ("ssd", {}, "SetMetricAsMeanSquares", [()] * 3, "MSE"),
        ("ncc", {}, "SetMetricAsCorrelation", [()] * 3, "NCC"),
        # 25 mm: 2.5 -> 3 voxels (radius 1) of 10 mm on the affine and the first level (both
        # shrunk by 2), 5 voxels (radius 2) of the 5 mm image on the second level
        (
            "local-ncc",
            {"window_mm": 25.0},
            "SetMetricAsANTSNeighborhoodCorrelation",
            [(1,), (1,), (2,)],
            "LNCC",
        ),
        ("nmi", {"bins": 16}, "SetMetricAsMattesMutualInformation", [(16,)] * 3, "MI"),
    ],
)
def test_similarity_becomes_the_sitk_metric(
    pair, default_field, monkeypatch, name, options, method, args, label
):
    import SimpleITK as sitk

    calls = []
    for metric in (
        "SetMetricAsMattesMutualInformation",
        "SetMetricAsMeanSquares",
        "SetMetricAsCorrelation",
        "SetMetricAsANTSNeighborhoodCorrelation",
    ):
        original = getattr(sitk.ImageRegistrationMethod, metric)

        def spy(self, *a, _name=metric, _original=original):
            calls.append((_name, a))
            return _original(self, *a)

        monkeypatch.setattr(sitk.ImageRegistrationMethod, metric, spy)
    res = SitkFFD(FFDConfig(**WIRING)).register(
        pair.fixed, pair.moving, similarity=similarity(name, **options)
    )
    assert calls == [(method, a) for a in args]  # the affine and both B-spline levels
    assert res.info["metric"] == label
    change = np.abs(res.forward.numpy() - default_field).max()
    assert (change == 0) if name is None else (change > 0.01), change


def test_local_ncc_window_mm_becomes_one_ants_radius_of_the_geometric_mean_spacing():
    """SimpleITK takes one radius for all axes: half the odd window of the mean voxel size."""
    from medfeat.builtins.ffd import lncc_radius

    assert lncc_radius(9.0, (1.0, 1.0, 1.0)) == 4  # 9 voxels
    assert lncc_radius(9.0, (3.0, 3.0, 3.0)) == 1  # 3 voxels
    assert lncc_radius(18.0, (1.5, 1.5, 1.5)) == 6  # 2x finer than 3 mm: 12 -> 13 voxels
    # anisotropic 1 x 2 x 4 mm: geometric mean 2 mm, 10.2 mm -> 5 voxels, whatever the order
    assert lncc_radius(10.2, (1.0, 2.0, 4.0)) == lncc_radius(10.2, (4.0, 1.0, 2.0)) == 2
    assert lncc_radius(1.0, (2.0, 2.0, 2.0)) == 1  # never under 3 voxels


def test_local_ncc_radius_follows_the_image_spacing(pair):
    """The same window_mm on a 2x finer copy of the image gets twice the radius (in the info)."""
    from medfeat.geometry import Grid
    from medfeat.io.resample import resample_to_grid

    config = FFDConfig(**{**WIRING, "iterations_per_level": [1, 1], "affine_first": False})
    sim = similarity("local-ncc", window_mm=42.0)
    coarse = SitkFFD(config).register(pair.fixed, pair.moving, similarity=sim)
    g = pair.fixed.grid
    fine_grid = Grid(2 * np.array(g.shape), np.array(g.spacing) / 2, g.origin, g.direction)
    fixed, moving = (resample_to_grid(i, fine_grid) for i in (pair.fixed, pair.moving))
    fine = SitkFFD(config).register(fixed, moving, similarity=sim)
    # shrink 2 then 1: 42 mm is 4.2 -> 5 then 8.4 -> 9 voxels at 5 mm, 8.4 -> 9 then 16.8 -> 17 at 2.5 mm
    assert coarse.info["lncc_radius_vox"] == "[2, 4]"
    assert fine.info["lncc_radius_vox"] == "[4, 8]"


def test_similarity_without_a_sitk_metric_is_refused_naming_adam(pair):
    from medfeat.errors import ConfigError

    with pytest.raises(ConfigError, match="cannot use similarity 'cosine'") as err:
        SitkFFD(FFDConfig(**WIRING)).register(
            pair.fixed, pair.moving, similarity=similarity("cosine")
        )
    assert "`adam`" in err.value.remedy
    with pytest.raises(ConfigError, match="cannot use similarity"):
        SitkFFD(FFDConfig(**WIRING)).register(
            pair.fixed, pair.moving, similarity=lambda a, b, mask=None: (a - b).abs().mean()
        )


def test_regulariser_is_refused_naming_adam(pair):
    from medfeat.context import RunContext
    from medfeat.errors import ConfigError
    from medfeat.plugins import get_registry

    penalty = get_registry().get("regulariser", "bending-energy").build({}, RunContext())
    with pytest.raises(ConfigError, match="cannot use regulariser 'bending-energy'") as err:
        SitkFFD(FFDConfig(**WIRING)).register(pair.fixed, pair.moving, regulariser=penalty)
    assert "`adam`" in err.value.remedy
    assert get_registry().get("optimiser", "sitk-ffd").accepts == ("similarity",)


@pytest.mark.slow
def test_sitk_ffd_reduces_phantom_tre(pair, build):
    ffd = build(
        "optimiser",
        "sitk-ffd",
        control_point_spacing_mm=[80.0, 40.0],
        iterations_per_level=[20, 15],
        shrink_factors=[2, 1],
        smoothing_sigmas_mm=[5.0, 0.0],
        metric_samples=1000,
        compute_inverse=False,
    )
    res = ffd.register(pair.fixed, pair.moving)
    before = np.linalg.norm(pair.fixed_points.points - pair.moving_points.points, axis=1).mean()
    assert mean_tre(pair, res.forward) < 0.6 * before


def test_ffd_reports_its_iterations_per_stage(pair):
    """The B-spline baseline says where it is (it once ran minutes with no output at all)."""
    calls: list[tuple[str, float]] = []
    SitkFFD(FFDConfig(**FAST), progress=lambda step, f: calls.append((step, f))).register(
        pair.fixed, pair.moving
    )
    steps = list(dict.fromkeys(step for step, _ in calls))
    assert steps == ["affine", "level 1/2", "level 2/2"]
    for step in steps:
        fractions = [f for s, f in calls if s == step]
        assert fractions == sorted(fractions) and 0 < fractions[-1] <= 1
