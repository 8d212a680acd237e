"""A field (and affine) written by greedy, applied by medfeat, reproduces greedy's own warped image.

Needs greedy's Python wheel (``pip install picsl-greedy``, see the peers README); skipped without it.
"""

from __future__ import annotations

import io

import numpy as np
import pytest

from medfeat.io.images import write_image
from medfeat.phantoms import breathing_phantom


@pytest.fixture
def greedy(tmp_path):
    mod = pytest.importorskip(
        "picsl_greedy", reason="greedy is not installed (pip install picsl-greedy)"
    )
    pair = breathing_phantom((28, 28, 28), 6.0, amplitude_mm=8.0, num_vessels=12, seed=3)
    write_image(pair.fixed, tmp_path / "fixed.nii.gz")
    write_image(pair.moving, tmp_path / "moving.nii.gz")

    def run(command: str) -> None:
        mod.Greedy3D().execute(f"-d 3 -threads 1 {command}", out=io.StringIO(), err=io.StringIO())

    return run


def _close(a: np.ndarray, b: np.ndarray, transforms: list, folder) -> None:
    """Equal wherever the pulled point lies inside the moving image, a voxel from its border
    (there greedy and ITK treat the outside differently: zero padding against clamping)."""
    from medfeat.apply import load_chain
    from medfeat.io.images import read_image

    fixed, moving = (
        read_image(folder / "fixed.nii.gz").grid,
        read_image(folder / "moving.nii.gz").grid,
    )
    index = np.stack(np.meshgrid(*[np.arange(n) for n in fixed.shape], indexing="ij"), -1)
    pulled = load_chain(transforms).transform_points(
        fixed.array_index_to_world(index.reshape(-1, 3))
    )
    inside = moving.contains_world(pulled, margin_vox=-1.0).reshape(fixed.shape)
    assert inside.mean() > 0.5
    scale = float(np.abs(b).max())
    assert scale > 0 and np.abs(a - b)[inside].max() <= 1e-5 * scale


def test_greedy_warp_and_affine_reproduce_greedy(greedy, tmp_path, apply_cli, helpers):
    f = tmp_path
    greedy(f"-a -dof 12 -m NCC 2x2x2 -i {f}/fixed.nii.gz {f}/moving.nii.gz -o {f}/affine.mat "
           "-ia-image-centers -n 20x10")  # fmt: skip
    greedy(f"-m NCC 2x2x2 -i {f}/fixed.nii.gz {f}/moving.nii.gz -it {f}/affine.mat "
           f"-o {f}/warp.nii.gz -n 20x10")  # fmt: skip
    greedy(f"-rf {f}/fixed.nii.gz -rm {f}/moving.nii.gz {f}/g_warp.nii.gz -r {f}/warp.nii.gz")
    greedy(f"-rf {f}/fixed.nii.gz -rm {f}/moving.nii.gz {f}/g_both.nii.gz "
           f"-r {f}/warp.nii.gz {f}/affine.mat")  # fmt: skip

    ref = ["--reference", f"{f}/fixed.nii.gz"]
    moving = ["--image", f"{f}/moving.nii.gz"]
    assert apply_cli(["-t", f"{f}/warp.nii.gz", *moving, f"{f}/m_warp.nii.gz", *ref]) == 0
    assert apply_cli(["-t", f"{f}/warp.nii.gz", "-t", f"{f}/affine.mat", *moving,
                      f"{f}/m_both.nii.gz", *ref]) == 0  # fmt: skip
    warp = helpers.read(f / "warp.nii.gz")
    assert np.abs(warp).max() > 1.0  # greedy really moved something
    _close(
        helpers.read(f / "m_warp.nii.gz"), helpers.read(f / "g_warp.nii.gz"), [f / "warp.nii.gz"], f
    )
    _close(
        helpers.read(f / "m_both.nii.gz"),
        helpers.read(f / "g_both.nii.gz"),
        [f / "warp.nii.gz", f / "affine.mat"],
        f,
    )
    # the order matters: the other order gives another image
    assert apply_cli(["-t", f"{f}/affine.mat", "-t", f"{f}/warp.nii.gz", *moving,
                      f"{f}/m_swapped.nii.gz", *ref]) == 0  # fmt: skip
    swapped, both = helpers.read(f / "m_swapped.nii.gz"), helpers.read(f / "g_both.nii.gz")
    assert np.abs(swapped - both).max() > 1e-3 * np.abs(both).max()
