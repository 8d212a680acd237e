"""Is a read image usable as a registration/correspondence input? Checked before any computation.

:func:`medfeat.io.read_image` reads any scalar or vector image (displacement fields and feature maps
are vector images, and may be small), so what a pipeline needs of its *intensity* inputs is checked
here: one real-valued channel and at least :data:`MIN_SIZE_VOX` voxels along every axis. (Constant
images are refused by the pipeline's case checks.)
"""

from __future__ import annotations

import numpy as np

from medfeat.errors import DataError
from medfeat.geometry import Image

__all__ = ["MIN_SIZE_VOX", "check_intensity_image"]

#: Fewest voxels along any axis of an intensity image: MIND-SSC looks 2-3 voxels around each voxel
#: and the optimisers work on a control grid 2-8 times coarser than the image, so smaller images
#: leave nothing to register (2x2x2 and single-slice 32x32x1 images fail inside the engine).
MIN_SIZE_VOX = 8


def check_intensity_image(
    image: Image, role: str = "image", min_size_vox: int = MIN_SIZE_VOX
) -> None:
    """Raise :class:`DataError` unless ``image`` is a scalar, real image of a usable size.

    ``role`` names the input in the message (e.g. ``"fixed image"``).
    """
    name = f"The {role} {image.name}"
    arr = image.numpy()
    if np.iscomplexobj(arr):
        raise DataError(
            f"{name} holds complex pixels; medfeat works on real-valued intensities.",
            remedy="Save the magnitude (e.g. numpy.abs of the data) as a real-valued image and give that instead.",
        )
    if image.num_channels > 1:
        raise DataError(
            f"{name} has {image.num_channels} values per voxel (a vector, RGB or complex-as-2-channel "
            f"image, pixel type {image.meta.get('pixel_type', arr.dtype)}); registration needs one "
            "intensity per voxel.",
            remedy="Save one channel (or the magnitude of the vectors) as a scalar image and give that file "
            "instead, e.g. with SimpleITK: sitk.VectorIndexSelectionCast(img, 0).",
        )
    size = image.grid.size_ijk
    if min(size) < min_size_vox:
        axes = ", ".join(f"{a}={s}" for a, s in zip("ijk", size, strict=False) if s < min_size_vox)
        single = (
            " It is a single slice, not a volume."
            if image.grid.ndim == 3 and min(size) == 1
            else ""
        )
        raise DataError(
            f"{name} is {'x'.join(map(str, size))} voxels (too few along {axes}); medfeat needs at "
            f"least {min_size_vox} voxels along every axis of an image it registers.{single}",
            remedy="Give the full image (e.g. the whole volume rather than a crop or one slice), or pad it "
            f"to at least {min_size_vox} voxels per axis.",
        )
