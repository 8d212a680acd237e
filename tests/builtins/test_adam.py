"""Optimiser `adam`: world-space registration with any registered similarity and regulariser."""

from __future__ import annotations

import textwrap

import numpy as np
import pytest
import torch

from medfeat.components import FeatureLevel, FeatureMap
from medfeat.context import RunContext
from medfeat.geometry import Grid, Image
from medfeat.plugins import get_registry

# fast: a 40^3 phantom at 5 mm resampled onto two small oblique, anisotropic grids
QUICK = {"control_spacing_mm": 20.0, "iterations": 50, "compute_inverse": False}


def build(kind: str, name: str, **options):
    return get_registry().get(kind, name).build(options, RunContext())


def oblique_grid(centre, spacing_mm, shape, angles_deg) -> Grid:
    """A grid of ``shape`` (numpy order) centred on ``centre``, rotated by ``angles_deg`` (xyz)."""
    from scipy.spatial.transform import Rotation

    rotation = Rotation.from_euler("xyz", angles_deg, degrees=True).as_matrix()
    extent = (np.array(shape[::-1]) - 1) * np.array(spacing_mm)
    origin = np.asarray(centre) - rotation @ (extent / 2)
    return Grid(shape, spacing_mm, tuple(origin), rotation)


@pytest.fixture(scope="module")
def case():
    """The breathing phantom's pair seen through two different oblique anisotropic grids.

    Landmarks stay exact in world mm; the fixed and moving grids differ in spacing, extent and
    direction, so only a world-space warp can align them.
    """
    from medfeat.io.resample import resample_to_grid
    from medfeat.phantoms import breathing_phantom

    pair = breathing_phantom((40, 40, 40), 5.0, amplitude_mm=15.0, num_vessels=30)
    lo, hi = pair.fixed.grid.world_extent()
    centre = (lo + hi) / 2
    fixed_grid = oblique_grid(centre, (4.0, 5.0, 6.5), (26, 34, 40), (8, -5, 10))
    moving_grid = oblique_grid(centre, (5.5, 4.5, 4.0), (40, 36, 28), (-6, 4, -7))
    fixed = resample_to_grid(pair.fixed, fixed_grid)
    moving = resample_to_grid(pair.moving, moving_grid)
    return pair, fixed, moving


def features(image: Image, scale: float = 1.0, offset: float = 0.0) -> FeatureMap:
    data = torch.from_numpy(image.numpy()).float()[None] * scale + offset
    return FeatureMap([FeatureLevel(data, image.grid)], image)


def register(case, similarity=None, regulariser=None, moving_scale=1.0, **options):
    from medfeat.builtins.adam import AdamConfig, AdamRegistration

    _, fixed, moving = case
    optimiser = AdamRegistration(AdamConfig(**{**QUICK, **options}), RunContext())
    return optimiser.register(
        fixed,
        moving,
        features(fixed),
        features(moving, moving_scale, 0.5 * (moving_scale - 1)),
        similarity=similarity,
        regulariser=regulariser,
    )


def tre(case, field) -> tuple[float, float]:
    pair = case[0]
    fixed_pts, moving_pts = pair.fixed_points.points, pair.moving_points.points
    before = np.linalg.norm(fixed_pts - moving_pts, axis=1).mean()
    after = np.linalg.norm(field.transform_points(fixed_pts) - moving_pts, axis=1).mean()
    return float(before), float(after)


@pytest.mark.parametrize(
    "similarity, options",
    [
        ("ssd", {"regulariser_weight": 0.05}),
        ("ncc", {}),
        ("local-ncc", {"window_mm": 25.0}),
        ("nmi", {"bins": 16}),
        ("ncc", {"interpolation": "linear", "control_spacing_mm": 15.0}),
        ("local-ncc", {"levels": 2, "iterations": 30}),
    ],
)
def test_recovers_the_phantom_deformation_in_world_mm(case, similarity, options):
    options = dict(options)
    weight = options.pop("regulariser_weight", 1.0)
    sim_options = {k: options.pop(k) for k in ("window_mm", "bins") if k in options}
    result = register(
        case,
        build("similarity", similarity, **sim_options),
        build("regulariser", "diffusion", weight=weight),
        **options,
    )
    before, after = tre(case, result.forward)
    assert before > 5.0  # the deformation is real
    assert after < 0.25 * before, (similarity, options, before, after)
    assert result.forward.grid.same_as(case[1].grid)
    assert result.forward.mapping == "fixed_to_moving"
    assert result.info["similarity"] == similarity


def test_inverse_maps_moving_landmarks_back(case):
    pair = case[0]
    result = register(case, build("similarity", "ncc"), compute_inverse=True)
    back = result.inverse.transform_points(pair.moving_points.points)
    error = np.linalg.norm(back - pair.fixed_points.points, axis=1).mean()
    assert result.inverse.mapping == "moving_to_fixed"
    assert error < 0.25 * tre(case, result.forward)[0]


def test_default_is_ssd_and_diffusion():
    from medfeat.phantoms import breathing_phantom

    pair = breathing_phantom((24, 24, 24), 6.0, amplitude_mm=10.0, num_vessels=5)
    small = (pair, pair.fixed, pair.moving)
    default = register(small, iterations=10)
    explicit = register(
        small, build("similarity", "ssd"), build("regulariser", "diffusion"), iterations=10
    )
    other = register(small, build("similarity", "ncc"), iterations=10)
    assert default.info["similarity"] == "ssd" and default.info["regulariser"] == "diffusion"
    np.testing.assert_allclose(default.forward.numpy(), explicit.forward.numpy(), atol=1e-6)
    assert np.abs(default.forward.numpy() - other.forward.numpy()).max() > 0.1


@pytest.mark.parametrize("similarity", ["ncc", "local-ncc", "nmi"])
def test_similarity_section_is_used_intensity_invariant_measures(case, similarity):
    """Moving intensities tripled: the invariant measures still register, SSD cannot.

    This fails if the optimiser ignored the pipeline's similarity (its default is SSD)."""
    regulariser = build("regulariser", "diffusion", weight=0.05)
    ssd = register(case, build("similarity", "ssd"), regulariser, moving_scale=3.0)
    invariant = register(case, build("similarity", similarity), regulariser, moving_scale=3.0)
    before, after = tre(case, invariant.forward)
    assert after < 0.3 * before
    assert tre(case, ssd.forward)[1] > 2 * after


def test_cosine_section_is_used():
    """Cosine similarity ignores the length of the feature vectors, SSD does not."""
    from medfeat.phantoms import breathing_phantom

    pair = breathing_phantom((24, 24, 24), 6.0, amplitude_mm=10.0, num_vessels=5)
    small = (pair, pair.fixed, pair.moving)
    cosine = register(small, build("similarity", "cosine"), iterations=10)
    ssd = register(small, build("similarity", "ssd"), iterations=10)
    assert cosine.info["similarity"] == "cosine"
    assert np.abs(cosine.forward.numpy() - ssd.forward.numpy()).max() > 0.1


@pytest.mark.parametrize("name", ["diffusion", "bending-energy"])
def test_regulariser_section_and_weight_are_used(case, name):
    from medfeat.engine import regularisers

    def energy(result) -> float:
        disp = torch.from_numpy(result.forward.to_array_voxels().copy()).float()[None]
        spacing = result.forward.grid.spacing_array_order
        return float(getattr(regularisers, name.replace("-", "_"))(disp, spacing))

    sim = build("similarity", "ncc")
    light = register(case, sim, build("regulariser", name, weight=0.0))
    heavy = register(case, sim, build("regulariser", name, weight=1000.0))
    assert energy(heavy) < 0.2 * energy(light)
    assert heavy.info["regulariser"] == name


def test_diffusion_and_bending_energy_give_different_fields(case):
    sim = build("similarity", "ncc")
    diffusion = register(case, sim, build("regulariser", "diffusion", weight=10.0))
    bending = register(case, sim, build("regulariser", "bending-energy", weight=10.0))
    assert np.abs(diffusion.forward.numpy() - bending.forward.numpy()).max() > 0.5


def blobs(grid: Grid, shift_mm=(0.0, 0.0, 0.0), seed: int = 1) -> Image:
    """Smooth random texture (Gaussian blobs fixed in world space) at the points ``x + shift``."""
    rng = np.random.default_rng(seed)
    centres = rng.uniform(-60, 60, size=(150, 3))
    index = np.stack(np.meshgrid(*[np.arange(n) for n in grid.shape], indexing="ij"), -1)
    world = grid.array_index_to_world(index.reshape(-1, 3)) + np.asarray(shift_mm)
    values = np.zeros(len(world))
    for c in centres:
        values += np.exp(-np.sum((world - c) ** 2, axis=1) / (2 * 8.0**2))
    return Image(values.reshape(grid.shape).astype(np.float32), grid)


@pytest.mark.parametrize("pool", [1, 2])
def test_recovers_a_world_translation_at_every_voxel_of_the_image_grid(pool):
    """``fixed(x) = moving(x + t)`` on grids of different direction and spacing: ``u = t`` in
    world mm everywhere, also when the features are pooled onto a coarser grid of their own
    (the spline is then evaluated at the image's voxels, up to its outermost ones)."""
    import torch.nn.functional as F

    from medfeat.builtins.adam import AdamConfig, AdamRegistration

    shift = np.array([4.0, -3.0, 5.0])
    fixed = blobs(oblique_grid((0, 0, 0), (3.0, 3.5, 4.5), (18, 22, 26), (10, -8, 6)), shift)
    moving = blobs(oblique_grid((0, 0, 0), (4.0, 3.0, 3.5), (34, 36, 30), (-5, 3, 12)))

    def pooled(image: Image) -> FeatureMap:
        data = torch.from_numpy(image.numpy()).float()[None]
        if pool == 1:
            return FeatureMap([FeatureLevel(data, image.grid)], image)
        data = F.avg_pool3d(data[None], pool)[0]
        spacing = tuple(pool * s for s in image.grid.spacing)
        grid = image.grid.with_shape_and_spacing(tuple(data.shape[1:]), spacing)
        return FeatureMap([FeatureLevel(data, grid)], image)

    config = AdamConfig(control_spacing_mm=30.0, iterations=80, compute_inverse=False)
    result = AdamRegistration(config, RunContext()).register(
        fixed, moving, pooled(fixed), pooled(moving), similarity=build("similarity", "ncc")
    )
    assert result.forward.grid.same_as(fixed.grid)
    error = np.linalg.norm(result.forward.numpy() - shift.reshape(3, 1, 1, 1), axis=0)
    assert error.mean() < 0.05 * np.linalg.norm(shift)
    assert error.max() < 0.2 * np.linalg.norm(shift)  # also at the outermost voxels


def test_fixed_mask_weights_the_similarity(case):
    """The fixed mask reaches the similarity on the feature grid, pooled at coarser levels."""
    from medfeat.builtins.adam import AdamConfig, AdamRegistration

    _, fixed, moving = case
    inside = np.zeros(fixed.grid.shape, np.uint8)
    inside[5:20, 8:30, 10:35] = 1
    ssd = build("similarity", "ssd")
    masks = []

    def spy(a, b, mask=None):
        masks.append(mask.clone())
        return ssd(a, b, mask)

    config = AdamConfig(levels=2, iterations=2, compute_inverse=False)
    AdamRegistration(config, RunContext()).register(
        fixed,
        moving,
        features(fixed),
        features(moving),
        similarity=spy,
        fixed_mask=Image(inside, fixed.grid),
    )
    coarse, fine = masks[0], masks[-1]
    assert len(masks) == 2 * 3  # 2 steps + the final value, per level
    assert fine.shape == (1, 1, *fixed.grid.shape)
    assert torch.equal(fine[0, 0], torch.from_numpy(inside).float())
    assert coarse.shape == (1, 1, *(n // 2 for n in fixed.grid.shape))
    assert float(coarse.sum()) == pytest.approx(inside.sum() / 8)  # average-pooled by 2^3


def test_too_many_levels_is_a_config_error(case):
    from medfeat.errors import ConfigError

    with pytest.raises(ConfigError, match="Lower `levels`"):
        register(case, levels=5, iterations=1)


def resolve(sections: str):
    from medfeat.config.resolve import resolve_pipeline
    from medfeat.config.source import parse_yaml

    text = "kind: registration\ndata: {name: breathing-phantom}\n" + textwrap.dedent(sections)
    return resolve_pipeline(parse_yaml(text, "p.yaml"), get_registry(), [])


def test_adam_takes_similarity_and_regulariser_sections():
    resolved = resolve(
        """\
        similarity: {name: local-ncc, window_mm: 12.5}
        regulariser: {name: bending-energy, weight: 3.0}
        optimiser: {name: adam, control_spacing_mm: 12.0}
        """
    )
    assert resolved.components["similarity"].config.window_mm == 12.5
    assert resolved.components["regulariser"].config.weight == 3.0
    assert get_registry().get("optimiser", "adam").accepts == ("similarity", "regulariser")


@pytest.mark.parametrize(
    "sections, takers",
    [
        ("similarity: {name: ncc}\noptimiser: {name: convex-adam}\n", "adam, sitk-ffd."),
        ("regulariser: {name: diffusion}\noptimiser: {name: convex-adam}\n", "adam."),
        ("regulariser: {name: diffusion}\noptimiser: {name: sitk-ffd}\n", "adam."),
    ],
)
def test_an_optimiser_that_ignores_a_section_is_refused_at_validation(sections, takers):
    from medfeat.errors import ConfigError

    with pytest.raises(ConfigError, match="would be ignored") as err:
        resolve(sections)
    assert err.value.line == 3
    assert err.value.remedy.endswith(takers)


def test_local_ncc_window_vox_is_refused_naming_window_mm():
    from medfeat.errors import ConfigError

    with pytest.raises(ConfigError, match="no longer takes window_vox") as err:
        resolve("similarity: {name: local-ncc, window_vox: 7}\noptimiser: {name: adam}\n")
    assert "window_mm" in str(err.value) and err.value.line == 3
    assert "Traceback" not in str(err.value) and "\n" not in str(err.value)


def test_local_ncc_window_mm_is_bound_to_each_level_per_axis(case):
    """The same window in mm on every level: per axis of the anisotropic fixed grid (array
    spacing 6.5, 5, 4 mm), and of the grid pooled by 2 (13, 10, 8 mm)."""
    from medfeat.builtins.losses import SimilarityMeasure

    result = register(
        case, build("similarity", "local-ncc", window_mm=42.0), levels=2, iterations=2
    )
    # coarse 42/13, 42/10, 42/8 = 3.2, 4.2, 5.25; fine 6.5, 8.4, 10.5 -> nearest odd
    assert result.info["similarity_per_level"] == "window 3x5x5 vox; window 7x9x11 vox"

    ssd = build("similarity", "ssd")
    bound = []

    def on_grid(spacing):
        bound.append(spacing)
        return (lambda a, b, mask=None: ssd(a, b, mask)), ""

    spy = SimilarityMeasure("spy", None, lambda a, b, mask=None: 1 / 0, on_grid)
    register(case, spy, levels=2, iterations=2)  # 1 / 0 if a level used it unbound
    fine = case[1].grid.spacing_array_order
    assert bound[:2] == [tuple(2 * s for s in fine), fine]


def test_example_pipeline_validates():
    from pathlib import Path

    from medfeat.config.resolve import resolve_pipeline
    from medfeat.config.source import load_yaml

    path = Path(__file__).resolve().parents[2] / "examples" / "phantom-adam-lncc.yaml"
    resolved = resolve_pipeline(load_yaml(path), get_registry(), [])
    assert resolved.components["optimiser"].name == "adam"
    assert resolved.components["similarity"].name == "local-ncc"
    assert resolved.components["regulariser"].name == "bending-energy"
