"""Label mapping, pre-alignment, and Dice/HD95 per shared label from a registration run."""

from __future__ import annotations

import json

import numpy as np
import pytest
from medfeat_dinov3.config import LabelMappedFilesConfig
from medfeat_dinov3.datasets import LabelMappedFiles, map_labels, translated

from medfeat.cli.main import main
from medfeat.errors import ConfigError
from medfeat.geometry import Grid, Image


def test_map_labels_merges_and_drops():
    labels = Image(np.array([[[0, 1, 2, 30, 31, 99]]], np.uint8), Grid.from_shape((1, 1, 6)))
    out = map_labels(labels, {5: [1], 17: [30, 31], 3: [2]}).numpy()
    assert out.tolist() == [[[0, 5, 3, 17, 17, 0]]]


def test_label_maps_must_share_ids(tmp_path):
    config = LabelMappedFilesConfig(
        fixed="f", moving="m", fixed_labels="fl", moving_labels="ml",
        fixed_label_map={1: [1], 2: [2]}, moving_label_map={1: [1]},
    )  # fmt: skip
    with pytest.raises(ConfigError, match="only in fixed: \\[2\\]"):
        LabelMappedFiles(config)


def test_translation_moves_geometry_and_cache_key_but_keeps_the_file_checksum():
    from medfeat.api import content_key

    image = Image(np.zeros((2, 3, 4)), Grid.from_shape((2, 3, 4), 2.0), {"sha256": "abc"})
    moved = translated(image, np.array([1.0, -2.0, 3.0]))
    assert moved.grid.origin == (1.0, -2.0, 3.0)
    assert moved.meta["sha256"] == "abc"  # still the input file's bytes (provenance)
    assert moved.meta["translated_mm"] == [1.0, -2.0, 3.0]
    assert content_key(moved) not in (None, "abc")  # the feature cache tells them apart


def test_registration_run_reports_dice_and_hd95_per_shared_label(tmp_path):
    """Through `medfeat run`: a cube (fixed id 3, moving id 30 -> shared 3) moved 4 mm along x."""
    import warnings

    from medfeat.io.images import read_image, write_image
    from medfeat.metrics.overlap import dice_per_label, hd95_mm

    grid = Grid.from_shape((20, 20, 20), (2.0, 1.0, 1.0))  # x (ITK i) 2 mm
    a = np.zeros(grid.shape, np.uint8)
    b = np.zeros(grid.shape, np.uint8)
    a[5:15, 5:15, 5:15] = 3
    b[5:15, 5:15, 7:17] = 30  # two voxels along x = 4 mm
    files = {
        "fixed": Image((a > 0).astype(np.float32), grid),
        "moving": Image((b > 0).astype(np.float32), grid),
        "fixed_labels": Image(a, grid),
        "moving_labels": Image(b, grid),
    }
    data = ", ".join(f"{k}: {write_image(v, tmp_path / f'{k}.nii.gz')}" for k, v in files.items())
    pipeline = tmp_path / "cube.yaml"
    pipeline.write_text(
        "kind: registration\nrequires: [medfeat-dinov3]\n"
        f"data: {{name: label-mapped-files, case_id: cube, {data}, "
        "fixed_label_map: {3: [3]}, moving_label_map: {3: [30]}}\n"
        "backbone: {name: mind-ssc}\n"
        "optimiser: {name: convex-adam, grid_spacing_mm: 2, search_radius_mm: 4, io_spacing_mm: 2, "
        "adam_iterations: 5}\n"
    )
    out = tmp_path / "out"
    assert main(["-q", "run", str(pipeline), "--out", str(out)]) == 0
    m = json.loads((out / "cube" / "metrics.json").read_text())
    assert m["dice_before"] == {"3": pytest.approx(0.8)}
    assert m["hd95_mm_before"] == {"3": pytest.approx(4.0)}
    # the after values are those of the warped labels the run wrote
    warped = read_image(out / "cube" / "warped_moving_labels.nii.gz")
    fixed = Image(a, grid)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert m["dice_after"]["3"] == pytest.approx(dice_per_label(fixed, warped, [3])[3])
        assert m["hd95_mm_after"]["3"] == pytest.approx(hd95_mm(fixed, warped, 3))
    assert m["dice_after"]["3"] > m["dice_before"]["3"]
