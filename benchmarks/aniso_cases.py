"""Input files of the anisotropic benchmark: a real image and a copy of it through a known deformation.

For each case (:data:`CASES`) the fixed image is the real scan (cropped to the body, the brain
resampled to clinical-like anisotropic voxels), the moving image is the same scan seen through
a seeded :class:`~benchmarks.aniso_deformation.KnownDeformation`, stored in the asked-for
orientations of :data:`~benchmarks.aniso_orientation.ORIENTATIONS` (NIfTI and MHA files; world
geometry identical). Landmarks are drawn inside the fixed body mask and mapped exactly into the moving
image; the real label maps go through the same deformation (nearest neighbour).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from benchmarks.aniso_deformation import KnownDeformation, random_deformation, sample_on_grid
from benchmarks.aniso_orientation import ORIENTATIONS, restore_as
from medfeat.geometry import Grid, Image

__all__ = [
    "BRAIN_SPACING_MM",
    "CASES",
    "SyntheticPair",
    "brain_source",
    "anisotropic",
    "build_pair",
    "crop_to",
    "ct_source",
    "draw_landmarks",
    "make_brain",
    "make_ct",
    "world_box",
]

#: orientation -> file suffix of the moving image (both formats, and a left-handed NIfTI)
SUFFIX = {"as-is": ".nii.gz", "flipped": ".mha", "permuted": ".mha", "left-handed": ".nii.gz"}


@dataclass
class SyntheticPair:
    """The files of one case and what is known about them."""

    name: str
    title: str
    fixed: Path
    fixed_labels: Path
    moving: dict[str, Path]
    moving_labels: dict[str, Path]
    fixed_landmarks: Path
    moving_landmarks: Path
    fixed_points: np.ndarray
    moving_points: np.ndarray
    deformation: KnownDeformation
    notes: dict = field(default_factory=dict)


def crop_to(image: Image, start: np.ndarray, stop: np.ndarray) -> Image:
    """The numpy-index box ``[start, stop)`` of ``image``, at its own world position."""
    start = np.maximum(np.asarray(start, int), 0)
    stop = np.minimum(np.asarray(stop, int), image.grid.shape)
    arr = image.numpy()[tuple(slice(a, b) for a, b in zip(start, stop, strict=True))]
    g = image.grid
    origin = g.array_index_to_world(start.astype(float))[0]
    return Image(np.ascontiguousarray(arr), Grid(arr.shape, g.spacing, tuple(origin), g.direction))


def _body_box(mask: np.ndarray, margin_vox: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    idx = np.argwhere(mask)
    return idx.min(0) - margin_vox, idx.max(0) + 1 + margin_vox


def world_box(grid: Grid, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """World bounding box (LPS mm) of the voxel centres inside ``mask``."""
    idx = np.argwhere(mask)
    lo, hi = idx.min(0), idx.max(0)
    corners = np.array(np.meshgrid(*[[a, b] for a, b in zip(lo, hi, strict=True)], indexing="ij"))
    pts = grid.array_index_to_world(corners.reshape(3, -1).T.astype(float))
    return pts.min(0), pts.max(0)


def ct_source(data: Path) -> tuple[Image, Image, dict]:
    """The DICOM CT series (HU) and its label map on the CT's grid, cropped to the body + 8 mm."""
    from medfeat.io.images import read_image
    from medfeat.io.resample import resample_to_grid
    from medfeat.masks import body_mask

    ct = read_image(data / "abdomen-ct" / "example_ct_dicom")
    labels = resample_to_grid(
        read_image(data / "abdomen-ct" / "example_seg_dicom.nii.gz"), ct.grid, "label"
    )
    margin = np.ceil(8.0 / np.asarray(ct.grid.spacing_array_order)).astype(int)
    margin[0] = 0  # keep every slice
    lo, hi = _body_box(body_mask(ct, -500.0), margin)
    native = ct.grid.describe()
    ct, labels = crop_to(ct, lo, hi), crop_to(labels, lo, hi)
    notes = {
        "source": f"DICOM series, {native}",
        "crop": f"body + 8 mm in-plane: {ct.grid.describe()}",
    }
    return ct, labels, notes


def brain_source(data: Path) -> tuple[Image, Image, dict]:
    """The 1 mm brain MRI and its label map (the 30 Dice structures; others set to 0), cropped to
    the brain + 5 mm. The npz holds no geometry: 1 mm voxels, identity direction, centred."""
    d = np.load(data / "brain-mri" / "test_scan.npz")
    keep = np.load(data / "brain-mri" / "labels.npz")["labels"]
    vol = d["vol"].astype(np.float32)
    seg = d["seg"].astype(np.int16)
    seg[~np.isin(seg, keep)] = 0
    origin = tuple(-(np.asarray(vol.shape[::-1]) - 1) / 2.0)
    grid = Grid(vol.shape, (1.0, 1.0, 1.0), origin, np.eye(3))
    lo, hi = _body_box(vol > 0.05, np.array([5, 5, 5]))
    img, lab = crop_to(Image(vol, grid), lo, hi), crop_to(Image(seg, grid), lo, hi)
    return (
        img,
        lab,
        {"source": f"npz {vol.shape} at 1 mm", "crop": f"brain + 5 mm: {img.grid.describe()}"},
    )


def anisotropic(
    image: Image, labels: Image, spacing_ijk: tuple[float, float, float]
) -> tuple[Image, Image, Image]:
    """The grid of ``image``'s box at about ``spacing_ijk`` (mm), the image anti-aliased for it
    (Gaussian of the missing resolution), and the labels (nearest); returns (smoothed source,
    fixed image, fixed labels)."""
    from scipy.ndimage import gaussian_filter

    g = image.grid
    factor = np.asarray(spacing_ijk[::-1]) / np.asarray(g.spacing_array_order)
    shape = tuple(int(round(n / f)) for n, f in zip(g.shape, factor, strict=True))
    grid = g.resized(shape)
    sigma = np.sqrt(np.maximum(factor**2 - 1, 0)) / 2.355
    smooth = Image(gaussian_filter(image.numpy().astype(np.float32), sigma), g)
    fixed = sample_on_grid(smooth, grid)
    return smooth, fixed, sample_on_grid(labels, grid, order=0)


def draw_landmarks(
    fixed: Image,
    mask: np.ndarray,
    deformation: KnownDeformation,
    moving_grid: Grid,
    n: int,
    seed: int,
    margin_vox: float = 1.5,
) -> tuple[np.ndarray, np.ndarray]:
    """``n`` seeded points inside ``mask`` (eroded by 2 voxels) and their exact moving positions,
    both at least ``margin_vox`` voxels inside their images (world LPS mm)."""
    from scipy.ndimage import binary_erosion

    rng = np.random.default_rng(seed)
    cand = np.argwhere(binary_erosion(mask, iterations=2))
    pick = cand[rng.choice(len(cand), size=min(len(cand), 4 * n), replace=False)]
    p = fixed.grid.array_index_to_world(pick + rng.uniform(-0.5, 0.5, pick.shape))
    q = deformation.fixed_to_moving(p)
    ok = fixed.grid.contains_world(p, -margin_vox) & moving_grid.contains_world(q, -margin_vox)
    if ok.sum() < n:
        raise ValueError(f"only {int(ok.sum())} landmarks fit inside both images (wanted {n})")
    return p[ok][:n], q[ok][:n]


def build_pair(
    name: str,
    title: str,
    source: tuple[Image, Image],
    fixed: tuple[Image, Image],
    deformation: KnownDeformation,
    folder: Path,
    *,
    n_points: int,
    seed: int,
    mask_threshold: float | None,
    moving_dtype: type = np.float32,
    orientations: list[str] | None = None,
    notes: dict | None = None,
) -> SyntheticPair:
    """Write the fixed image and labels, the moving copy (``source`` image and labels through
    ``deformation``, on the fixed grid) in each orientation, and the landmarks."""
    from medfeat.io.images import read_image, write_image
    from medfeat.io.landmarks import write_landmarks
    from medfeat.masks import body_mask

    folder.mkdir(parents=True, exist_ok=True)
    (src, src_labels), (fix, fix_labels) = source, fixed
    moving = sample_on_grid(src, fix.grid, deformation, dtype=moving_dtype)
    moving_labels = sample_on_grid(src_labels, fix.grid, deformation, order=0)
    paths = {"fixed": folder / "fixed.nii.gz", "fixed_labels": folder / "fixed_labels.nii.gz"}
    write_image(fix, paths["fixed"])
    write_image(fix_labels, paths["fixed_labels"])
    mov: dict[str, Path] = {}
    mov_lab: dict[str, Path] = {}
    for orientation in orientations or list(ORIENTATIONS):
        suffix = SUFFIX[orientation]
        for image, out, stem in (
            (moving, mov, "moving"),
            (moving_labels, mov_lab, "moving_labels"),
        ):
            stored = restore_as(image, orientation)
            path = folder / f"{stem}_{orientation}{suffix}"
            write_image(stored, path)
            if not read_image(path).grid.same_as(stored.grid):
                raise RuntimeError(f"{path} did not keep its geometry when written")
            out[orientation] = path
    p, q = draw_landmarks(
        fix, body_mask(fix, mask_threshold), deformation, fix.grid, n_points, seed
    )
    lm_f = write_landmarks(p, folder / "fixed_landmarks_lps_mm.csv")
    lm_m = write_landmarks(q, folder / "moving_landmarks_lps_mm.csv")
    (folder / "deformation.json").write_text(json.dumps(deformation.describe(), indent=2))
    return SyntheticPair(
        name,
        title,
        paths["fixed"],
        paths["fixed_labels"],
        mov,
        mov_lab,
        lm_f,
        lm_m,
        p,
        q,
        deformation,
        notes or {},
    )


def make_ct(
    data: Path, folder: Path, seed: int, n_points: int, orientations: list[str]
) -> SyntheticPair:
    """Case ``ct``: the DICOM CT at its own 0.98x0.98x2 mm voxels (cropped to the body)."""
    from medfeat.masks import body_mask

    ct, labels, notes = ct_source(data)
    lo, hi = world_box(ct.grid, body_mask(ct, -500.0))
    deformation = random_deformation(
        seed,
        lo,
        hi,
        amplitude_mm=4.0,
        sigma_mm=30.0,
        max_rotation_deg=(1.0, 1.0, 4.0),
        max_translation_mm=(4.0, 4.0, 2.0),
    )
    notes["deformation"] = (
        "rigid <= 1/1/4 deg about x/y/z, <= 4/4/2 mm; 16 Gaussians, sigma 30 mm, peak 4 mm"
    )
    return build_pair(
        "ct",
        "DICOM CT series, 0.98x0.98x2 mm",
        (ct, labels),
        (ct, labels),
        deformation,
        folder,
        n_points=n_points,
        seed=seed,
        mask_threshold=-500.0,
        moving_dtype=np.int16,
        orientations=orientations,
        notes=notes,
    )


#: the brain's stored voxel size (ITK i, j, k order, mm): a clinical-like anisotropic T1
BRAIN_SPACING_MM = (1.25, 1.25, 2.5)


def make_brain(
    data: Path, folder: Path, seed: int, n_points: int, orientations: list[str]
) -> SyntheticPair:
    """Case ``brain``: the 1 mm T1 resampled to :data:`BRAIN_SPACING_MM` (anti-aliased); the
    moving copy is made from the 1 mm source."""
    vol, labels, notes = brain_source(data)
    smooth, fixed, fixed_labels = anisotropic(vol, labels, BRAIN_SPACING_MM)
    lo, hi = world_box(vol.grid, vol.numpy() > 0.05)
    deformation = random_deformation(
        seed,
        lo,
        hi,
        amplitude_mm=4.0,
        sigma_mm=20.0,
        max_rotation_deg=(4.0, 4.0, 4.0),
        max_translation_mm=(4.0, 4.0, 4.0),
    )
    notes["resampled"] = f"anti-aliased to {fixed.grid.describe()}"
    notes["deformation"] = "rigid <= 4 deg per axis, <= 4 mm; 16 Gaussians, sigma 20 mm, peak 4 mm"
    return build_pair(
        "brain",
        "brain T1 MRI, 1.25x1.25x2.5 mm",
        (smooth, labels),
        (fixed, fixed_labels),
        deformation,
        folder,
        n_points=n_points,
        seed=seed,
        mask_threshold=None,
        orientations=orientations,
        notes=notes,
    )


#: case name -> builder(data, folder, seed, n_points, orientations)
CASES = {"ct": make_ct, "brain": make_brain}
