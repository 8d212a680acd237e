"""The public API: everything a plugin needs, from one module.

Plugins (and code that embeds medfeat) import only from here::

    from medfeat.api import FeatureLevel, FeatureMap, Grid, Image, hookimpl, read_image

Every other module of the ``medfeat`` package is private and may change without notice; a test
enforces that the plugins under ``plugins/`` and ``examples/plugin-template`` keep to this rule.

Importing this module is light: each name is loaded on first use (:pep:`562`), so a plugin's
entry module can import its config base model and ``hookimpl`` without pulling in torch.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

#: public name -> module that defines it (grouped by what the names are for).
_EXPORTS: dict[str, str] = {
    # registration of components
    "hookimpl": "medfeat",
    "ConfigModel": "medfeat.config.base",
    "NoOptions": "medfeat.config.base",
    "ComponentRef": "medfeat.config.schema",
    "nested_component": "medfeat.config.schema",
    "InputPath": "medfeat.config.schema",
    "OutputPath": "medfeat.config.schema",
    "build_component": "medfeat.registry",
    "get_registry": "medfeat.plugins",
    # what components exchange
    "FeatureLevel": "medfeat.components",
    "FeatureMap": "medfeat.components",
    "Matches": "medfeat.components",
    "RegistrationCase": "medfeat.components",
    "RegistrationResult": "medfeat.components",
    "SegmentationSample": "medfeat.components",
    "Backbone": "medfeat.components",
    "CoordinateProvider": "medfeat.components",
    "Dataset": "medfeat.components",
    "Aligner": "medfeat.components",
    "DeformableOptimiser": "medfeat.components",
    "FeatureTransform": "medfeat.components",
    "Matcher": "medfeat.components",
    "Pretrainer": "medfeat.components",
    "Regulariser": "medfeat.components",
    "SegmentationHead": "medfeat.components",
    "Similarity": "medfeat.components",
    # geometry
    "DisplacementField": "medfeat.geometry",
    "Grid": "medfeat.geometry",
    "Image": "medfeat.geometry",
    "PointSet": "medfeat.geometry",
    "CONTENT_KEY": "medfeat.geometry.image",
    "content_key": "medfeat.geometry.working",
    "derived_meta": "medfeat.geometry.image",
    # errors
    "MedfeatError": "medfeat.errors",
    "CheckpointError": "medfeat.errors",
    "ComponentNotFoundError": "medfeat.errors",
    "ConfigError": "medfeat.errors",
    "PluginFailure": "medfeat.errors",
    "DataError": "medfeat.errors",
    "GeometryError": "medfeat.errors",
    "InputFileError": "medfeat.errors",
    "Interrupted": "medfeat.errors",
    "LandmarkError": "medfeat.errors",
    "PluginError": "medfeat.errors",
    "ResourceError": "medfeat.errors",
    # input and output
    "read_image": "medfeat.io.images",
    "write_image": "medfeat.io.images",
    "read_landmarks": "medfeat.io.landmarks",
    "write_landmarks": "medfeat.io.landmarks",
    "read_displacement_field": "medfeat.io.fields",
    "write_displacement_field": "medfeat.io.fields",
    "atomic_path": "medfeat.io.atomic",
    "atomic_write_json": "medfeat.io.atomic",
    "atomic_write_text": "medfeat.io.atomic",
    "sha256_file": "medfeat.io.checksum",
    "parse_yaml": "medfeat.config.source",
    "FilesConfig": "medfeat.builtins.datasets",
    "LandmarkFile": "medfeat.builtins.datasets",
    "load_pair": "medfeat.builtins.datasets",
    "load_yaml": "medfeat.config.source",
    # resampling and features
    "resample_to_grid": "medfeat.io.resample",
    "warp_image": "medfeat.io.resample",
    "resample_level": "medfeat.features",
    "resample_tensor": "medfeat.geometry.sampling",
    "fuse_levels": "medfeat.features",
    "l2_normalise": "medfeat.features",
    "match_points": "medfeat.engine.matcher",
    "rgb01": "medfeat.images2d",
    "imagenet_normalise": "medfeat.images2d",
    "body_mask": "medfeat.masks",
    # metrics (mm)
    "dice_per_label": "medfeat.metrics.overlap",
    "hd95_mm": "medfeat.metrics.overlap",
    "mean_dice": "medfeat.metrics.overlap",
    "EmptyLabelWarning": "medfeat.metrics.overlap",
    "tre": "medfeat.metrics.tre",
    # running
    "RunContext": "medfeat.context",
    "resolve_device": "medfeat.context",
    "seed_everything": "medfeat.context",
    "process_rank": "medfeat.context",
    "Progress": "medfeat.progress",
    "stop_requests": "medfeat.interrupt",
    # model weights (safe reading, strict loading, atomic saving)
    "read_checkpoint": "medfeat.weights",
    "read_state_dict": "medfeat.weights",
    "unwrap_state_dict": "medfeat.weights",
    "describe_checkpoint": "medfeat.weights",
    "KeyDiff": "medfeat.weights",
    "key_diff": "medfeat.weights",
    "check_state_dict": "medfeat.weights",
    "load_state_dict_strict": "medfeat.weights",
    "save_checkpoint": "medfeat.weights",
    # multi-process runs (torchrun)
    "DistributedInfo": "medfeat.distributed",
    "setup_distributed": "medfeat.distributed",
    "teardown_distributed": "medfeat.distributed",
    "rank_and_world": "medfeat.distributed",
    "is_main_process": "medfeat.distributed",
    "barrier": "medfeat.distributed",
    "all_reduce": "medfeat.distributed",
    "agree_any": "medfeat.distributed",
    "console": "medfeat.cli.main",
    "resolve_cli_pipeline": "medfeat.cli.main",
    "add_pipeline_args": "medfeat.cli.main",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'medfeat.api' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return __all__


if TYPE_CHECKING:  # for type checkers and IDEs; at run time the names load lazily
    pass
