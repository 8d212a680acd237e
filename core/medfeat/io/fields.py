"""Write and read displacement fields in a stated convention, with a JSON sidecar that says which.

Conventions
-----------
``"itk"``
    NIfTI vector image (SimpleITK, intent ``vector``), float32, components = world (x, y, z) in LPS mm,
    on the field's grid, ``fixed_to_moving``: ``x -> x + u(x)``. This is what
    ``sitk.DisplacementFieldTransform`` (and ANTs/elastix) expects: read it with ``sitk.ReadImage`` and
    wrap it in a ``DisplacementFieldTransform``.
``"learn2reg"``
    What the Learn2Reg evaluation reads: ``nib.load(path).get_fdata()`` gives a float32 array of shape
    ``(H, W, D, 3)`` = ITK/nibabel index order (i, j, k), last axis = displacement in *voxels* along
    (i, j, k), fixed_to_moving (``moving_voxel = fixed_voxel + disp[fixed_voxel]``). It assumes both
    images share one grid; the affine written is the grid's (RAS, as NIfTI requires). 2D fields are
    ``(W, H, 2)``.

The sidecar ``<name>.json`` next to ``<name>.nii.gz`` records convention, units, direction, space and grid
(and whatever the writer adds, e.g. whether the field includes a pre-alignment).

Affine transforms (a registration's pre-alignment) are ITK ``.tfm`` files
(:func:`write_affine_transform`): an ``AffineTransform_double_3_3`` that maps a point of the first
space to the second (for ``prealignment_fixed_to_moving.tfm``: a fixed point to a moving point).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from medfeat.errors import InputFileError
from medfeat.geometry import DisplacementField, Grid
from medfeat.io.atomic import (
    atomic_gzip_path,
    atomic_path,
    atomic_write_json,
    check_not_protected,
)

__all__ = [
    "read_affine_transform",
    "read_displacement_field",
    "sidecar_path",
    "write_affine_transform",
    "write_displacement_field",
]

CONVENTIONS = {
    "itk": {"units": "mm", "components": "world LPS (x, y, z)", "layout": "ITK vector image"},
    "learn2reg": {
        "units": "voxel",
        "components": "index (i, j, k)",
        "layout": "nibabel (i, j, k, component)",
    },
}
_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


def sidecar_path(path: str | os.PathLike) -> Path:
    """``field.nii.gz`` -> ``field.json``."""
    path = Path(path)
    stem = path.name[: -len(".nii.gz")] if path.name.endswith(".nii.gz") else path.stem
    return path.with_name(stem + ".json")


def _nifti_affine(grid: Grid) -> np.ndarray:
    """4x4 RAS affine of a 3D grid (index (i, j, k) -> RAS mm), as nibabel stores it."""
    return _RAS @ grid.index_to_world_matrix()


def _grid_from_affine(affine: np.ndarray, shape_ijk: tuple[int, ...]) -> Grid:
    lin = (_RAS @ affine)[:3, :3]
    spacing = np.linalg.norm(lin, axis=0)
    return Grid(
        tuple(reversed(shape_ijk)), tuple(spacing), tuple((_RAS @ affine)[:3, 3]), lin / spacing
    )


def _vector_float32(field: DisplacementField) -> Any:
    """The field as a SimpleITK float32 vector image, filled straight from its array (no float64
    copies of the volume)."""
    import SimpleITK as sitk

    from medfeat.io.sitk_bridge import set_geometry

    data = field.data
    if hasattr(data, "detach"):
        data = data.detach().cpu().numpy()
    data = np.asarray(data)
    vec = np.empty((*field.grid.shape, field.grid.ndim), dtype=np.float32)
    for c in range(field.grid.ndim):
        vec[..., c] = data[c]  # rounded to nearest, as sitk.Cast does
    return set_geometry(sitk.GetImageFromArray(vec, isVector=True), field.grid)


def write_displacement_field(
    field: DisplacementField,
    path: str | os.PathLike,
    convention: str = "itk",
    protect: set[Path] | None = None,
    extra: dict | None = None,
) -> Path:
    """Write ``field`` atomically as ``.nii``/``.nii.gz`` in ``convention`` (see module doc), as
    float32, plus its sidecar (with the keys of ``extra`` added)."""
    if convention not in CONVENTIONS:
        raise InputFileError(
            f"Unknown displacement-field convention {convention!r}.",
            remedy="Use 'itk' or 'learn2reg'.",
        )
    path = Path(path).expanduser()
    if not path.name.endswith((".nii", ".nii.gz")):
        raise InputFileError(
            f"Displacement fields are written as NIfTI, but {path} has another extension.",
            remedy="Name the output '<name>.nii.gz'.",
        )
    check_not_protected(path, protect)
    grid = field.grid
    if convention == "itk":
        from medfeat.io.images import write_sitk_image

        write_sitk_image(_vector_float32(field), path)
    else:
        import nibabel as nib

        if grid.ndim != 3:
            raise InputFileError(
                "The learn2reg convention is defined for 3D fields only.", remedy="Use 'itk'."
            )
        vox_ijk = field.to_array_voxels()[::-1]  # components (di, dj, dk), array axes (k, j, i)
        arr = np.ascontiguousarray(np.transpose(vox_ijk, (3, 2, 1, 0)), dtype=np.float32)
        img = nib.Nifti1Image(arr, _nifti_affine(grid))
        img.header.set_qform(img.affine, code=1)
        img.header.set_sform(img.affine, code=1)
        gz = path.name.endswith(".gz")
        with atomic_gzip_path(path) if gz else atomic_path(path) as tmp:
            nib.save(img, str(tmp))  # uncompressed; medfeat gzips it (see atomic_gzip_path)
    atomic_write_json(
        sidecar_path(path),
        {
            "convention": convention,
            **CONVENTIONS[convention],
            "direction": field.mapping,  # the sidecar key stays "direction" on disk
            "space": "fixed image grid below (world LPS mm)"
            if convention == "itk"
            else "fixed image voxels",
            "dtype": "float32",
            "grid": grid.to_dict(),
            **(extra or {}),
        },
    )
    return path


def write_affine_transform(
    matrix: np.ndarray, path: str | os.PathLike, protect: set[Path] | None = None
) -> Path:
    """Write a homogeneous 4x4 world matrix (LPS mm, ``x -> A @ x``) atomically as an ITK
    ``.tfm`` affine transform, which SimpleITK, ANTs and elastix read as mapping points the same
    way (for a fixed->moving matrix: the transform a resampler of the moving image takes)."""
    import SimpleITK as sitk

    path = Path(path).expanduser()
    if path.suffix not in (".tfm", ".txt"):
        raise InputFileError(
            f"Affine transforms are written as ITK .tfm files, but {path} has another extension.",
            remedy="Name the output '<name>.tfm'.",
        )
    check_not_protected(path, protect)
    a = np.asarray(matrix, dtype=np.float64)
    tx = sitk.AffineTransform(3)
    tx.SetMatrix(a[:3, :3].flatten().tolist())
    tx.SetTranslation(a[:3, 3].tolist())
    with atomic_path(path) as tmp:
        sitk.WriteTransform(tx, str(tmp))
    return path


def read_affine_transform(path: str | os.PathLike) -> np.ndarray:
    """The homogeneous 4x4 world matrix of an ITK affine (or rigid, or translation) ``.tfm``."""
    import SimpleITK as sitk

    path = Path(path).expanduser()
    if not path.is_file():
        raise InputFileError(f"Transform file {path} does not exist.", remedy="Check the path.")
    tx = sitk.ReadTransform(str(path))
    if tx.GetDimension() != 3:
        raise InputFileError(f"{path} is not a 3D transform.", remedy="Give a 3D ITK transform.")
    origin = np.asarray(tx.TransformPoint((0.0, 0.0, 0.0)))
    out = np.eye(4)
    for axis in range(3):
        unit = [0.0, 0.0, 0.0]
        unit[axis] = 1.0
        out[:3, axis] = np.asarray(tx.TransformPoint(unit)) - origin
    out[:3, 3] = origin
    return out


def read_displacement_field(
    path: str | os.PathLike, convention: str | None = None
) -> DisplacementField:
    """Read a field written by :func:`write_displacement_field` (or any ITK displacement field).

    The convention comes from ``convention``, else the sidecar, else ``"itk"`` for a vector image.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise InputFileError(f"Displacement field {path} does not exist.", remedy="Check the path.")
    sidecar = sidecar_path(path)
    info = json.loads(sidecar.read_text()) if sidecar.is_file() else {}
    convention = convention or info.get("convention", "itk")
    direction = info.get("direction", "fixed_to_moving")
    meta = {"path": str(path), "convention": convention}
    if convention == "learn2reg":
        import nibabel as nib

        img = nib.load(str(path))
        arr = np.asarray(img.dataobj, dtype=np.float64)
        if arr.ndim != 4 or arr.shape[-1] != 3:
            raise InputFileError(
                f"{path} has shape {arr.shape}; a learn2reg field has shape (H, W, D, 3).",
                remedy="Pass convention='itk' if it is an ITK vector image.",
            )
        grid = _grid_from_affine(img.affine, arr.shape[:3])
        vox = np.transpose(arr, (3, 2, 1, 0))[::-1]  # -> numpy-order components on (k, j, i) axes
        field = DisplacementField.from_array_voxels(vox, grid, direction)
        field.meta.update(meta)
        return field
    from medfeat.io.images import read_image

    image = read_image(path)
    if image.num_channels != image.grid.ndim:
        raise InputFileError(
            f"{path} has {image.num_channels} component(s) per voxel; an ITK displacement field of a "
            f"{image.grid.ndim}D grid has {image.grid.ndim}.",
            remedy="Check the file is a displacement field, or pass convention='learn2reg'.",
        )
    return DisplacementField(
        image.numpy().astype(np.float64), image.grid, direction, {**image.meta, **meta}
    )
