"""The built-in dataset adapters (lung4dct on the real data, when present)."""

import numpy as np
import pytest


@pytest.mark.realdata
def test_lung4dct_adapter_on_real_data(shared_data):
    from medfeat.builtins.datasets import Lung4DCTConfig, Lung4DCTDataset

    cases = list(
        Lung4DCTDataset(
            Lung4DCTConfig(root=shared_data / "lung4dct", cases=["case_002"])
        ).registration_cases()
    )
    case = cases[0]
    assert len(case.fixed_points) == len(case.moving_points) == 375
    d = np.linalg.norm(case.fixed_points.points - case.moving_points.points, axis=1).mean()
    assert d == pytest.approx(4.4, abs=0.05)  # the README's initial landmark distance for case 2
    assert np.allclose(np.diag(case.fixed.grid.direction), [1, 1, -1])


def _write_task(root):
    """A two-pair Learn2Reg-style task (NLST layout): images, masks, keypoints in imagesTr/..."""
    import json

    from medfeat.io.images import write_image
    from medfeat.phantoms import breathing_phantom

    training, pairs = [], []
    for n in ("0001", "0002"):
        pair = breathing_phantom((12, 12, 12), 4.0, amplitude_mm=4.0, num_vessels=5, seed=int(n))
        for phase, image, pts in (("0000", pair.fixed, pair.fixed_points), ("0001", pair.moving, pair.moving_points)):  # fmt: skip
            name = f"TASK_{n}_{phase}"
            for sub in ("imagesTr", "masksTr", "keypointsTr"):
                (root / sub).mkdir(parents=True, exist_ok=True)
            write_image(image, root / "imagesTr" / f"{name}.nii.gz")
            write_image(image.__class__((image.numpy() > 0.1).astype(np.uint8), image.grid), root / "masksTr" / f"{name}.nii.gz")  # fmt: skip
            ijk = image.grid.world_to_array_index(pts.points)[:, ::-1]  # Learn2Reg: voxel x,y,z
            np.savetxt(root / "keypointsTr" / f"{name}.csv", ijk, delimiter=",")
            entry = {"image": f"./imagesTr/{name}.nii.gz", "mask": f"./masksTr/{name}.nii.gz"}
            if n == "0001":  # the other image's keypoints are found beside it
                entry["keypoints"] = f"./keypointsTr/{name}.csv"
            training.append(entry)
        pairs.append({"fixed": f"./imagesTr/TASK_{n}_0000.nii.gz", "moving": f"./imagesTr/TASK_{n}_0001.nii.gz"})  # fmt: skip
    (root / "TASK_dataset.json").write_text(
        json.dumps(
            {
                "name": "TASK",
                "training": training,
                "training_paired_images": pairs[:1],
                "registration_val": pairs[1:],
                "registration_test": [],
            }
        )  # fmt: skip
    )
    return pairs


def test_learn2reg_adapter_reads_a_task_from_its_dataset_json(tmp_path):
    from medfeat.builtins.datasets import Learn2RegConfig, Learn2RegDataset
    from medfeat.errors import InputFileError
    from medfeat.phantoms import breathing_phantom

    _write_task(tmp_path)
    val = Learn2RegDataset(Learn2RegConfig(root=tmp_path))
    assert [c for c, _ in val.list_cases()] == ["0002_0002"]
    case = val.load_case("0002_0002")
    truth = breathing_phantom((12, 12, 12), 4.0, amplitude_mm=4.0, num_vessels=5, seed=2)
    assert np.allclose(case.fixed_points.points, truth.fixed_points.points, atol=1e-3)
    assert np.allclose(case.moving_points.points, truth.moving_points.points, atol=1e-3)
    assert (
        case.fixed_mask is not None
        and case.meta["learn2reg_displacement"] == "disp_0002_0002.nii.gz"
    )
    assert len(case.inputs) == 5  # two images, the fixed mask, two keypoint files
    train = Learn2RegDataset(Learn2RegConfig(root=tmp_path, split="training", masks=False))
    (only,) = list(train.registration_cases())
    assert only.id == "0001_0001" and only.fixed_mask is None
    with pytest.raises(InputFileError, match="no pairs under 'registration_test'"):
        Learn2RegDataset(Learn2RegConfig(root=tmp_path, split="test")).list_cases()
    with pytest.raises(InputFileError, match="0009_0009"):
        Learn2RegDataset(Learn2RegConfig(root=tmp_path, cases=["0009_0009"])).list_cases()


def test_indexed_adapters_list_without_reading_and_load_by_id(tmp_path):
    from medfeat.builtins.datasets import CsvPairsConfig, CsvPairsDataset
    from medfeat.errors import InputFileError

    _write_task(tmp_path)
    (tmp_path / "pairs.csv").write_text(
        "case_id,fixed,moving\n"
        "a,imagesTr/TASK_0001_0000.nii.gz,imagesTr/TASK_0001_0001.nii.gz\n"
        "b,imagesTr/TASK_0002_0000.nii.gz,missing.nii.gz\n"
    )
    data = CsvPairsDataset(CsvPairsConfig(csv=tmp_path / "pairs.csv"))
    listed = data.list_cases()  # nothing is read: the missing file does not matter yet
    assert [c for c, _ in listed] == ["a", "b"] and listed[1][1][1].name == "missing.nii.gz"
    assert data.load_case("a").fixed.grid.shape == (12, 12, 12)
    with pytest.raises(InputFileError):
        data.load_case("b")
    with pytest.raises(InputFileError, match="no case 'c'"):
        data.load_case("c")


def test_pairs_csv_reads_a_moving_mask_on_its_own_grid(tmp_path):
    from medfeat.builtins.datasets import CsvPairsConfig, CsvPairsDataset
    from medfeat.geometry import Grid, Image
    from medfeat.io.images import write_image

    fixed = Image(np.zeros((6, 7, 8), np.float32), Grid.from_shape((6, 7, 8), 2.0))
    moving_grid = Grid.from_shape((5, 5, 5), (1.0, 1.5, 3.0))
    moving = Image(np.ones((5, 5, 5), np.float32), moving_grid)
    mask = np.zeros((5, 5, 5), np.uint8)
    mask[1:4, 2:4, 0:2] = 1
    for name, image in [("f", fixed), ("m", moving), ("mm", Image(mask, moving_grid))]:
        write_image(image, tmp_path / f"{name}.nii.gz")
    (tmp_path / "pairs.csv").write_text(
        "case_id,fixed,moving,moving_mask\np,f.nii.gz,m.nii.gz,mm.nii.gz\n"
    )

    dataset = CsvPairsDataset(CsvPairsConfig(csv=tmp_path / "pairs.csv"))
    case = dataset.load_case("p")
    assert case.fixed_mask is None
    assert case.moving_mask.grid.same_as(moving_grid)
    assert np.array_equal(case.moving_mask.numpy() > 0, mask > 0)
    assert tmp_path / "mm.nii.gz" in dataset.list_cases()[0][1]  # checksummed with the inputs
