"""Dataset adapters: 2D image/mask folders with leakage-free splits (by CSV, by a group column or by
CVC sequence), and generated frames with one bright elliptical 'polyp' each."""

from __future__ import annotations

import csv
import random
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from medfeat.api import DataError, Grid, Image, InputFileError, SegmentationSample
from medfeat_leaf.config import ImageMaskFolderConfig, SyntheticBlobsConfig

#: CVC-ClinicDB: last frame number of each of the 29 video sequences (ORIGINAL_README.txt).
CVC_SEQUENCE_ENDS = (
    25, 50, 67, 78, 103, 126, 151, 177, 199, 205, 227, 252, 277, 297, 317, 342, 363, 383, 408,
    428, 447, 466, 478, 503, 528, 546, 571, 591, 612,
)  # fmt: skip
SPLITS = ("train", "validation", "test")


def cvc_sequence(frame: int) -> int:
    """Sequence number (1..29) of a CVC-ClinicDB frame number (1..612)."""
    for seq, end in enumerate(CVC_SEQUENCE_ENDS, start=1):
        if frame <= end:
            return seq
    raise DataError(f"CVC-ClinicDB has frames 1..612, not {frame}.")


def _sort_key(stem: str) -> tuple:
    return (0, int(stem), "") if stem.isdigit() else (1, 0, stem)


def _read_csv(path: Path, column: str) -> dict[str, str]:
    if not path.is_file():
        raise InputFileError(
            f"{path} does not exist.", remedy=f"Give a CSV with columns id,{column}."
        )
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    if not rows or "id" not in rows[0] or column not in rows[0]:
        raise DataError(
            f"{path} needs the columns id,{column}.", remedy=f"Add a header row id,{column}."
        )
    return {r["id"].strip(): r[column].strip() for r in rows}


class ImageMaskFolder:
    """``root/images/<id>.<any>`` with ``root/masks/<id>.<any>``; masks binarised at a threshold."""

    def __init__(self, config: ImageMaskFolderConfig) -> None:
        self.config = config
        root = Path(config.root)
        img_dir, mask_dir = root / config.images_dir, root / config.masks_dir
        for d in (img_dir, mask_dir):
            if not d.is_dir():
                raise InputFileError(
                    f"{d} is not a folder.",
                    remedy=f"Give `root:` a folder holding {config.images_dir}/ and {config.masks_dir}/.",
                )
        images = {
            p.stem: p for p in img_dir.iterdir() if p.is_file() and not p.name.startswith(".")
        }
        masks = {
            p.stem: p for p in mask_dir.iterdir() if p.is_file() and not p.name.startswith(".")
        }
        ids = sorted(images.keys() & masks.keys(), key=_sort_key)
        if not ids:
            raise DataError(
                f"no image/mask pairs with matching names under {root}.",
                remedy="Name each mask like its image (any extension).",
            )
        self.images, self.masks, self.ids = images, masks, ids
        self.split_of = self._assign_splits()

    # ---------------------------------------------------------------- splits
    def group_of(self, sample_id: str) -> str:
        if self.config.groups_csv is not None:
            groups = self._groups_csv
            if sample_id not in groups:
                raise DataError(f"{sample_id} has no row in {self.config.groups_csv}.")
            return groups[sample_id]
        if self.config.grouping == "cvc-clinicdb":
            if not sample_id.isdigit():
                raise DataError(
                    f"cvc-clinicdb grouping needs numeric frame names, got {sample_id!r}.",
                    remedy="Use grouping: none or a groups_csv.",
                )
            return f"seq{cvc_sequence(int(sample_id)):02d}"
        return sample_id

    def _assign_splits(self) -> dict[str, str]:
        cfg = self.config
        if cfg.split_csv is not None:
            table = _read_csv(Path(cfg.split_csv), "split")
            bad = sorted({v for v in table.values()} - set(SPLITS))
            if bad:
                raise DataError(
                    f"{cfg.split_csv}: unknown split names {bad}.", remedy=f"Use {SPLITS}."
                )
            return {i: table[i] for i in self.ids if i in table}
        if cfg.groups_csv is not None:
            self._groups_csv = _read_csv(Path(cfg.groups_csv), "group")
        if len(cfg.fractions) != 3 or abs(sum(cfg.fractions) - 1) > 1e-6:
            raise DataError(f"fractions {cfg.fractions} must be three shares summing to 1.")
        members: dict[str, list[str]] = {}
        for i in self.ids:
            members.setdefault(self.group_of(i), []).append(i)
        groups = sorted(members)
        random.Random(cfg.split_seed).shuffle(groups)
        bounds = np.cumsum(cfg.fractions) * len(self.ids)
        out, count = {}, 0
        for g in groups:
            split = SPLITS[int(np.searchsorted(bounds[:2], count, side="right"))]
            for i in members[g]:
                out[i] = split
            count += len(members[g])
        return out

    def ids_of(self, split: str) -> list[str]:
        ids = self.ids if split == "all" else [i for i in self.ids if self.split_of.get(i) == split]
        return ids[: self.config.max_samples] if self.config.max_samples else ids

    # ---------------------------------------------------------------- reading
    def sample(self, sample_id: str) -> SegmentationSample:
        from PIL import Image as PILImage

        paths = self.images[sample_id], self.masks[sample_id]
        try:
            rgb = np.asarray(PILImage.open(paths[0]).convert("RGB"))
            mask = np.asarray(PILImage.open(paths[1]).convert("L"))
        except OSError as exc:
            raise InputFileError(f"could not read {paths}: {exc}") from exc
        if rgb.shape[:2] != mask.shape:
            raise DataError(
                f"{sample_id}: image {rgb.shape[:2]} and mask {mask.shape} differ in size.",
                remedy="Give masks of the same pixel size as their images.",
            )
        grid = Grid.from_shape(mask.shape)  # pixels: 1 mm spacing, identity direction
        labels = (mask > self.config.mask_threshold).astype(np.uint8)
        return SegmentationSample(
            id=sample_id,
            image=Image(
                np.ascontiguousarray(rgb.transpose(2, 0, 1)), grid, {"path": str(paths[0])}
            ),
            labels=Image(labels, grid, {"path": str(paths[1])}),
            group=self.group_of(sample_id),
            inputs=list(paths),
        )

    def segmentation_samples(self, split: str) -> Iterator[SegmentationSample]:
        if split not in (*SPLITS, "all"):
            raise DataError(f"unknown split {split!r}.", remedy=f"Use one of {SPLITS} or all.")
        for i in self.ids_of(split):
            yield self.sample(i)

    def registration_cases(self):
        raise DataError("an image/mask folder has no registration pairs.")

    def images(self) -> Iterator[Image]:
        for i in self.ids:
            yield self.sample(i).image


# ---------------------------------------------------------------- generated
def blob_sample(index: int, size_px: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """RGB uint8 ``[3, S, S]`` and binary mask ``[S, S]`` of sample ``index`` (deterministic)."""
    rng = np.random.default_rng([seed, index])
    yy, xx = np.mgrid[0:size_px, 0:size_px].astype(np.float32) / size_px
    cy, cx = rng.uniform(0.3, 0.7, 2)
    ry, rx = rng.uniform(0.1, 0.25, 2)
    angle = rng.uniform(0, np.pi)
    dy, dx = yy - cy, xx - cx
    u = dx * np.cos(angle) + dy * np.sin(angle)
    v = -dx * np.sin(angle) + dy * np.cos(angle)
    mask = (u / rx) ** 2 + (v / ry) ** 2 <= 1
    background = 0.35 + 0.1 * np.sin(2 * np.pi * (rng.uniform(1, 4) * xx + rng.uniform(1, 4) * yy))
    rgb = np.stack([background * c for c in rng.uniform(0.7, 1.0, 3)])
    rgb[:, mask] += 0.35
    rgb += rng.normal(0, 0.04, rgb.shape)
    return (np.clip(rgb, 0, 1) * 255).astype(np.uint8), mask.astype(np.uint8)


class SyntheticBlobs:
    """``n_train``/``n_validation``/``n_test`` generated samples; each sample is its own group."""

    def __init__(self, config: SyntheticBlobsConfig) -> None:
        self.config = config

    def segmentation_samples(self, split: str) -> Iterator[SegmentationSample]:
        cfg = self.config
        counts = {"train": cfg.n_train, "validation": cfg.n_validation, "test": cfg.n_test}
        if split not in (*counts, "all"):
            raise DataError(
                f"unknown split {split!r}.", remedy=f"Use one of {list(counts)} or all."
            )
        offset = 0
        for name, n in counts.items():
            if split in (name, "all"):
                for i in range(offset, offset + n):
                    rgb, mask = blob_sample(i, cfg.size_px, cfg.seed)
                    grid = Grid.from_shape((cfg.size_px, cfg.size_px), spacing=cfg.spacing_mm)
                    yield SegmentationSample(
                        id=f"blob{i:04d}",
                        image=Image(rgb, grid, {"name": f"blob{i:04d}"}),
                        labels=Image(mask, grid, {"name": f"blob{i:04d} mask"}),
                        group=f"blob{i:04d}",
                    )
            offset += n

    def registration_cases(self):
        raise DataError("synthetic blobs have no registration pairs.")
