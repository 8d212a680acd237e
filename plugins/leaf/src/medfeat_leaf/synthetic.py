"""Generated 2D segmentation data: textured frames with one bright elliptical 'polyp' each."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from medfeat.api import DataError, Grid, Image, SegmentationSample


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

    def __init__(self, config) -> None:
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
