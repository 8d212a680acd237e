"""Built-in dataset adapters: explicit files, a CSV of pairs, and the synthetic breathing phantom."""

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
    case_id: str = Field("case", description="Name of the case (its output folder).")


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
    )
    case.inputs = [
        p
        for p in (
            config.fixed,
            config.moving,
            config.fixed_labels,
            config.moving_labels,
            config.fixed_mask,
        )
        if p
    ]
    case.inputs += [s.path for s in (config.fixed_landmarks, config.moving_landmarks) if s]
    return case


class FilesDataset:
    def __init__(self, config: FilesConfig) -> None:
        self.config = config

    def registration_cases(self) -> Iterator[RegistrationCase]:
        yield load_pair(self.config)


def make_files(config: FilesConfig, context) -> FilesDataset:
    return FilesDataset(config)


class CsvPairsConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    csv: Path = Field(
        description="CSV with columns fixed, moving and optionally case_id, fixed_landmarks, moving_landmarks, fixed_labels, moving_labels, fixed_mask. Relative paths are relative to the CSV."
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

    def registration_cases(self) -> Iterator[RegistrationCase]:
        from medfeat.phantoms import breathing_phantom

        c = self.config
        pair = breathing_phantom(
            c.shape, c.spacing_mm, c.amplitude_mm, c.num_vessels, c.noise, c.seed
        )
        yield RegistrationCase(
            id=f"breathing-phantom-seed{c.seed}",
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

    def registration_cases(self) -> Iterator[RegistrationCase]:
        c = self.config
        for folder in self.case_folders():
            fixed, moving = f"{c.fixed_phase}.nii.gz", f"{c.moving_phase}.nii.gz"
            yield load_pair(
                FilesConfig(
                    fixed=folder / fixed,
                    moving=folder / moving,
                    fixed_landmarks=LandmarkFile(
                        path=folder / f"landmarks_{c.fixed_phase}.txt",
                        axis_order=c.landmark_axis_order,
                    ),
                    moving_landmarks=LandmarkFile(
                        path=folder / f"landmarks_{c.moving_phase}.txt",
                        axis_order=c.landmark_axis_order,
                    ),
                    case_id=folder.name,
                )
            )


def make_lung4dct(config: Lung4DCTConfig, context) -> Lung4DCTDataset:
    return Lung4DCTDataset(config)
