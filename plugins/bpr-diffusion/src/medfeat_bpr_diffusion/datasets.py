"""Dataset adapters: CT volumes for pretraining, and one labelled volume split by slab for probing."""

from __future__ import annotations

import glob
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from medfeat.api import ConfigError, Grid, Image, InputFileError, SegmentationSample
from medfeat_bpr_diffusion.config import CTVolumesConfig, ZSplitConfig


class CTVolumes:
    """CT files from paths/globs, read one at a time (``images()`` streams; nothing is kept)."""

    def __init__(self, config: CTVolumesConfig) -> None:
        self.config = config
        paths: list[Path] = []
        for pattern in config.paths:
            text = str(pattern)
            hits = sorted(glob.glob(text, recursive=True)) if glob.has_magic(text) else [text]
            paths += [Path(p) for p in hits]
        missing = [str(p) for p in paths if not p.exists()]
        if not paths or missing:
            raise InputFileError(
                f"ct-volumes found no files for {config.paths}"
                + (f" (missing: {', '.join(missing[:3])})" if missing else "")
                + ".",
                remedy="Check data.paths (files or glob patterns; relative ones are relative to "
                "the pipeline file's folder).",
            )
        self.paths = paths

    def images(self) -> Iterator[Image]:
        from medfeat.api import read_image

        for path in self.paths:
            image = read_image(path)
            arr = image.numpy()
            if self.config.unit_range_hu is not None and arr.min() >= 0.0 and arr.max() <= 1.0:
                lo, hi = self.config.unit_range_hu
                image = image.with_data(arr.astype(np.float32) * (hi - lo) + lo)
            yield image

    def __len__(self) -> int:
        return len(self.paths)


def make_ct_volumes(config: CTVolumesConfig, context: Any) -> CTVolumes:
    return CTVolumes(config)


def slab(image: Image, start: int, stop: int) -> Image:
    """Slices ``[start, stop)`` along numpy axis 0, on their own grid (same world positions)."""
    g = image.grid
    origin = g.array_index_to_world(np.array([[start, 0, 0]], dtype=np.float64))[0]
    grid = Grid((stop - start, *g.shape[1:]), g.spacing, tuple(origin), g.direction)
    from medfeat.api import derived_meta

    return Image(
        image.numpy()[start:stop], grid, {**derived_meta(image.meta), "slab": [start, stop]}
    )


class LabelledVolumeZSplit:
    """One CT and its label map; train/validation/test are disjoint slabs along numpy axis 0."""

    def __init__(self, config: ZSplitConfig) -> None:
        self.config = config
        ranges = {"train": config.train_slices, "test": config.test_slices}
        if config.validation_slices is not None:
            ranges["validation"] = config.validation_slices
        spans = sorted((a, b, name) for name, (a, b) in ranges.items())
        for (a0, b0, n0), (a1, _, n1) in zip(spans, spans[1:], strict=False):
            if a1 < b0:
                raise ConfigError(
                    f"the {n0} and {n1} slabs overlap ([{a0}, {b0}) and [{a1}, ...)).",
                    key_path="data",
                    remedy="Use disjoint slice ranges so no voxel is both trained and evaluated on.",
                )
        if any(a >= b for a, b, _ in spans):
            raise ConfigError("every slab needs start < stop.", key_path="data")
        self.ranges = ranges

    def segmentation_samples(self, split: str) -> Iterator[SegmentationSample]:
        from medfeat.api import read_image

        image, labels = read_image(self.config.image), read_image(self.config.labels)
        if not image.grid.same_as(labels.grid):
            raise InputFileError(
                f"{self.config.labels} is not on the grid of {self.config.image} "
                f"({labels.grid.describe()} vs {image.grid.describe()}).",
                remedy="Give the label map that was made on this image's grid.",
            )
        n = image.grid.shape[0]
        names = list(self.ranges) if split == "all" else [split] if split in self.ranges else []
        for name in names:
            a, b = self.ranges[name]
            if b > n:
                raise ConfigError(
                    f"{name}_slices [{a}, {b}) exceed the {n} slices of {self.config.image}.",
                    key_path=f"data.{name}_slices",
                )
            yield SegmentationSample(
                id=f"{Path(self.config.image).name.split('.')[0]}-{name}-z{a}-{b}",
                image=slab(image, a, b),
                labels=slab(labels, a, b),
                group=name,
                inputs=[Path(self.config.image), Path(self.config.labels)],
            )


def make_zsplit(config: ZSplitConfig, context: Any) -> LabelledVolumeZSplit:
    return LabelledVolumeZSplit(config)
