"""Geometry-safe input/output: images, landmarks, displacement fields, resampling.

Importing this package is light: SimpleITK, nibabel and scipy are imported only when a function needs them.
"""

from medfeat.io.atomic import atomic_path, atomic_write_bytes, atomic_write_json, atomic_write_text
from medfeat.io.checksum import sha256_file
from medfeat.io.fields import read_displacement_field, write_displacement_field
from medfeat.io.image_checks import check_intensity_image
from medfeat.io.image_header import read_image_header
from medfeat.io.images import read_image, write_image
from medfeat.io.landmarks import check_landmark_dimension, read_landmarks, write_landmarks
from medfeat.io.relate import check_geometry_relatable
from medfeat.io.resample import resample_to_grid, warp_image

__all__ = [
    "atomic_path",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_text",
    "check_geometry_relatable",
    "check_intensity_image",
    "check_landmark_dimension",
    "read_displacement_field",
    "read_image",
    "read_image_header",
    "read_landmarks",
    "resample_to_grid",
    "sha256_file",
    "warp_image",
    "write_displacement_field",
    "write_image",
    "write_landmarks",
]
