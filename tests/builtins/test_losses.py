"""The built-in similarities and regularisers, built from the registry."""

import pytest
import torch

from medfeat.engine.similarity import local_ncc


def test_similarities_and_regularisers_from_registry(build):
    x = torch.rand(1, 2, 8, 8, 8)
    for name in ("ssd", "ncc", "local-ncc", "cosine", "nmi"):
        sim = build("similarity", name).for_spacing((1.0, 1.0, 1.0))
        assert float(sim(x, x)) <= float(sim(x, torch.rand(1, 2, 8, 8, 8))) + 1e-6, name
    disp = torch.zeros(1, 3, 8, 8, 8)
    assert float(build("regulariser", "diffusion", weight=2.0)(disp, (1, 1, 1))) == 0.0
    assert float(build("regulariser", "bending-energy")(disp + 1.5, (1, 1, 1))) == 0.0


@pytest.mark.parametrize(
    "window_mm, spacing_mm, voxels",
    [
        (9.0, (1.0, 1.0, 1.0), (9, 9, 9)),
        (9.0, (3.0, 3.0, 3.0), (3, 3, 3)),
        (9.0, (2.0, 2.0, 2.0), (5, 5, 5)),  # 4.5 -> nearest odd 5
        (9.0, (1.3, 1.3, 1.3), (7, 7, 7)),  # 6.9 -> 7, not 9
        (9.0, (10.0, 4.0, 0.5), (3, 3, 19)),  # per axis; at least 3; 18 -> tie, larger
        (21.0, (6.0, 3.0, 1.5), (3, 7, 15)),  # 3.5 -> 3, 7, 14 -> tie, larger
    ],
)
def test_window_mm_becomes_the_nearest_odd_voxels_per_axis(window_mm, spacing_mm, voxels):
    from medfeat.builtins.losses import window_voxels

    assert window_voxels(window_mm, spacing_mm) == voxels


def test_a_2x_finer_grid_gets_twice_the_voxels(build):
    sim = build("similarity", "local-ncc", window_mm=30.0)
    # 30 mm: 5 voxels of 6 mm, 10 -> 11 of 3 mm, 20 -> 21 of 1.5 mm (the same mm, odd, centred)
    assert sim.for_spacing((6.0, 6.0, 6.0)).detail == "window 5x5x5 vox"
    assert sim.for_spacing((3.0, 3.0, 3.0)).detail == "window 11x11x11 vox"
    assert sim.for_spacing((1.5, 1.5, 1.5)).detail == "window 21x21x21 vox"


def test_bound_local_ncc_uses_the_per_axis_window(build):
    """Bound to an anisotropic grid, local-ncc is the engine's loss with that per-axis window."""
    a, b = torch.rand(1, 1, 12, 12, 12), torch.rand(1, 1, 12, 12, 12)
    bound = build("similarity", "local-ncc", window_mm=12.0).for_spacing((4.0, 2.0, 1.0))
    assert bound.detail == "window 3x7x13 vox" and bound.spacing_mm == (4.0, 2.0, 1.0)
    assert torch.allclose(bound(a, b), local_ncc(a, b, window=(3, 7, 13)))
    assert not torch.allclose(bound(a, b), local_ncc(a, b, window=7))
    assert bound.name == "local-ncc" and bound.config.window_mm == 12.0


def test_measures_without_lengths_ignore_the_spacing(build):
    for name in ("ssd", "ncc", "cosine", "nmi"):
        sim = build("similarity", name)
        assert sim.for_spacing((2.0, 3.0, 4.0)) is sim


def test_unbound_local_ncc_is_refused_with_a_remedy(build):
    from medfeat.errors import ConfigError

    x = torch.rand(1, 1, 8, 8, 8)
    with pytest.raises(ConfigError, match="did not tell it the voxel size") as err:
        build("similarity", "local-ncc")(x, x)
    assert "adam" in err.value.remedy


def test_window_vox_is_refused_naming_window_mm(build):
    from medfeat.errors import ConfigError

    with pytest.raises(ConfigError, match="no longer takes window_vox.*window_mm: 21.0"):
        build("similarity", "local-ncc", window_vox=7)
    assert build("similarity", "local-ncc").config.window_mm == 9.0  # the default
