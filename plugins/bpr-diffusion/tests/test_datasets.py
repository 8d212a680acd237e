"""Dataset adapters: HU restoration of [0, 1]-scaled volumes, slabs on their own world grids."""

from __future__ import annotations

import numpy as np
from medfeat_bpr_diffusion.config import CTVolumesConfig, ZSplitConfig
from medfeat_bpr_diffusion.datasets import CTVolumes, LabelledVolumeZSplit

from medfeat.io.images import read_image, write_image


def test_unit_scaled_volumes_are_mapped_back_to_hu_and_hu_volumes_are_kept(tmp_path, make_ct):
    hu, _ = make_ct(shape=(4, 8, 8))
    unit = hu.with_data(np.clip((hu.numpy() + 1000) / 1150, 0, 1).astype(np.float32))
    write_image(hu, tmp_path / "a_hu.nii.gz")
    write_image(unit, tmp_path / "b_unit.nii.gz")
    data = CTVolumes(
        CTVolumesConfig(paths=[str(tmp_path / "*.nii.gz")], unit_range_hu=(-1000, 150))
    )
    a, b = list(data.images())
    assert np.allclose(a.numpy(), hu.numpy(), atol=1e-3)
    assert np.allclose(b.numpy(), np.clip(hu.numpy(), -1000, 150), atol=0.05)


def test_slabs_keep_their_world_position(ct_files):
    img, lab = ct_files
    data = LabelledVolumeZSplit(
        ZSplitConfig(image=img, labels=lab, train_slices=(0, 5), test_slices=(5, 20))
    )
    (train,) = data.segmentation_samples("train")
    (test,) = data.segmentation_samples("test")
    assert train.image.grid.shape[0] == 5 and test.image.grid.shape[0] == 15
    full, labels = read_image(img), read_image(lab)
    world = full.grid.array_index_to_world(np.array([[5.0, 3.0, 4.0]]))
    assert np.allclose(test.image.grid.array_index_to_world(np.array([[0.0, 3.0, 4.0]])), world)
    assert np.array_equal(test.labels.numpy(), labels.numpy()[5:20])
    assert np.array_equal(test.image.numpy(), full.numpy()[5:20])
    assert len(list(data.segmentation_samples("all"))) == 2
