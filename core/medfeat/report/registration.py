"""The page of one registration case: alignment before/after, field regularity, landmark errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from medfeat.geometry import DisplacementField, Image
from medfeat.report import figures as F
from medfeat.report.common import Output, attempt, metrics_overview, read_points_csv, write_csv
from medfeat.report.page import Page, Section, Table
from medfeat.report.planes import default_pixel_mm, sample_planes, world_bounds

#: How many of the worst landmarks are shown on slices.
WORST_LANDMARKS = 3

#: The pre-alignment a run writes into the case folder (fixed -> moving, ITK .tfm).
PREALIGNMENT_FILE = "prealignment_fixed_to_moving.tfm"


class RegistrationInputs:
    """Everything a registration page draws, read from the case folder and the run's inputs."""

    def __init__(self, case_dir: Path, item: Any | None) -> None:
        from medfeat.io.fields import read_displacement_field
        from medfeat.io.images import read_image

        self.item = item
        self.fixed: Image | None = getattr(item, "fixed", None)
        self.moving: Image | None = getattr(item, "moving", None)
        self.fixed_labels: Image | None = getattr(item, "fixed_labels", None)
        path = case_dir / "field_fixed_to_moving.nii.gz"
        self.field: DisplacementField | None = (
            read_displacement_field(path) if path.is_file() else None
        )
        self.warped = self._warped(
            case_dir / "warped_moving.nii.gz", read_image, "moving", "linear"
        )
        self.warped_labels = self._warped(
            case_dir / "warped_moving_labels.nii.gz", read_image, "moving_labels", "nearest"
        )
        #: the fixed->moving pre-alignment (4x4 world mm) when the run had one
        self.prealignment: np.ndarray | None = None
        tfm = case_dir / PREALIGNMENT_FILE
        if tfm.is_file():
            from medfeat.io.fields import read_affine_transform

            self.prealignment = read_affine_transform(tfm)
        #: the sampled before/after views (or why there are none), shared by two sections
        self.before_after: tuple | str | None = None
        self.predicted_points = None
        csv = case_dir / "fixed_landmarks_in_moving_world_lps_mm.csv"
        if csv.is_file():
            self.predicted_points = read_points_csv(csv)[0]
        elif self.field is not None and getattr(item, "fixed_points", None) is not None:
            self.predicted_points = self.field.transform_points(item.fixed_points.points)

    def _warped(self, path: Path, read: Any, role: str, interpolation: str) -> Image | None:
        if path.is_file():
            return read(path)
        source = getattr(self.item, role, None)
        if source is None or self.field is None:
            return None
        from medfeat.io.resample import warp_image

        return warp_image(source, self.field, interpolation)

    @property
    def reference(self) -> Image | None:
        """The image whose grid the panels cover: the fixed image, else the warped moving image."""
        return self.fixed or self.warped


def case_page(
    out: Output,
    case_id: str,
    case_dir: Path,
    metrics: dict | None,
    item: Any | None,
    input_notes: list[str],
) -> Page:
    page = Page(f"Registration · {case_id}", subtitle=str(case_dir))
    overview = metrics_overview(metrics, input_notes)
    overview.links += _file_links(out, case_dir)
    page.sections.append(overview)

    data = RegistrationInputs(case_dir, item)
    if data.prealignment is not None:
        page.sections.append(prealignment_section(data))
    page.sections += [
        checkerboard_section(out, data),
        difference_section(out, data),
        label_section(out, data),
        jacobian_section(out, data),
        magnitude_section(out, data),
        landmark_section(out, data),
    ]
    return page


def _file_links(out: Output, case_dir: Path) -> list[tuple[str, str]]:
    return [(p.name, out.href(p)) for p in sorted(case_dir.iterdir()) if p.is_file()]


def _geometry(data: RegistrationInputs) -> dict[str, Any]:
    grid = data.reference.grid if data.reference is not None else data.field.grid
    bounds = world_bounds(grid)
    return {"bounds": bounds, "pixel_mm": default_pixel_mm(grid, bounds)}


def _views(image: Image, geometry: dict[str, Any], order: int = 1, center=None):
    return sample_planes(image, center, order=order, **geometry)


def _before_after(data: RegistrationInputs, section: Section):
    """Normalised fixed, moving-before and moving-after views, or None (with a note); sampled
    once per case and shared by the checkerboard and difference sections."""
    if data.before_after is None:
        data.before_after = _sample_before_after(data)
    if isinstance(data.before_after, str):
        section.note(data.before_after)
        return None
    return data.before_after


def _sample_before_after(data: RegistrationInputs) -> tuple | str:
    """The views of :func:`_before_after`, or why they cannot be shown."""
    if data.fixed is None:
        return "The fixed image is not available, so alignment cannot be shown."
    if data.moving is None and data.warped is None:
        return "Neither the moving image nor the warped moving image is available."
    geometry = _geometry(data)
    fixed = _views(data.fixed, geometry)
    before = _views(data.moving, geometry) if data.moving is not None else None
    prealigned = None
    if data.moving is not None and data.prealignment is not None:
        prealigned = sample_planes(data.moving, world_affine=data.prealignment, **geometry)
    after = _views(data.warped, geometry) if data.warped is not None else None
    fw = F.intensity_window(*[v.data for v in fixed])
    mw = F.intensity_window(*[v.data for v in (before or after)])
    norm = [F.normalise(v, fw) for v in fixed]

    def windowed(views):
        return [F.normalise(v, mw) for v in views] if views else None

    return norm, windowed(before), windowed(prealigned), windowed(after)


def _stages(before, prealigned, after) -> list[tuple[str, list]]:  # noqa: ANN001
    """The moving views to compare with the fixed ones, named, in order (those available)."""
    named = (("before", before), ("after pre-alignment", prealigned), ("after", after))
    return [(name, views) for name, views in named if views is not None]


def prealignment_section(data: RegistrationInputs) -> Section:
    """What the pre-alignment did, in numbers: translation, rotation, scales (mm, degrees); only
    for a case that had one."""
    section = Section("Pre-alignment")
    a = data.prealignment
    rows = [[name, value] for name, value in describe_affine(a, _centre(data)).items()]
    section.tables.append(
        Table(
            ["quantity", "value"],
            rows,
            caption=f"{PREALIGNMENT_FILE}: a fixed point x maps to the moving point A x "
            "(world LPS mm); the whole written field includes it.",
        )
    )
    section.text.append(
        "A = " + "; ".join(" ".join(f"{v:.6g}" for v in row) for row in np.asarray(a)[:3])
    )
    return section


def _centre(data: RegistrationInputs) -> np.ndarray | None:
    grid = data.fixed.grid if data.fixed is not None else None
    if grid is None:
        return None
    return grid.array_index_to_world((np.asarray(grid.shape) - 1) / 2.0)[0]


def describe_affine(a: np.ndarray, centre_mm: np.ndarray | None = None) -> dict[str, str]:
    """A 4x4 world transform in words: translation, rotation angle and axis, scale factors
    (polar decomposition ``L = R S``), volume change, and how far it moves ``centre_mm``."""
    a = np.asarray(a, dtype=np.float64)
    lin, t = a[:3, :3], a[:3, 3]
    u, sv, vt = np.linalg.svd(lin)
    rot = u @ vt
    stretch = vt.T @ np.diag(sv) @ vt
    angle = float(np.degrees(np.arccos(np.clip((np.trace(rot) - 1) / 2, -1.0, 1.0))))
    w = np.array([rot[2, 1] - rot[1, 2], rot[0, 2] - rot[2, 0], rot[1, 0] - rot[0, 1]])
    axis = w / np.linalg.norm(w) if np.linalg.norm(w) > 1e-12 else np.array([0.0, 0.0, 1.0])
    out = {
        "translation (mm, LPS x y z)": " ".join(f"{v:.2f}" for v in t),
        "rotation (degrees, about axis x y z)": f"{angle:.2f} about "
        + " ".join(f"{v:.2f}" for v in axis),
        "scale factors (principal stretches)": " ".join(
            f"{v:.4f}" for v in np.linalg.eigvalsh(stretch)
        ),
        "volume change (det)": f"{float(np.linalg.det(lin)):.4f}",
    }
    if centre_mm is not None:
        moved = lin @ centre_mm + t - centre_mm
        out["displacement of the fixed image's centre (mm)"] = f"{np.linalg.norm(moved):.2f}"
    return out


def checkerboard_section(out: Output, data: RegistrationInputs) -> Section:
    from medfeat.report.planes import checkerboard

    section = Section("Checkerboards")
    with attempt(section, "Checkerboards"):
        views = _before_after(data, section)
        if views is None:
            return section
        fixed, *moving_views = views
        tile = F.nice_length_mm(fixed[0].width_mm, 0.125)
        rows = [
            (
                name,
                [checkerboard(f, m, tile) for f, m in zip(fixed, moving, strict=True)],
                {"vmin": 0.0, "vmax": 1.0},
            )
            for name, moving in _stages(*moving_views)
        ]
        out.add_figure(
            section,
            F.grid_figure(rows),
            "checkerboard.png",
            f"Fixed and moving image in alternating {tile:g} mm tiles, before (moving as it is), "
            "after the pre-alignment alone (when the run had one) and after registration (warped "
            "moving), on three planes through the centre of the fixed image, in world orientation. Edges continue across tiles where the images agree. "
            "Intensities of each image are windowed to their 1st-99th percentiles.",
        )
    return section


def difference_section(out: Output, data: RegistrationInputs) -> Section:
    section = Section("Differences")
    with attempt(section, "Differences"):
        views = _before_after(data, section)
        if views is None:
            return section
        fixed, *moving_views = views
        rows = [
            (
                name,
                [f.with_data(f.data - m.data) for f, m in zip(fixed, moving, strict=True)],
                {"cmap": "RdBu_r", "vmin": -1.0, "vmax": 1.0},
            )
            for name, moving in _stages(*moving_views)
        ]
        out.add_figure(
            section,
            F.grid_figure(rows, colorbar="fixed - moving (windowed intensities)"),
            "difference.png",
            "Fixed minus moving image (each windowed to [0, 1]) before, after the pre-alignment "
            "alone (when the run had one) and after registration. "
            "Grey means agreement; between modalities (CT to MR) the difference does not vanish "
            "even when aligned.",
        )
    return section


def label_section(out: Output, data: RegistrationInputs) -> Section:
    section = Section("Labels")
    with attempt(section, "Label contours"):
        if data.fixed_labels is None:
            section.note("This case has no fixed label map.")
            return section
        base = data.warped or data.fixed
        if base is None:
            section.note("No image to draw the labels on.")
            return section
        geometry = _geometry(data)
        labels = [int(v) for v in np.unique(data.fixed_labels.numpy()) if v > 0]
        views = _views(base, geometry)
        overlays = [("fixed labels", _views(data.fixed_labels, geometry, order=0), "solid")]
        if data.warped_labels is not None:
            overlays.append(
                ("warped moving labels", _views(data.warped_labels, geometry, order=0), "dashed")
            )
        window = F.intensity_window(*[v.data for v in views])
        on = "warped moving image" if data.warped is not None else "fixed image"
        out.add_figure(
            section,
            F.contour_figure(views, overlays, labels, window, on),
            "labels.png",
            f"Fixed labels (solid) and warped moving labels (dashed) outlined on the {on}. "
            "Where registration worked, the outlines follow the same organ boundaries.",
        )
    return section


def jacobian_section(out: Output, data: RegistrationInputs) -> Section:
    from medfeat.io.images import write_image
    from medfeat.metrics.jacobian import jacobian_determinant_mm

    section = Section("Jacobian determinant")
    with attempt(section, "Jacobian determinant"):
        if data.field is None:
            section.note("field_fixed_to_moving.nii.gz is missing.")
            return section
        det = jacobian_determinant_mm(data.field)  # float32, computed once for the page
        det_image = Image(det, data.field.grid, {"name": "jacobian_determinant"})
        path = write_image(det_image, out.file("jacobian_determinant.nii.gz"))
        section.links.append(
            ("jacobian_determinant.nii.gz (det J on the fixed grid)", out.href(path))
        )
        folded = int((det <= 0).sum())
        center = None
        where = "the centre of the fixed image"
        if folded:
            k = np.unravel_index(int(np.argmin(det)), det.shape)
            center = data.field.grid.array_index_to_world(np.asarray(k, dtype=float))[0]
            where = "the voxel with the lowest det J"
        geometry = _geometry(data)
        views = _views(det_image, geometry, center=center)
        pct = 100.0 * folded / det.size
        out.add_figure(
            section,
            F.jacobian_figure(views, folded, pct),
            "jacobian.png",
            f"Jacobian determinant of x -> x + u(x) (world mm), planes through {where}. "
            "Blue: local expansion, red: compression, white: volume kept; det J <= 0 (folding) "
            f"in black. Range over the field: {float(det.min()):.3f} to {float(det.max()):.3f}.",
        )
    return section


def magnitude_section(out: Output, data: RegistrationInputs) -> Section:
    section = Section("Displacement magnitude")
    with attempt(section, "Displacement magnitude"):
        if data.field is None:
            section.note("field_fixed_to_moving.nii.gz is missing.")
            return section
        u = data.field.numpy()
        # |u| without the float64 temporaries of np.linalg.norm (|u|, |u|**2 of the whole field)
        mag = np.sqrt(np.einsum("c...,c...->...", u, u)).astype(np.float32)
        views = _views(Image(mag, data.field.grid), _geometry(data))
        vmax = float(np.percentile(mag, 99.5))
        out.add_figure(
            section,
            F.magnitude_figure(views, vmax),
            "displacement.png",
            f"|u(x)| in mm on the fixed grid (maximum {float(mag.max()):.2f} mm, 99.5th percentile "
            f"{vmax:.2f} mm, where the colour scale ends).",
        )
    return section


def landmark_section(out: Output, data: RegistrationInputs) -> Section:
    section = Section("Landmark errors")
    with attempt(section, "Landmark errors"):
        item = data.item
        fixed_pts = getattr(getattr(item, "fixed_points", None), "points", None)
        moving_pts = getattr(getattr(item, "moving_points", None), "points", None)
        if fixed_pts is None or moving_pts is None:
            section.note("This case has no pair of landmark sets (or its inputs are unavailable).")
            return section
        predicted = data.predicted_points
        before = np.linalg.norm(np.asarray(fixed_pts) - moving_pts, axis=1)
        after = np.linalg.norm(predicted - moving_pts, axis=1) if predicted is not None else None
        path = _landmark_csv(out, fixed_pts, moving_pts, predicted, before, after)
        section.links.append(("landmark_errors_mm.csv (one row per landmark)", out.href(path)))
        series = {"before": before} | ({"after": after} if after is not None else {})
        out.add_figure(
            section,
            F.histogram_figure(series, "landmark error (mm)"),
            "landmark_errors.png",
            "Distribution of the landmark errors in mm: distance between the moving landmarks and the "
            "fixed landmarks as they are (before) or mapped through the field (after).",
        )
        if after is None:
            section.note("No mapped landmarks (fixed_landmarks_in_moving_world_lps_mm.csv).")
            return section
        worst = np.argsort(after)[::-1][:WORST_LANDMARKS]
        section.tables.append(
            Table(
                ["landmark", "error before (mm)", "error after (mm)"],
                [[int(i), float(before[i]), float(after[i])] for i in worst],
                caption=f"The {len(worst)} worst landmarks after registration",
            )
        )
        if data.moving is None:
            section.note("The moving image is not available: the worst landmarks are not drawn.")
            return section
        grid = data.moving.grid
        bounds = world_bounds(grid)
        geometry = {"bounds": bounds, "pixel_mm": default_pixel_mm(grid, bounds)}
        rows, views_all = [], []
        for i in worst:
            views = sample_planes(data.moving, moving_pts[i], **geometry)
            views_all += views
            points = {"true": moving_pts[i][None], "predicted": predicted[i][None]}
            rows.append((f"#{int(i)}: {after[i]:.2f} mm", views, points))
        window = F.intensity_window(*[v.data for v in views_all])
        out.add_figure(
            section,
            F.point_rows_figure(rows, window),
            "worst_landmarks.png",
            "The worst landmarks on the moving image, planes through each true moving landmark "
            "(green circle); the red cross is where the field maps the fixed landmark "
            "(drawn at its in-plane position).",
        )
    return section


def _landmark_csv(out, fixed_pts, moving_pts, predicted, before, after) -> Path:
    cols = ["landmark", "fixed_x_mm", "fixed_y_mm", "fixed_z_mm", "moving_x_mm", "moving_y_mm",
            "moving_z_mm", "mapped_x_mm", "mapped_y_mm", "mapped_z_mm", "error_before_mm",
            "error_after_mm"]  # fmt: skip
    rows = []
    for i in range(len(before)):
        mapped = list(predicted[i]) if predicted is not None else ["", "", ""]
        err = float(after[i]) if after is not None else ""
        rows.append([i, *map(float, fixed_pts[i]), *map(float, moving_pts[i]), *mapped,
                     float(before[i]), err])  # fmt: skip
    return write_csv(out.file("landmark_errors_mm.csv"), cols, rows)
