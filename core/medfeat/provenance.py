"""What a run records beside its outputs so it can be understood and repeated."""

from __future__ import annotations

import platform
import sys
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from medfeat.geometry import Image

_LIBRARIES = (
    "medfeat",
    "torch",
    "monai",
    "numpy",
    "scipy",
    "SimpleITK",
    "nibabel",
    "pydantic",
    "pluggy",
)


def library_versions(plugins: dict[str, str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for name in _LIBRARIES:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "not installed"
    return {**out, **{f"plugin:{k}": v for k, v in plugins.items()}}


def describe_input(path: Path) -> dict[str, Any]:
    """Path and checksum of an input file or DICOM folder (within a run, the checksum computed when
    the file was read is reused: see :func:`medfeat.io.checksum.remembering_checksums`)."""
    from medfeat.io.checksum import sha256_file

    return {"path": str(Path(path).resolve()), "sha256": sha256_file(path)}


def describe_image(image: Image) -> dict[str, Any]:
    return {"name": image.name, "sha256": image.meta.get("sha256"), "grid": image.grid.to_dict()}


def base_record(config: dict, seed: int, device: str, plugins: dict[str, str]) -> dict[str, Any]:
    return {
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": sys.argv,
        "config": config,
        "seed": seed,
        "device": device,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "versions": library_versions(plugins),
    }
