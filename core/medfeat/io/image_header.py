"""What an image file's header promises, checked before any pixel is read.

A header can describe far more voxels than the file holds (a sparse 1024^3 file takes no disk
space) or pixels medfeat cannot use (complex numbers). Both are refused from the header alone.
The voxel limit is :data:`DEFAULT_MAX_VOXELS`, changed with the environment variable
``MEDFEAT_MAX_VOXELS``; an image must also fit twice in the free memory (ITK's buffer and the array).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from medfeat.errors import ConfigError, DataError, InputFileError, ResourceError
from medfeat.io.sitk_bridge import sitk_reason

__all__ = ["DEFAULT_MAX_VOXELS", "ImageHeader", "check_size", "max_voxels", "read_image_header"]

#: 2^29 voxels (e.g. 512 x 512 x 2048; 2 GiB as 32-bit float): above the largest CT or MR volumes.
DEFAULT_MAX_VOXELS = 1 << 29
MAX_VOXELS_ENV = "MEDFEAT_MAX_VOXELS"


@dataclass(frozen=True)
class ImageHeader:
    """An image's size and pixel type, from its header (no pixels read)."""

    path: str
    size_ijk: tuple[int, ...]
    components: int  # values per voxel: 1 scalar, 2 complex, 3 RGB or vector ...
    pixel_type: str  # as SimpleITK names it, e.g. "32-bit float", "complex of 32-bit float"
    bytes_per_voxel: int

    @property
    def ndim(self) -> int:
        return len(self.size_ijk)

    @property
    def voxels(self) -> int:
        n = 1
        for s in self.size_ijk:
            n *= int(s)
        return n

    @property
    def is_complex(self) -> bool:
        return self.pixel_type.startswith("complex")


def max_voxels() -> int:
    """The most voxels one image may have: ``MEDFEAT_MAX_VOXELS`` or :data:`DEFAULT_MAX_VOXELS`."""
    value = os.environ.get(MAX_VOXELS_ENV, "").strip()
    if not value:
        return DEFAULT_MAX_VOXELS
    try:
        limit = int(float(value))
    except (ValueError, OverflowError):
        limit = 0
    if limit < 1:
        raise ConfigError(
            f"The environment variable {MAX_VOXELS_ENV}={value!r} is not a positive number of voxels.",
            remedy=f"Set it to a whole number such as {DEFAULT_MAX_VOXELS}, or unset it for that default.",
        )
    return limit


def _gib(n_bytes: float) -> str:
    return f"{n_bytes / 2**30:.1f} GiB"


def check_size(where: str, size_ijk: tuple[int, ...], bytes_per_voxel: int) -> None:
    """Refuse an image of more than :func:`max_voxels` voxels, or one that would not fit in memory."""
    voxels = 1
    for s in size_ijk:
        voxels *= int(s)
    shape = "x".join(str(int(s)) for s in size_ijk)
    stored = voxels * max(bytes_per_voxel, 1)
    limit = max_voxels()
    if voxels > limit:
        raise ResourceError(
            f"{where} is a {shape} image: {voxels:,} voxels ({_gib(stored)} as stored, "
            f"{_gib(voxels * 4)} as 32-bit float), more than the {limit:,} voxels medfeat reads "
            "in one image. The size comes from the header; no pixels were read.",
            remedy="Crop or downsample the image first (e.g. with SimpleITK's Shrink or c3d -resample), "
            f"or, if this machine has the memory, raise the limit with the environment variable "
            f"{MAX_VOXELS_ENV}=<voxels>. If the size is wrong, the header is damaged: export the image again.",
        )
    import psutil

    free = psutil.virtual_memory().available
    if 2 * stored > free:
        raise ResourceError(
            f"{where} is a {shape} image of {_gib(stored)}; reading it needs about {_gib(2 * stored)} "
            f"but only {_gib(free)} of memory is free.",
            remedy="Crop or downsample the image first, or run on a machine with more free memory.",
        )


def _bytes_per_voxel(pixel_type: str, components: int) -> int:
    bits = re.search(r"(\d+)-bit", pixel_type)
    return (int(bits.group(1)) // 8 if bits else 8) * max(components, 1)


def read_image_header(path: str | os.PathLike) -> ImageHeader:
    """Size and pixel type of an image file from its header; :class:`InputFileError` if unreadable."""
    import SimpleITK as sitk

    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError as exc:
        raise InputFileError(
            f"Could not read {path} as an image ({sitk_reason(exc)}).",
            remedy="Check the file is complete and is NIfTI (.nii, .nii.gz), NRRD (.nrrd) or MetaImage "
            "(.mha, .mhd); try opening it in ITK-SNAP or 3D Slicer.",
        ) from exc
    pixel_type = sitk.GetPixelIDValueAsString(reader.GetPixelID())
    components = int(reader.GetNumberOfComponents())
    return ImageHeader(
        str(path),
        tuple(int(s) for s in reader.GetSize()),
        components,
        pixel_type,
        _bytes_per_voxel(pixel_type, components),
    )


def check_header(header: ImageHeader) -> None:
    """Refuse, before reading pixels, an image that is too large or holds complex pixels."""
    where = str(Path(header.path))
    if header.is_complex:
        raise DataError(
            f"{where} holds complex pixels ({header.pixel_type}); medfeat works on real-valued "
            "intensities and would otherwise lose the imaginary part.",
            remedy="Save the magnitude (e.g. numpy.abs of the data) or the part you need as a real-valued "
            "image and give that file instead.",
        )
    check_size(where, header.size_ijk, header.bytes_per_voxel)
