"""The built-in components, registered through the same entry-point mechanism as any plugin.

This module only names components and their config models; the factories import torch and the
numerical code when a component is actually built.
"""

from __future__ import annotations

from medfeat import hookimpl
from medfeat.builtins import backbones, datasets


@hookimpl
def medfeat_register_datasets(register):
    register(
        "files",
        datasets.make_files,
        config=datasets.FilesConfig,
        summary="One fixed/moving pair (or one image) given by file paths.",
    )
    register(
        "csv-pairs",
        datasets.make_csv_pairs,
        config=datasets.CsvPairsConfig,
        summary="Registration pairs listed in a CSV file (one row per pair).",
    )
    register(
        "breathing-phantom",
        datasets.make_breathing_phantom,
        config=datasets.PhantomConfig,
        summary="A synthetic inhale/exhale chest pair with a known deformation and exact landmarks.",
    )


@hookimpl
def medfeat_register_backbones(register):
    register(
        "intensity",
        backbones.make_intensity,
        config=backbones.IntensityConfig,
        summary="The image intensities as a one-channel feature map, optionally normalised.",
    )
