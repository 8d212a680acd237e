"""Registration in world space: orientation-independent results, pre-alignment inside the written
fields (and the chain beside them), moving masks, and inputs refused before any computing."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from medfeat.components import RegistrationCase
from medfeat.geometry import Grid, Image, PointSet
from medfeat.io.images import read_image, write_image
from medfeat.io.landmarks import write_landmarks
from medfeat.phantoms import breathing_phantom

PHANTOM = dict(shape=(36, 36, 36), spacing_mm=3.0, amplitude_mm=8.0, num_vessels=30, seed=3)
ENGINE = """
backbone: {name: mind-ssc, radius_mm: 3, dilation_mm: 6}
optimiser:
  name: convex-adam
  grid_spacing_mm: 9
  search_radius_mm: 27
  io_spacing_mm: 3
  io_control_spacing_mm: 9
  adam_lr_mm: 3
  adam_iterations: 30
"""


def restored(image: Image, perm: tuple[int, int, int], flips: tuple[int, ...]) -> Image:
    """The same world content stored with the array axes permuted (new axis ``a`` is old axis
    ``perm[a]``) and then flipped along ``flips``: another file, the same image."""
    arr = np.transpose(image.numpy(), perm)
    for a in flips:
        arr = np.flip(arr, a)
    n = image.grid.shape
    t = np.zeros((4, 4))
    t[3, 3] = 1.0
    for a, b in enumerate(perm):  # new array index -> old array index
        t[b, a] = -1.0 if a in flips else 1.0
        t[b, 3] = n[b] - 1 if a in flips else 0.0
    m = image.grid.array_index_to_world_matrix() @ t
    lin = m[:3, :3][:, ::-1]  # columns along ITK (i, j, k)
    spacing = np.linalg.norm(lin, axis=0)
    grid = Grid(arr.shape, tuple(spacing), tuple(m[:3, 3]), lin / spacing)
    return Image(np.ascontiguousarray(arr), grid, dict(image.meta))


def run_pipeline(tmp_path: Path, text: str, name: str = "p") -> Path:
    """Resolve and run a registration pipeline in-process; returns its output folder."""
    from medfeat.config.resolve import resolve_pipeline
    from medfeat.config.source import parse_yaml
    from medfeat.context import RunContext
    from medfeat.io.checksum import remembering_checksums
    from medfeat.pipelines import registration
    from medfeat.pipelines.runner import Run
    from medfeat.plugins import get_registry
    from medfeat.progress import Progress

    registry = get_registry()
    resolved = resolve_pipeline(parse_yaml(text, str(tmp_path / f"{name}.yaml")), registry)
    out = tmp_path / f"out-{name}"
    out.mkdir()
    context = RunContext(device="cpu", seed=0, progress=Progress(enabled=False, verbosity=-1))
    context.out_dir = out
    with remembering_checksums():
        registration.run(Run(resolved, registry, context, out))
    return out


def files_pipeline(folder: Path, images: dict[str, Image], extra: str = "", points=None) -> str:
    """A `files` pipeline over ``images`` (written to ``folder``) with world-mm landmarks."""
    data = {k: str(write_image(v, folder / f"{k}.nii.gz")) for k, v in images.items()}
    lines = [f"  {k}: {v}" for k, v in data.items()]
    if points is not None:
        for role, pts in zip(("fixed", "moving"), points, strict=True):
            path = write_landmarks(pts, folder / f"{role}_points.csv")
            lines.append(f"  {role}_landmarks: {{path: {path}, space: lps}}")
    return "kind: registration\ndata:\n  name: files\n" + "\n".join(lines) + "\n" + ENGINE + extra


@pytest.fixture(scope="module")
def phantom():
    return breathing_phantom(**PHANTOM)


def predicted(out: Path) -> np.ndarray:
    from medfeat.io.landmarks import read_landmarks

    path = out / "case" / "fixed_landmarks_in_moving_world_lps_mm.csv"
    return read_landmarks(path, space="lps").points


def test_a_moving_image_stored_in_any_orientation_registers_the_same(tmp_path, phantom):
    """Flipped (two axes), permuted and left-handed storage of the moving image give the
    same-orientation result within 0.5 mm TRE (here: far closer, by construction)."""
    points = (phantom.fixed_points.points, phantom.moving_points.points)
    results = {}
    variants = {
        "same": ((0, 1, 2), ()),
        "flipped": ((0, 1, 2), (0, 2)),
        "permuted": ((2, 0, 1), ()),
        "left-handed": ((0, 1, 2), (1,)),
    }
    for name, (perm, flips) in variants.items():
        folder = tmp_path / name
        folder.mkdir()
        moving = restored(phantom.moving, perm, flips)
        if name == "left-handed":
            assert np.linalg.det(moving.grid.direction) < 0
        text = files_pipeline(folder, {"fixed": phantom.fixed, "moving": moving}, points=points)
        out = run_pipeline(folder, text, name)
        results[name] = predicted(out)
        metrics = json.loads((out / "case" / "metrics.json").read_text())
        assert metrics["tre_mm_after"]["mean"] < 0.6 * metrics["tre_mm_before"]["mean"]
        # the moving->fixed field is on the moving image's own grid, as stored
        inverse = read_image(out / "case" / "field_moving_to_fixed.nii.gz")
        assert inverse.grid.same_as(moving.grid)
    truth = phantom.moving_points.points
    reference = np.linalg.norm(results["same"] - truth, axis=1).mean()
    for name, pts in results.items():
        tre = np.linalg.norm(pts - truth, axis=1).mean()
        assert abs(tre - reference) < 0.5, (name, tre, reference)
        assert np.linalg.norm(pts - results["same"], axis=1).max() < 0.5, name


def shifted_pair(phantom, offset_mm: np.ndarray) -> tuple[Image, Image, np.ndarray]:
    """The phantom's moving image placed ``offset_mm`` away in world space (a scan taken
    elsewhere on the table) and its landmarks."""
    g = phantom.moving.grid
    grid = Grid(g.shape, g.spacing, tuple(np.asarray(g.origin) + offset_mm), g.direction)
    moving = Image(phantom.moving.data, grid)
    return phantom.fixed, moving, phantom.moving_points.points + offset_mm


def test_the_written_field_includes_the_prealignment_and_tools_reproduce_the_warp(
    tmp_path, phantom
):
    import SimpleITK as sitk

    from medfeat.io.fields import read_affine_transform

    offset = np.array([24.0, -15.0, 18.0])
    fixed, moving, moving_pts = shifted_pair(phantom, offset)
    text = files_pipeline(
        tmp_path,
        {"fixed": fixed, "moving": moving},
        extra="prealignment:\n  - {name: centroids, of: image}\n",
        points=(phantom.fixed_points.points, moving_pts),
    )
    case = run_pipeline(tmp_path, text) / "case"
    metrics = json.loads((case / "metrics.json").read_text())
    assert metrics["tre_mm_before"]["mean"] > 25
    assert metrics["tre_mm_after"]["mean"] < 2.0
    assert np.allclose(metrics["prealignment_fixed_to_moving"][0][3], offset[0], atol=1.5)

    chain = json.loads((case / "transform_chain.json").read_text())
    assert chain["fixed_to_moving"] == {
        "whole": "field_fixed_to_moving.nii.gz",
        "parts": ["deformable_fixed_to_moving.nii.gz", "prealignment_fixed_to_moving.tfm"],
    }
    assert chain["moving_to_fixed"]["parts"] == [
        "prealignment_moving_to_fixed.tfm",
        "deformable_moving_to_fixed.nii.gz",
    ]
    sidecar = json.loads((case / "field_fixed_to_moving.json").read_text())
    assert sidecar["includes_prealignment"] is True and sidecar["dtype"] == "float32"
    part = json.loads((case / "deformable_fixed_to_moving.json").read_text())
    assert part["includes_prealignment"] is False
    affine = read_affine_transform(case / "prealignment_fixed_to_moving.tfm")
    assert np.allclose(affine, metrics["prealignment_fixed_to_moving"], atol=1e-5)

    # SimpleITK applying the written field to the ORIGINAL moving image gives medfeat's warp
    field_img = sitk.ReadImage(str(case / "field_fixed_to_moving.nii.gz"))
    assert field_img.GetPixelID() == sitk.sitkVectorFloat32
    transform = sitk.DisplacementFieldTransform(sitk.Cast(field_img, sitk.sitkVectorFloat64))
    src = sitk.ReadImage(str(tmp_path / "moving.nii.gz"))
    ref = sitk.ReadImage(str(tmp_path / "fixed.nii.gz"))
    by_sitk = sitk.GetArrayFromImage(sitk.Resample(src, ref, transform, sitk.sitkLinear, 0.0))
    ours = read_image(case / "warped_moving.nii.gz").numpy()
    assert np.abs(by_sitk - ours).max() < 1e-5

    # the chain, applied part by part (deformable first, then the affine), gives the same warp
    composite = sitk.CompositeTransform(3)
    composite.AddTransform(sitk.ReadTransform(str(case / "prealignment_fixed_to_moving.tfm")))
    deformable = sitk.ReadImage(str(case / "deformable_fixed_to_moving.nii.gz"))
    composite.AddTransform(
        sitk.DisplacementFieldTransform(sitk.Cast(deformable, sitk.sitkVectorFloat64))
    )  # ITK applies the last added transform first
    by_chain = sitk.GetArrayFromImage(sitk.Resample(src, ref, composite, sitk.sitkLinear, 0.0))
    assert np.abs(by_chain - ours).mean() < 1e-3

    # the moving->fixed field covers the original moving image and maps its landmarks back
    from medfeat.io.fields import read_displacement_field

    inverse = read_displacement_field(case / "field_moving_to_fixed.nii.gz")
    assert inverse.grid.same_as(moving.grid)
    back = inverse.transform_points(moving_pts)
    assert np.linalg.norm(back - phantom.fixed_points.points, axis=1).mean() < 2.5


def test_block_matching_prealignment_finds_the_shift_and_the_breathing(tmp_path, phantom):
    """Centroids, then affine block matching of MIND-SSC: the pre-alignment alone maps the fixed
    landmarks to within 1 mm of the moving ones (35 mm apart as stored; the centroids alone leave
    2.1 mm of the 8 mm breathing motion)."""
    offset = np.array([24.0, -15.0, 18.0])
    fixed, moving, moving_pts = shifted_pair(phantom, offset)
    text = files_pipeline(
        tmp_path,
        {"fixed": fixed, "moving": moving},
        extra="prealignment:\n  - {name: centroids, of: image}\n  - {name: block-matching}\n",
        points=(phantom.fixed_points.points, moving_pts),
    )
    text = text.replace("adam_iterations: 30", "adam_iterations: 2")
    case = run_pipeline(tmp_path, text) / "case"
    metrics = json.loads((case / "metrics.json").read_text())
    affine = np.asarray(metrics["prealignment_fixed_to_moving"])
    mapped = phantom.fixed_points.points @ affine[:3, :3].T + affine[:3, 3]
    assert np.linalg.norm(mapped - moving_pts, axis=1).mean() < 1.0
    assert metrics["tre_mm_prealigned"]["mean"] == pytest.approx(
        np.linalg.norm(mapped - moving_pts, axis=1).mean(), abs=1e-3
    )
    assert metrics["tre_mm_after"]["mean"] < 0.05 * metrics["tre_mm_before"]["mean"]


def test_without_prealignment_the_whole_field_is_the_only_part(tmp_path, phantom):
    text = files_pipeline(tmp_path, {"fixed": phantom.fixed, "moving": phantom.moving})
    text = text.replace("adam_iterations: 30", "adam_iterations: 2")
    case = run_pipeline(tmp_path, text) / "case"
    chain = json.loads((case / "transform_chain.json").read_text())
    assert chain["fixed_to_moving"]["parts"] == ["field_fixed_to_moving.nii.gz"]
    assert not (case / "prealignment_fixed_to_moving.tfm").exists()
    sidecar = json.loads((case / "field_fixed_to_moving.json").read_text())
    assert sidecar["includes_prealignment"] is False


def test_moving_masks_reach_the_aligners_in_world_space(tmp_path, phantom, monkeypatch):
    """An automatic moving mask is made on the moving image and given to the pre-alignment."""
    from medfeat.builtins import aligners

    seen = {}
    original = aligners.Centroids.align

    def spy(self, fixed, moving, **kwargs):
        seen.update(kwargs)
        return original(self, fixed, moving, **kwargs)

    monkeypatch.setattr(aligners.Centroids, "align", spy)
    moving = restored(phantom.moving, (0, 1, 2), (0,))
    text = files_pipeline(
        tmp_path,
        {"fixed": phantom.fixed, "moving": moving},
        extra="fixed_mask: auto-body\nmoving_mask: auto-body\n"
        "prealignment:\n  - {name: centroids, of: masks}\n",
    ).replace("adam_iterations: 30", "adam_iterations: 2")
    case = run_pipeline(tmp_path, text) / "case"
    assert seen["moving_mask"].grid.same_as(moving.grid)
    assert seen["fixed_mask"].grid.same_as(phantom.fixed.grid)
    assert (case / "moving_mask_auto.nii.gz").is_file()
    # the same body, breathing (8 mm craniocaudal): the mask centroids differ by a few mm only,
    # whatever the flip of the stored moving array
    affine = np.asarray(
        json.loads((case / "metrics.json").read_text())["prealignment_fixed_to_moving"]
    )
    assert np.allclose(affine[:3, :3], np.eye(3))
    assert np.linalg.norm(affine[:3, 3]) < 4.0


# ----------------------------------------------------------------- refused before computing
def small_case(**kwargs) -> RegistrationCase:
    grid = Grid.from_shape((8, 8, 8), 2.0)
    rng = np.random.default_rng(0)
    image = Image(rng.random(grid.shape).astype(np.float32), grid, {"name": "img.nii.gz"})
    return RegistrationCase(id="c", fixed=image, moving=image, **kwargs)


def test_a_constant_image_is_refused():
    from medfeat.errors import DataError
    from medfeat.pipelines.cases import check_case

    case = small_case()
    case.moving = Image(np.zeros((8, 8, 8), np.float32), case.fixed.grid, {"name": "zeros.nii"})
    with pytest.raises(DataError, match="zeros.nii is constant"):
        check_case(case)


def test_a_label_map_on_another_grid_than_its_image_is_refused():
    from medfeat.errors import GeometryError
    from medfeat.pipelines.cases import check_case

    other = Grid.from_shape((8, 8, 8), 2.0, origin=(1.0, 0.0, 0.0))
    labels = Image(np.ones((8, 8, 8), np.uint8), other, {"name": "labels.nii.gz"})
    with pytest.raises(GeometryError, match="moving label map labels.nii.gz is on another grid"):
        check_case(small_case(moving_labels=labels, fixed_labels=None))


def test_a_two_column_landmark_table_for_a_3d_image_is_refused():
    from medfeat.errors import LandmarkError
    from medfeat.pipelines.cases import check_case

    flat = PointSet(np.zeros((4, 2)), meta={"path": "points.csv"})
    with pytest.raises(LandmarkError, match="points.csv has 2 coordinates per point"):
        check_case(small_case(fixed_points=flat, moving_points=flat))


def test_refusals_come_before_features_are_computed(tmp_path, monkeypatch):
    from medfeat.builtins import backbones
    from medfeat.errors import DataError

    def fail(*args, **kwargs):  # pragma: no cover - must not be reached
        raise AssertionError("features were computed")

    monkeypatch.setattr(backbones.MindBackbone, "extract", fail)
    grid = Grid.from_shape((8, 8, 8), 2.0)
    fixed = Image(np.random.default_rng(0).random(grid.shape).astype(np.float32), grid)
    text = files_pipeline(tmp_path, {"fixed": fixed, "moving": Image(np.zeros(grid.shape), grid)})
    with pytest.raises(DataError, match="constant"):
        run_pipeline(tmp_path, text)
    assert not list((tmp_path / "out-p").rglob("*.nii.gz"))
