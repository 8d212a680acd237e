"""Per-case helpers: the feature cache, label and point metrics, the provenance record."""

from __future__ import annotations

import contextlib
import hashlib
import os
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from medfeat.components import FeatureLevel, FeatureMap, RegistrationCase
from medfeat.geometry import Grid, Image, PointSet
from medfeat.io.checksum import remembering_checksums
from medfeat.io.images import read_image, write_image
from medfeat.pipelines import cases
from medfeat.pipelines.cases import FeatureCache


def test_feature_cache_reuses_a_file_and_stays_bounded():
    calls = []

    class Counting:
        def extract(self, image):
            calls.append(image.meta.get("sha256"))
            return FeatureMap([FeatureLevel(torch.zeros(1, 2, 2, 2), image.grid)])

    run = SimpleNamespace(
        context=SimpleNamespace(timed=lambda step: contextlib.nullcontext()),
        resolved=SimpleNamespace(components={"backbone": "b"}),
        features=FeatureCache(max_maps=4),
    )
    grid = Grid.from_shape((2, 2, 2))
    images = [Image(np.zeros((2, 2, 2)), grid, {"sha256": f"h{i}"}) for i in range(6)]
    first = cases.extract_features(run, Counting(), images[0])
    assert cases.extract_features(run, Counting(), images[0]) is first
    cases.extract_features(run, Counting(), images[1])
    assert calls == ["h0", "h1"]  # the second use of h0 came from the cache
    for im in images:
        cases.extract_features(run, Counting(), im)
    assert len(run.features) == 4
    assert calls == ["h0", "h1", "h2", "h3", "h4", "h5"]  # h0, h1 were still cached
    cases.extract_features(run, Counting(), images[0])  # dropped as least recently used
    assert calls[-1] == "h0"
    generated = Image(np.zeros((2, 2, 2)), grid)  # no checksum: never cached
    cases.extract_features(run, Counting(), generated)
    cases.extract_features(run, Counting(), generated)
    assert calls[-2:] == [None, None]


def test_feature_cache_keys_on_the_backbone_config():
    cache = FeatureCache()
    image = Image(np.zeros((2, 2, 2)), Grid.from_shape((2, 2, 2)), {"sha256": "h"})
    a = cache.get("mind radius 1", image, lambda im: "a")
    b = cache.get("mind radius 2", image, lambda im: "b")
    assert (a, b) == ("a", "b")
    assert cache.get("mind radius 1", image, lambda im: "new") == "a"


def test_feature_cache_reuses_a_resampled_image_by_its_content_key():
    from medfeat.geometry.working import resample_image

    source = Image(np.zeros((4, 4, 4)), Grid.from_shape((4, 4, 4), 2.0), {"sha256": "h"})
    working = resample_image(source, Grid.from_shape((8, 8, 8), 1.0))
    assert "sha256" not in working.meta  # not the file's bytes any more
    cache = FeatureCache()
    first = cache.get("mind", working, lambda im: "computed")
    again = resample_image(source, Grid.from_shape((8, 8, 8), 1.0))
    assert cache.get("mind", again, lambda im: "recomputed") == first
    assert cache.get("mind", source, lambda im: "source") == "source"


def cubes(shift_vox: int = 2, extra_moving_label: bool = False) -> RegistrationCase:
    """Label 3 as a 10-voxel cube; in the moving labels shifted along x (ITK i, 2 mm voxels)."""
    grid = Grid.from_shape((20, 20, 20), (2.0, 1.0, 1.0))
    a = np.zeros(grid.shape, np.uint8)
    b = np.zeros(grid.shape, np.uint8)
    a[5:15, 5:15, 5:15] = 3
    b[5:15, 5:15, 5 + shift_vox : 15 + shift_vox] = 3
    if extra_moving_label:
        b[0:2, 0:2, 0:2] = 9
    image = Image(np.zeros(grid.shape, np.float32), grid)
    return RegistrationCase(
        "c", image, image, fixed_labels=Image(a, grid), moving_labels=Image(b, grid)
    )


def test_label_metrics_dice_and_hd95_per_label():
    case = cubes(extra_moving_label=True)
    m = cases.label_metrics(case, warped_labels=case.fixed_labels)
    assert m["dice_before"] == {"3": pytest.approx(0.8), "9": 0.0}
    assert m["hd95_mm_before"]["3"] == pytest.approx(4.0)  # two voxels of 2 mm
    assert np.isnan(m["hd95_mm_before"]["9"])  # absent from the fixed labels
    assert m["dice_after"] == {"3": 1.0}
    assert m["hd95_mm_after"] == {"3": 0.0}
    assert list(m) == ["dice_before", "dice_after", "hd95_mm_before", "hd95_mm_after"]


def test_label_and_point_metrics_after_the_prealignment_alone():
    """The moving cube sits 4 mm further along x: a 4 mm pre-alignment makes it overlap exactly,
    and maps the fixed points onto the moving ones; an identity one adds nothing."""
    case = cubes(shift_vox=2)
    shift = np.eye(4)
    shift[0, 3] = 4.0
    m = cases.label_metrics(case, warped_labels=case.fixed_labels, prealignment=shift)
    assert m["dice_before"] == {"3": pytest.approx(0.8)}
    assert m["dice_prealigned"] == {"3": 1.0} and m["hd95_mm_prealigned"] == {"3": 0.0}
    assert list(m)[:3] == ["dice_before", "dice_prealigned", "dice_after"]
    assert "dice_prealigned" not in cases.label_metrics(case, case.fixed_labels, np.eye(4))
    pts = np.array([[1.0, 2.0, 3.0], [5.0, 5.0, 5.0]])
    case.fixed_points, case.moving_points = PointSet(pts), PointSet(pts + [4.0, 0.0, 0.0])
    tre = cases.point_metrics(case, None, shift)
    assert tre["tre_mm_before"]["mean"] == pytest.approx(4.0)
    assert tre["tre_mm_prealigned"]["mean"] == pytest.approx(0.0)


def test_label_metrics_need_both_label_maps():
    case = cubes()
    case.moving_labels = None
    assert cases.label_metrics(case, None) == {}


def test_point_metrics_in_mm():
    case = cubes()
    case.fixed_points = PointSet(np.array([[0.0, 0.0, 0.0], [10.0, 0.0, 0.0]]))
    case.moving_points = PointSet(np.array([[3.0, 4.0, 0.0], [10.0, 0.0, 0.0]]))
    m = cases.point_metrics(case, np.array([[3.0, 4.0, 0.0], [10.0, 0.0, 1.0]]))
    assert m["tre_mm_before"]["mean"] == pytest.approx(2.5)
    assert m["tre_mm_after"]["mean"] == pytest.approx(0.5)
    assert "tre_mm_after" not in cases.point_metrics(case, None)


def test_dice_metrics_of_a_prediction():
    case = cubes()
    m = cases.dice_metrics(case.fixed_labels, case.moving_labels)
    assert m == {"dice": {"3": pytest.approx(0.8)}, "mean_dice": pytest.approx(0.8)}


def test_case_record_reuses_the_checksum_of_reading(tmp_path, monkeypatch):
    case = cubes()
    paths = []
    for name, image in (("f", case.fixed), ("m", case.moving)):
        paths.append(write_image(image, tmp_path / f"{name}.nii.gz"))
    expected = [hashlib.sha256(p.read_bytes()).hexdigest() for p in paths]
    with remembering_checksums():
        case.fixed, case.moving = (read_image(p) for p in paths)
        case.inputs = paths
        monkeypatch.setattr("builtins.open", _refuse_open(paths, open))
        record = cases.case_record(case)
    assert [r["sha256"] for r in record["inputs"]] == expected
    assert record["fixed"]["sha256"] == expected[0]
    assert record["fixed"]["grid"]["spacing_mm"] == [2.0, 1.0, 1.0]


def _refuse_open(paths, real_open):
    refused = {p.resolve() for p in paths}

    def guarded(file, *args, **kwargs):
        if not isinstance(file, int) and Path(os.fsdecode(file)).resolve() in refused:
            raise AssertionError(f"{file} was read again")
        return real_open(file, *args, **kwargs)

    return guarded
