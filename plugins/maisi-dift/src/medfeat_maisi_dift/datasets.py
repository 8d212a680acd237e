"""Learn2Reg LungCT adapter: inspiration ``_0000`` (A, fixed) -> expiration ``_0001`` (B, moving)."""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from medfeat.api import InputFileError, RegistrationCase
from medfeat_maisi_dift.config import LungCTConfig


class LungCTDataset:
    """Cases ``LungCT_<id>_0000`` / ``_0001`` with keypoint CSVs in voxel coordinates."""

    def __init__(self, config: LungCTConfig) -> None:
        self.config = config

    def _folder(self, kind: str) -> Path:
        return self.config.root / f"{kind}{self.config.split}"

    def case_ids(self) -> list[str]:
        images = self._folder("images")
        if not images.is_dir():
            raise InputFileError(
                f"Learn2Reg LungCT: {images} is not a folder.",
                remedy="Pass the dataset root that holds imagesTr/, masksTr/ and keypointsTr/.",
            )
        ids = sorted(
            p.name[: -len("_0000.nii.gz")]
            for p in images.glob("*_0000.nii.gz")
            if (images / p.name.replace("_0000.nii.gz", "_0001.nii.gz")).is_file()
        )
        if self.config.cases is not None:
            wanted = {c if c.startswith("LungCT_") else f"LungCT_{c}" for c in self.config.cases}
            missing = sorted(wanted - set(ids))
            if missing:
                raise InputFileError(
                    f"Learn2Reg LungCT cases {missing} have no _0000/_0001 pair in {images}.",
                    remedy=f"Choose among: {', '.join(ids) or 'none'}.",
                )
            ids = [i for i in ids if i in wanted]
        if not ids:
            raise InputFileError(
                f"{images} holds no *_0000.nii.gz / *_0001.nii.gz pairs.", remedy="Check root."
            )
        return ids

    def registration_cases(self) -> Iterator[RegistrationCase]:
        from medfeat.api import FilesConfig, LandmarkFile, PointSet, load_pair

        c = self.config
        for case_id in self.case_ids():
            kp = [self._folder("keypoints") / f"{case_id}_000{p}.csv" for p in (0, 1)]
            for path in kp:
                if not path.is_file():
                    raise InputFileError(
                        f"Learn2Reg LungCT keypoints {path} are missing.",
                        remedy="Keypoint CSVs live in keypoints<split>/ next to images<split>/.",
                    )
            mask = self._folder("masks") / f"{case_id}_0000.nii.gz"
            case = load_pair(
                FilesConfig(
                    fixed=self._folder("images") / f"{case_id}_0000.nii.gz",
                    moving=self._folder("images") / f"{case_id}_0001.nii.gz",
                    fixed_landmarks=LandmarkFile(
                        path=kp[0], format="table", axis_order=c.keypoint_axis_order
                    ),
                    moving_landmarks=LandmarkFile(
                        path=kp[1], format="table", axis_order=c.keypoint_axis_order
                    ),
                    fixed_mask=mask if c.use_masks and mask.is_file() else None,
                    case_id=case_id,
                )
            )
            case.inputs += kp
            if c.max_keypoints is not None and len(case.fixed_points) > c.max_keypoints:
                rng = np.random.default_rng([c.keypoint_seed, zlib.crc32(case_id.encode())])
                keep = np.sort(rng.choice(len(case.fixed_points), c.max_keypoints, replace=False))
                case.fixed_points = PointSet(case.fixed_points.points[keep], meta={"rows": keep})
                case.moving_points = PointSet(case.moving_points.points[keep], meta={"rows": keep})
            yield case


def make_lungct(config: LungCTConfig, context) -> LungCTDataset:
    return LungCTDataset(config)
