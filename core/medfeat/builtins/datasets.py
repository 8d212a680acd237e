"""Built-in dataset adapters: explicit files, a CSV of pairs, DIR-Lab 4D-CT folders, Learn2Reg
tasks and the synthetic breathing phantom.

Besides ``registration_cases()``, each adapter lists its cases cheaply (``list_cases()``: ids and
input files, nothing read) and loads one by id (``load_case(id)``), so a cohort's workers read
only their own cases (:mod:`medfeat.cohort`).
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from medfeat.components import RegistrationCase
from medfeat.errors import InputFileError


class LandmarkFile(BaseModel):
    """A landmark file and how to read it."""

    model_config = ConfigDict(extra="forbid")
    path: Path = Field(description="The landmark file.")
    format: Literal["auto", "table", "elastix", "transformix", "fcsv", "mrk.json"] = Field(
        "auto", description="File format (auto: from the file name and content)."
    )
    axis_order: Literal["xyz", "zyx"] | None = Field(
        None,
        description="Set for voxel-index tables: xyz (ITK i,j,k) or zyx (numpy k,j,i); unset means world mm.",
    )
    space: Literal["lps", "ras"] | None = Field(None, description="For world-coordinate CSV files.")


class FilesConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    fixed: Path = Field(description="Fixed image file (NIfTI, NRRD, MHA, ...).")
    moving: Path = Field(description="Moving image file.")
    fixed_landmarks: LandmarkFile | None = Field(
        None, description="Landmarks of the fixed image (the queries of a correspondence run)."
    )
    moving_landmarks: LandmarkFile | None = Field(
        None, description="Corresponding landmarks of the moving image (for TRE in mm)."
    )
    fixed_labels: Path | None = Field(None, description="Label map of the fixed image (Dice).")
    moving_labels: Path | None = Field(None, description="Label map of the moving image.")
    fixed_mask: Path | None = Field(
        None, description="Mask of the fixed image that weights the data term."
    )
    moving_mask: Path | None = Field(
        None,
        description="Mask of the moving image (its own grid; used by optimisers and aligners "
        "that accept one, with the pipeline's moving_mask: from-data).",
    )
    case_id: str = Field("case", description="Name of the case (its output folder).")


def _pair_inputs(config: FilesConfig) -> list[Path]:
    """The files a pair is read from (images, label maps, mask, landmark files)."""
    paths = [
        config.fixed,
        config.moving,
        config.fixed_labels,
        config.moving_labels,
        config.fixed_mask,
        config.moving_mask,
    ]
    paths += [s.path for s in (config.fixed_landmarks, config.moving_landmarks) if s]
    return [p for p in paths if p]


def _unknown_case(case_id: str, known: list[str]) -> InputFileError:
    return InputFileError(
        f"There is no case {case_id!r} in this dataset.",
        remedy=f"Choose among: {', '.join(known) or 'none'}.",
    )


def _read_points(spec: LandmarkFile | None, image):
    if spec is None:
        return None
    from medfeat.io.landmarks import read_landmarks

    return read_landmarks(
        spec.path,
        image=image,
        axis_order=spec.axis_order,
        space=spec.space,
        fmt=None if spec.format == "auto" else spec.format,
    )


def load_pair(config: FilesConfig) -> RegistrationCase:
    """Read a pair and its annotations, always through each file's geometry."""
    from medfeat.io.images import read_image

    fixed = read_image(config.fixed)
    moving = read_image(config.moving)
    case = RegistrationCase(
        id=config.case_id,
        fixed=fixed,
        moving=moving,
        fixed_points=_read_points(config.fixed_landmarks, fixed),
        moving_points=_read_points(config.moving_landmarks, moving),
        fixed_labels=read_image(config.fixed_labels) if config.fixed_labels else None,
        moving_labels=read_image(config.moving_labels) if config.moving_labels else None,
        fixed_mask=read_image(config.fixed_mask) if config.fixed_mask else None,
        moving_mask=read_image(config.moving_mask) if config.moving_mask else None,
    )
    case.inputs = _pair_inputs(config)
    return case


class FilesDataset:
    def __init__(self, config: FilesConfig) -> None:
        self.config = config

    def registration_cases(self) -> Iterator[RegistrationCase]:
        yield load_pair(self.config)

    def list_cases(self) -> list[tuple[str, list[Path]]]:
        return [(self.config.case_id, _pair_inputs(self.config))]

    def load_case(self, case_id: str) -> RegistrationCase:
        if case_id != self.config.case_id:
            raise _unknown_case(case_id, [self.config.case_id])
        return load_pair(self.config)


def make_files(config: FilesConfig, context) -> FilesDataset:
    return FilesDataset(config)


class CsvPairsConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    csv: Path = Field(
        description="CSV with columns fixed, moving and optionally case_id, fixed_landmarks, moving_landmarks, fixed_labels, moving_labels, fixed_mask, moving_mask. Relative paths are relative to the CSV."
    )
    landmark_axis_order: Literal["xyz", "zyx"] | None = Field(
        None, description="Axis order of voxel-index landmark files."
    )
    landmark_format: Literal["auto", "table", "elastix", "transformix", "fcsv", "mrk.json"] = Field(
        "auto", description="Format of the landmark files (auto: from name and content)."
    )


class CsvPairsDataset:
    def __init__(self, config: CsvPairsConfig) -> None:
        self.config = config

    def rows(self) -> list[dict[str, str]]:
        path = self.config.csv
        if not path.is_file():
            raise InputFileError(
                f"Pairs CSV {path} does not exist.", remedy="Check `data.csv` in the pipeline."
            )
        with path.open(newline="") as fh:
            rows = list(csv.DictReader(fh))
        missing = {"fixed", "moving"} - set(rows[0] if rows else {})
        if not rows or missing:
            raise InputFileError(
                f"Pairs CSV {path} needs a header with at least the columns fixed and moving"
                + (
                    f"; missing: {', '.join(sorted(missing))}."
                    if rows
                    else " and one row per pair."
                ),
            )
        return rows

    def registration_cases(self) -> Iterator[RegistrationCase]:
        for i, row in enumerate(self.rows()):
            yield load_pair(self._row_config(i, row))

    def _configs(self) -> list[FilesConfig]:
        return [self._row_config(i, row) for i, row in enumerate(self.rows())]

    def list_cases(self) -> list[tuple[str, list[Path]]]:
        return [(c.case_id, _pair_inputs(c)) for c in self._configs()]

    def load_case(self, case_id: str) -> RegistrationCase:
        configs = self._configs()
        for c in configs:
            if c.case_id == case_id:
                return load_pair(c)
        raise _unknown_case(case_id, [c.case_id for c in configs])

    def _row_config(self, index: int, row: dict[str, str]) -> FilesConfig:
        base = self.config.csv.parent

        def path(key: str) -> Path | None:
            value = (row.get(key) or "").strip()
            return (base / value) if value else None

        def landmarks(key: str) -> LandmarkFile | None:
            p = path(key)
            if p is None:
                return None
            return LandmarkFile(
                path=p,
                format=self.config.landmark_format,
                axis_order=self.config.landmark_axis_order,
            )

        return FilesConfig(
            fixed=path("fixed"),
            moving=path("moving"),
            fixed_landmarks=landmarks("fixed_landmarks"),
            moving_landmarks=landmarks("moving_landmarks"),
            fixed_labels=path("fixed_labels"),
            moving_labels=path("moving_labels"),
            fixed_mask=path("fixed_mask"),
            moving_mask=path("moving_mask"),
            case_id=(row.get("case_id") or f"pair_{index:03d}").strip(),
        )


def make_csv_pairs(config: CsvPairsConfig, context) -> CsvPairsDataset:
    return CsvPairsDataset(config)


class PhantomConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    shape: tuple[int, int, int] = Field((64, 64, 64), description="Array shape (k, j, i).")
    spacing_mm: float = Field(3.0, gt=0, description="Isotropic voxel spacing (mm).")
    amplitude_mm: float = Field(
        12.0, ge=0, description="Peak craniocaudal breathing displacement (mm)."
    )
    num_vessels: int = Field(60, ge=1, description="Vessels in the lungs = landmarks (count).")
    noise: float = Field(
        0.01, ge=0, description="Standard deviation of Gaussian noise on the [0, 1] intensities."
    )
    seed: int = Field(0, description="Seed of the vessel positions and the noise.")


class PhantomDataset:
    def __init__(self, config: PhantomConfig) -> None:
        self.config = config

    @property
    def case_id(self) -> str:
        return f"breathing-phantom-seed{self.config.seed}"

    def list_cases(self) -> list[tuple[str, list[Path]]]:
        return [(self.case_id, [])]

    def load_case(self, case_id: str) -> RegistrationCase:
        if case_id != self.case_id:
            raise _unknown_case(case_id, [self.case_id])
        return next(self.registration_cases())

    def registration_cases(self) -> Iterator[RegistrationCase]:
        from medfeat.phantoms import breathing_phantom

        c = self.config
        pair = breathing_phantom(
            c.shape, c.spacing_mm, c.amplitude_mm, c.num_vessels, c.noise, c.seed
        )
        yield RegistrationCase(
            id=self.case_id,
            fixed=pair.fixed,
            moving=pair.moving,
            fixed_points=pair.fixed_points,
            moving_points=pair.moving_points,
            fixed_labels=pair.fixed_labels,
            moving_labels=pair.moving_labels,
            meta={"generator": "medfeat.phantoms.breathing_phantom", **c.model_dump()},
        )


def make_breathing_phantom(config: PhantomConfig, context) -> PhantomDataset:
    return PhantomDataset(config)


class Lung4DCTConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    root: Path = Field(
        description="Folder of case_* folders, each with T00/T50 images and landmark files."
    )
    cases: list[str] | None = Field(None, description="Case folder names to use (default: all).")
    fixed_phase: str = Field("T00", description="Phase used as the fixed image (end-inhale).")
    moving_phase: str = Field("T50", description="Phase used as the moving image (end-exhale).")
    landmark_axis_order: Literal["xyz", "zyx"] = Field(
        "zyx",
        description="Axis order of the landmark rows (the DIR-Lab export here is numpy k,j,i).",
    )


class Lung4DCTDataset:
    """DIR-Lab-style 4D-CT cases: ``case_*/{T00,T50}.nii.gz`` and ``landmarks_{T00,T50}.txt`` (voxel indices)."""

    def __init__(self, config: Lung4DCTConfig) -> None:
        self.config = config

    def case_folders(self) -> list[Path]:
        root = self.config.root
        if not root.is_dir():
            raise InputFileError(
                f"lung4dct root {root} is not a folder.",
                remedy="Pass the folder that holds the case_* folders (--root).",
            )
        folders = sorted(p for p in root.iterdir() if p.is_dir() and p.name.startswith("case"))
        if self.config.cases is not None:
            known = {p.name: p for p in folders}
            missing = [c for c in self.config.cases if c not in known]
            if missing:
                raise InputFileError(
                    f"lung4dct cases {missing} are not in {root} (found: {', '.join(known) or 'none'})."
                )
            folders = [known[c] for c in self.config.cases]
        if not folders:
            raise InputFileError(f"{root} holds no case_* folders.", remedy="Check --root.")
        return folders

    def _pair(self, folder: Path) -> FilesConfig:
        c = self.config
        return FilesConfig(
            fixed=folder / f"{c.fixed_phase}.nii.gz",
            moving=folder / f"{c.moving_phase}.nii.gz",
            fixed_landmarks=LandmarkFile(
                path=folder / f"landmarks_{c.fixed_phase}.txt", axis_order=c.landmark_axis_order
            ),
            moving_landmarks=LandmarkFile(
                path=folder / f"landmarks_{c.moving_phase}.txt", axis_order=c.landmark_axis_order
            ),
            case_id=folder.name,
        )

    def registration_cases(self) -> Iterator[RegistrationCase]:
        for folder in self.case_folders():
            yield load_pair(self._pair(folder))

    def list_cases(self) -> list[tuple[str, list[Path]]]:
        return [(f.name, _pair_inputs(self._pair(f))) for f in self.case_folders()]

    def load_case(self, case_id: str) -> RegistrationCase:
        folders = {f.name: f for f in self.case_folders()}
        if case_id not in folders:
            raise _unknown_case(case_id, list(folders))
        return load_pair(self._pair(folders[case_id]))


def make_lung4dct(config: Lung4DCTConfig, context) -> Lung4DCTDataset:
    return Lung4DCTDataset(config)


class Learn2RegConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    root: Path = Field(
        description="Folder of a Learn2Reg task: its `*_dataset.json` and the folders it names "
        "(imagesTr/, masksTr/, keypointsTr/, labelsTr/, ...)."
    )
    dataset_json: str | None = Field(
        None, description="File name of the task description (default: the one *_dataset.json)."
    )
    split: Literal["training", "validation", "test"] = Field(
        "validation",
        description="Pairs to register: training (`training_paired_images`), validation "
        "(`registration_val`) or test (`registration_test`).",
    )
    cases: list[str] | None = Field(
        None, description="Case ids to use, e.g. '0101_0101' (fixed_moving; default: all)."
    )
    keypoints: bool = Field(True, description="Read the keypoint CSVs of both images (TRE).")
    labels: bool = Field(True, description="Read the label maps of both images (Dice).")
    masks: bool = Field(True, description="Use the fixed image's mask as the fixed mask.")
    keypoint_axis_order: Literal["xyz", "zyx"] = Field(
        "xyz", description="Axis order of the keypoint rows (Learn2Reg: voxel x,y,z = ITK i,j,k)."
    )


_L2R_SPLITS = {
    "training": "training_paired_images",
    "validation": "registration_val",
    "test": "registration_test",
}


class Learn2RegDataset:
    """A Learn2Reg task read from its ``*_dataset.json``: the pairs of a split, and for each
    image the mask, keypoints and label map the task provides (listed under ``training``, or
    found beside the image: ``imagesXx/N.nii.gz`` -> ``masksXx/N.nii.gz``, ``labelsXx/N.nii.gz``,
    ``keypointsXx/N.csv``). Case ids are ``<fixed case>_<moving case>``, as in the submission's
    ``disp_<fixed>_<moving>.nii.gz`` (``meta["learn2reg_displacement"]``); write the fields in
    that convention with ``output.field_convention: learn2reg``."""

    def __init__(self, config: Learn2RegConfig) -> None:
        self.config = config

    def _description_path(self) -> Path:
        root = self.config.root
        if not root.is_dir():
            raise InputFileError(
                f"Learn2Reg root {root} is not a folder.",
                remedy="Pass the task folder that holds its *_dataset.json (data.root or --root).",
            )
        if self.config.dataset_json:
            path = root / self.config.dataset_json
            if not path.is_file():
                raise InputFileError(
                    f"{path} does not exist.",
                    remedy="Check data.dataset_json (a file name in root).",
                )
            return path
        found = sorted(root.glob("*_dataset.json"))
        if len(found) != 1:
            raise InputFileError(
                f"{root} holds {len(found)} *_dataset.json files"
                + (f" ({', '.join(p.name for p in found)})." if found else "."),
                remedy="Point data.root at one Learn2Reg task folder, or name the file with "
                "data.dataset_json.",
            )
        return found[0]

    def description(self) -> dict:
        import json

        path = self._description_path()
        try:
            info = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise InputFileError(
                f"Cannot read the Learn2Reg description {path}: {exc}.",
                remedy="It must be the task's JSON file as distributed.",
            ) from None
        if not isinstance(info, dict):
            raise InputFileError(f"{path} is not a JSON object.", remedy="Check the file.")
        return info

    def _resolve(self, rel: str) -> Path:
        return (self.config.root / rel).resolve()

    def _annotations(self, info: dict) -> dict[Path, dict[str, Path]]:
        out: dict[Path, dict[str, Path]] = {}
        for entry in info.get("training") or []:
            if isinstance(entry, dict) and isinstance(entry.get("image"), str):
                out[self._resolve(entry["image"])] = {
                    k: self._resolve(v)
                    for k, v in entry.items()
                    if k in ("mask", "keypoints", "label") and isinstance(v, str)
                }
        return out

    def _beside(self, image: Path, kind: str) -> Path | None:
        """``imagesTr/N.nii.gz`` -> ``<kind>sTr/N.<ext>`` when that file exists."""
        folder = image.parent.name
        if not folder.startswith("images"):
            return None
        stem = image.name.removesuffix(".nii.gz")
        ext = ".csv" if kind == "keypoints" else ".nii.gz"
        sub = {"keypoints": "keypoints", "mask": "masks", "label": "labels"}[kind]
        candidate = image.parent.parent / (sub + folder.removeprefix("images")) / (stem + ext)
        return candidate if candidate.is_file() else None

    @staticmethod
    def _case_number(image: Path) -> str:
        """``NLST_0101_0000.nii.gz`` -> ``0101`` (the case number of the submission names)."""
        parts = image.name.removesuffix(".nii.gz").split("_")
        return parts[-2] if len(parts) >= 3 else parts[-1]

    def _pairs(self) -> list[tuple[str, FilesConfig, dict]]:
        c = self.config
        info = self.description()
        key = _L2R_SPLITS[c.split]
        pairs = info.get(key)
        if not pairs:
            remedy = "Choose another split (training, validation or test)."
            if c.split == "training" and info.get("pairings") == "unpaired":
                remedy = "This task's training images are unpaired: list the pairs you want in a "
                remedy += "CSV and use the csv-pairs dataset, or use split: validation."
            raise InputFileError(
                f"The Learn2Reg task {info.get('name', c.root.name)!r} lists no pairs under "
                f"{key!r}.",
                remedy=remedy,
            )
        notes = self._annotations(info)
        out = []
        for pair in pairs:
            if not isinstance(pair, dict) or not {"fixed", "moving"} <= set(pair):
                raise InputFileError(
                    f"A {key!r} entry of the Learn2Reg description is not a fixed/moving pair: "
                    f"{pair!r}.",
                    remedy="Check the task's *_dataset.json.",
                )
            fixed, moving = self._resolve(pair["fixed"]), self._resolve(pair["moving"])

            def find(image: Path, kind: str) -> Path | None:
                return notes.get(image, {}).get(kind) or self._beside(image, kind)

            kp = [find(im, "keypoints") if c.keypoints else None for im in (fixed, moving)]
            if None in kp:
                kp = [None, None]  # TRE needs both
            labels = [find(im, "label") if c.labels else None for im in (fixed, moving)]
            case_id = f"{self._case_number(fixed)}_{self._case_number(moving)}"
            files = FilesConfig(
                fixed=fixed,
                moving=moving,
                fixed_landmarks=LandmarkFile(
                    path=kp[0], format="table", axis_order=c.keypoint_axis_order
                )
                if kp[0]
                else None,
                moving_landmarks=LandmarkFile(
                    path=kp[1], format="table", axis_order=c.keypoint_axis_order
                )
                if kp[1]
                else None,
                fixed_labels=labels[0],
                moving_labels=labels[1],
                fixed_mask=find(fixed, "mask") if c.masks else None,
                case_id=case_id,
            )
            meta = {
                "learn2reg_task": info.get("name"),
                "learn2reg_split": key,
                "learn2reg_displacement": f"disp_{case_id}.nii.gz",
            }
            out.append((case_id, files, meta))
        if c.cases is not None:
            known = [i for i, _, _ in out]
            missing = [x for x in c.cases if x not in known]
            if missing:
                raise _unknown_case(missing[0], known)
            out = [p for p in out if p[0] in c.cases]
        return out

    def list_cases(self) -> list[tuple[str, list[Path]]]:
        return [(case_id, _pair_inputs(files)) for case_id, files, _ in self._pairs()]

    def load_case(self, case_id: str) -> RegistrationCase:
        pairs = self._pairs()
        for i, files, meta in pairs:
            if i == case_id:
                case = load_pair(files)
                case.meta.update(meta)
                return case
        raise _unknown_case(case_id, [i for i, _, _ in pairs])

    def registration_cases(self) -> Iterator[RegistrationCase]:
        for _, files, meta in self._pairs():
            case = load_pair(files)
            case.meta.update(meta)
            yield case


def make_learn2reg(config: Learn2RegConfig, context) -> Learn2RegDataset:
    return Learn2RegDataset(config)
