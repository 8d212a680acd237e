"""A pair whose label maps come from different label sets, mapped onto shared ids for Dice."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from medfeat.components import RegistrationCase
from medfeat.errors import ConfigError
from medfeat.geometry import Image
from medfeat_dinov3.config import LabelMappedFilesConfig


def map_labels(labels: Image, mapping: dict[int, list[int]]) -> Image:
    """Relabel: every source id listed under a shared id becomes it; everything else becomes 0."""
    src = labels.numpy()
    out = np.zeros(src.shape, dtype=np.uint16)
    for shared, ids in mapping.items():
        out[np.isin(src, ids)] = shared
    return labels.with_data(out, label_mapping={int(k): list(v) for k, v in mapping.items()})


class LabelMappedFiles:
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
        from medfeat.io.images import read_image

        c = self.config
        case = RegistrationCase(
            id=c.case_id,
            fixed=read_image(c.fixed),
            moving=read_image(c.moving),
            fixed_labels=map_labels(read_image(c.fixed_labels), c.fixed_label_map),
            moving_labels=map_labels(read_image(c.moving_labels), c.moving_label_map),
            fixed_mask=read_image(c.fixed_mask) if c.fixed_mask else None,
            inputs=[
                p for p in (c.fixed, c.moving, c.fixed_labels, c.moving_labels, c.fixed_mask) if p
            ],
            meta={"label_map_fixed": c.fixed_label_map, "label_map_moving": c.moving_label_map},
        )
        yield case
