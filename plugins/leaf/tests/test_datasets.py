"""Dataset adapters: the image/mask folder (any extension, binarised masks, leakage-free group
splits) and the generated blobs (deterministic, disjoint splits on the configured grid)."""

from __future__ import annotations

import numpy as np
import pytest
from medfeat_leaf.config import ImageMaskFolderConfig, SyntheticBlobsConfig
from medfeat_leaf.datasets import ImageMaskFolder, SyntheticBlobs, cvc_sequence
from PIL import Image as PILImage

from medfeat.errors import DataError, InputFileError


def _folder(tmp_path, n=12, ext=(".png", ".jpg", ".tif")):
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    rng = np.random.default_rng(0)
    for i in range(1, n + 1):
        e = ext[i % len(ext)]
        PILImage.fromarray(rng.integers(0, 255, (20, 24, 3), dtype=np.uint8)).save(
            tmp_path / "images" / f"{i}{e}"
        )
        m = np.zeros((20, 24), np.uint8)
        m[5:10, 6:12] = 200
        m[0, 0] = 100  # below the threshold: background
        PILImage.fromarray(m).save(tmp_path / "masks" / f"{i}.png")
    return tmp_path


def test_reads_any_extension_and_binarises_masks(tmp_path):
    data = ImageMaskFolder(ImageMaskFolderConfig(root=_folder(tmp_path)))
    s = next(data.segmentation_samples("all"))
    assert s.image.numpy().shape == (3, 20, 24) and s.image.grid.shape == (20, 24)
    labels = s.labels.numpy()
    assert set(np.unique(labels)) == {0, 1} and labels.sum() == 30 and labels[0, 0] == 0
    assert len(list(data.segmentation_samples("all"))) == 12


def test_group_csv_keeps_groups_within_one_split(tmp_path):
    root = _folder(tmp_path)
    (root / "groups.csv").write_text(
        "id,group\n" + "".join(f"{i},p{(i - 1) // 3}\n" for i in range(1, 13))
    )
    data = ImageMaskFolder(ImageMaskFolderConfig(root=root, groups_csv=root / "groups.csv",
                                                 fractions=[0.5, 0.25, 0.25]))  # fmt: skip
    splits = {
        s: {x.group for x in data.segmentation_samples(s)} for s in ("train", "validation", "test")
    }
    assert splits["train"] and splits["validation"] and splits["test"]
    assert not (splits["train"] & splits["validation"]) and not (splits["train"] & splits["test"])
    assert sum(len(list(data.segmentation_samples(s))) for s in splits) == 12


def test_split_csv_and_errors(tmp_path):
    root = _folder(tmp_path, n=4)
    (root / "split.csv").write_text("id,split\n1,train\n2,train\n3,validation\n4,test\n")
    data = ImageMaskFolder(ImageMaskFolderConfig(root=root, split_csv=root / "split.csv"))
    assert [s.id for s in data.segmentation_samples("train")] == ["1", "2"]
    (root / "bad.csv").write_text("id,split\n1,training\n")
    with pytest.raises(DataError, match="unknown split"):
        ImageMaskFolder(ImageMaskFolderConfig(root=root, split_csv=root / "bad.csv"))
    with pytest.raises(InputFileError, match="not a folder"):
        ImageMaskFolder(ImageMaskFolderConfig(root=tmp_path / "nowhere"))


def test_cvc_sequence_table():
    assert [cvc_sequence(f) for f in (1, 25, 26, 50, 51, 205, 206, 612)] == [
        1,
        1,
        2,
        2,
        3,
        10,
        11,
        29,
    ]
    with pytest.raises(DataError):
        cvc_sequence(613)


@pytest.mark.realdata
def test_cvc_clinicdb_split_holds_out_whole_sequences(shared_data):
    root = shared_data / "polyp-cvc"
    data = ImageMaskFolder(
        ImageMaskFolderConfig(root=root, grouping="cvc-clinicdb", max_samples=None)
    )
    groups = {
        s: {data.group_of(i) for i in data.ids_of(s)} for s in ("train", "validation", "test")
    }
    assert not (groups["train"] & groups["test"]) and not (groups["train"] & groups["validation"])
    n = {s: len(data.ids_of(s)) for s in groups}
    assert sum(n.values()) == 609 and 0.7 < n["train"] / 609 < 0.9
    s = data.sample(data.ids_of("test")[0])
    assert s.image.numpy().shape == (3, 256, 256) and set(np.unique(s.labels.numpy())) <= {0, 1}


def test_synthetic_blobs_are_deterministic_with_disjoint_splits_on_the_configured_grid():
    cfg = SyntheticBlobsConfig(size_px=32, spacing_mm=0.5, n_train=3, n_validation=2, n_test=1)
    data = SyntheticBlobs(cfg)
    ids = {s: [x.id for x in data.segmentation_samples(s)] for s in ("train", "validation", "test")}
    assert ids == {"train": ["blob0000", "blob0001", "blob0002"],
                   "validation": ["blob0003", "blob0004"], "test": ["blob0005"]}  # fmt: skip
    a, b = (
        next(data.segmentation_samples("test")),
        next(SyntheticBlobs(cfg).segmentation_samples("test")),
    )
    assert np.array_equal(a.image.numpy(), b.image.numpy())  # same seed, same sample
    assert a.image.numpy().shape == (3, 32, 32) and a.labels.grid.spacing == (0.5, 0.5)
    mask = a.labels.numpy().astype(bool)
    assert 0 < mask.sum() < mask.size  # one blob, not the whole frame
    rgb = a.image.numpy().astype(float).mean(0)
    assert rgb[mask].mean() > rgb[~mask].mean() + 40  # the blob is brighter than its background
    other = SyntheticBlobs(cfg.model_copy(update={"seed": 1}))
    assert not np.array_equal(next(other.segmentation_samples("test")).labels.numpy(), mask)
    with pytest.raises(DataError, match="unknown split"):
        next(data.segmentation_samples("training"))
