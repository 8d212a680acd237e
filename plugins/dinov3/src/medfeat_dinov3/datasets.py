"""A pair whose label maps come from different label sets, mapped onto shared ids for Dice."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from medfeat.api import ConfigError, Image, RegistrationCase
from medfeat_dinov3.config import LabelMappedFilesConfig


def map_labels(labels: Image, mapping: dict[int, list[int]]) -> Image:
    """Relabel: every source id listed under a shared id becomes it; everything else becomes 0."""
    src = labels.numpy()
    out = np.zeros(src.shape, dtype=np.uint16)
    for shared, ids in mapping.items():
        out[np.isin(src, ids)] = shared
    return labels.with_data(out, label_mapping={int(k): list(v) for k, v in mapping.items()})


def _centre_mm(image: Image, kind: str) -> np.ndarray:
    """World position of the image centre or of the centroid of its automatic body mask."""
    grid = image.grid
    if kind == "image-centres":
        return grid.array_index_to_world((np.asarray(grid.shape) - 1) / 2.0)[0]
    from medfeat.api import body_mask

    idx = np.argwhere(body_mask(image))
    if idx.size == 0:
        return grid.array_index_to_world((np.asarray(grid.shape) - 1) / 2.0)[0]
    return grid.array_index_to_world(idx.mean(0))[0]


def translated(image: Image, offset_mm: np.ndarray) -> Image:
    """The same voxels placed ``offset_mm`` further in world space (origin moved)."""
    from medfeat.api import CONTENT_KEY, Grid, content_key

    g = image.grid
    grid = Grid(g.shape, g.spacing, tuple(np.asarray(g.origin) + offset_mm), g.direction)
    meta = {**image.meta, "translated_mm": offset_mm.tolist()}
    source = content_key(image)
    if source is not None:  # the feature cache keys on it; the geometry changed, the file did not
        meta[CONTENT_KEY] = f"{source}+translated{np.round(offset_mm, 6).tolist()}"
    return Image(image.data, grid, meta)


class LabelMappedFiles:
    """The ``label-mapped-files`` dataset: one case whose label maps are relabelled to shared ids."""

    def __init__(self, config: LabelMappedFilesConfig) -> None:
        if set(config.fixed_label_map) != set(config.moving_label_map):
            raise ConfigError(
                "fixed_label_map and moving_label_map must list the same shared ids; "
                f"only in fixed: {sorted(set(config.fixed_label_map) - set(config.moving_label_map))}, "
                f"only in moving: {sorted(set(config.moving_label_map) - set(config.fixed_label_map))}.",
                remedy="Map each shared organ on both sides, or drop it.",
            )
        self.config = config

    def registration_cases(self) -> Iterator[RegistrationCase]:
        from medfeat.api import read_image

        c = self.config
        fixed, moving = read_image(c.fixed), read_image(c.moving)
        moving_labels = map_labels(read_image(c.moving_labels), c.moving_label_map)
        offset = np.zeros(3)
        if c.initial_alignment != "none":
            offset = _centre_mm(fixed, c.initial_alignment) - _centre_mm(
                moving, c.initial_alignment
            )
            moving, moving_labels = translated(moving, offset), translated(moving_labels, offset)
        case = RegistrationCase(
            id=c.case_id,
            fixed=fixed,
            moving=moving,
            fixed_labels=map_labels(read_image(c.fixed_labels), c.fixed_label_map),
            moving_labels=moving_labels,
            fixed_mask=read_image(c.fixed_mask) if c.fixed_mask else None,
            inputs=[
                p for p in (c.fixed, c.moving, c.fixed_labels, c.moving_labels, c.fixed_mask) if p
            ],
            meta={
                "label_map_fixed": c.fixed_label_map,
                "label_map_moving": c.moving_label_map,
                "moving_translated_mm": offset.round(3).tolist(),
            },
        )
        yield case


def make_label_mapped_files(config: LabelMappedFilesConfig, context) -> LabelMappedFiles:
    return LabelMappedFiles(config)
