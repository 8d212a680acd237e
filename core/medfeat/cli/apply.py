"""``medfeat apply``: warp images and label maps, map points, compose, invert and differentiate saved
transforms (medfeat's, ITK/SimpleITK's, ANTs', greedy's)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

DESCRIPTION = """\
Apply saved transforms to new data, long after the registration ran.

Directions. A transform maps POINTS one way. A registration's field_fixed_to_moving.nii.gz maps a
point x of the fixed image to x + u(x) in the moving image. --mapping says which way the whole
chain maps (default fixed_to_moving); a medfeat field whose sidecar says the other way is refused.
With a fixed_to_moving chain:
  * images and labels are PULLED: a MOVING image is resampled onto the FIXED grid;
  * points are PUSHED: points of the FIXED image are mapped into the MOVING image.
To bring the fixed image onto the moving grid, or moving points into the fixed image, pass
--mapping moving_to_fixed with field_moving_to_fixed.nii.gz (or --invert field_fixed_to_moving.nii.gz).

Order. Transforms are applied to a point in the order given (first given, first applied), as in
greedy's -r list and a run's transform_chain.json. antsApplyTransforms applies its -t list last
first: give ANTs transforms here in reverse order (e.g. -t 0GenericAffine.mat -t 1Warp.nii.gz).
ITK, ANTs and greedy files do not state a direction; they are taken to map the way --mapping says.
"""

EXAMPLES = """\
examples:
  medfeat apply -t out/case1 --image T2_moving.nii.gz T2_on_fixed.nii.gz
  medfeat apply -t out/case1 --labels lungs_moving.nii.gz lungs_on_fixed.nii.gz
  medfeat apply -t out/case1 --points fixed_landmarks.csv in_moving.fcsv
  medfeat apply --mapping moving_to_fixed --invert out/case1/field_fixed_to_moving.nii.gz \\
      --image fixed.nii.gz fixed_on_moving.nii.gz --reference moving.nii.gz
  medfeat apply -t affine.tfm -t warp.nii.gz --write-field whole.nii.gz --reference fixed.nii.gz
  medfeat apply -t out/case1 --jacobian jacobian.nii.gz
"""


class _ChainAction(argparse.Action):
    """``-t PATH`` and ``--invert PATH`` append to one ordered list of transforms."""

    def __call__(self, parser, namespace, values, option_string=None):  # noqa: ANN001
        from medfeat.apply.chain import TransformSpec

        chain = list(getattr(namespace, self.dest, None) or [])
        chain.append(TransformSpec(Path(values), invert=self.const))
        setattr(namespace, self.dest, chain)


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "apply",
        help="warp images/labels, map points, compose, invert and differentiate saved transforms",
        description=DESCRIPTION,
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    t = p.add_argument_group("transforms (in the order applied to a point)")
    t.add_argument(
        "-t",
        "--transform",
        dest="chain",
        action=_ChainAction,
        const=False,
        metavar="PATH",
        help="a medfeat output case folder, a medfeat/ANTs/greedy displacement field, an ITK "
        "transform (.tfm, .txt, .h5, ANTs .mat) or a greedy 4x4 matrix (.mat)",
    )
    t.add_argument(
        "--invert",
        dest="chain",
        action=_ChainAction,
        const=True,
        metavar="PATH",
        help="the inverse of PATH (fields: fixed-point iteration on their grid; affines: exact); "
        "for a case folder, its opposite-direction field inverted",
    )
    t.add_argument(
        "--mapping",
        default="fixed_to_moving",
        help="the way the chain maps points: fixed_to_moving (default; pulls a moving image onto the "
        "fixed grid, pushes fixed points into the moving image) or moving_to_fixed",
    )
    t.add_argument(
        "--invert-iterations", type=int, default=20, help="fixed-point iterations of --invert"
    )
    w = p.add_argument_group("what to write (each may be repeated)")
    w.add_argument("--image", nargs=2, action="append", default=[], metavar=("IN", "OUT"))
    w.add_argument("--labels", nargs=2, action="append", default=[], metavar=("IN", "OUT"))
    w.add_argument("--points", nargs=2, action="append", default=[], metavar=("IN", "OUT"))
    w.add_argument(
        "--jacobian", type=Path, metavar="OUT", help="Jacobian determinant map of the chain (mm)"
    )
    w.add_argument(
        "--write-field",
        type=Path,
        metavar="OUT",
        help="the whole chain as one ITK displacement field (+ sidecar) on the output grid",
    )
    g = p.add_argument_group("output grid (images, labels, --jacobian, --write-field)")
    g.add_argument(
        "--reference", type=Path, help="image whose grid to use (default: the fixed image's)"
    )
    g.add_argument("--spacing-mm", type=float, nargs="+", metavar="MM", help="in x y z order")
    g.add_argument("--size-vox", type=int, nargs="+", metavar="N", help="in i j k order")
    g.add_argument("--origin-mm", type=float, nargs="+", metavar="MM", help="world LPS x y z")
    r = p.add_argument_group("resampling")
    r.add_argument("--interpolation", default="linear", help="images: linear, bspline or nearest")
    r.add_argument(
        "--label-method", default="vote", help="labels: vote (default), nearest, gaussian"
    )
    r.add_argument("--default-value", type=float, default=0.0, help="value outside the input")
    q = p.add_argument_group("points")
    q.add_argument(
        "--points-space", choices=("lps", "ras", "voxel"), help="what an input table holds"
    )
    q.add_argument("--points-axis-order", choices=("xyz", "zyx"), help="axis order of voxel input")
    q.add_argument("--points-image", type=Path, help="image the input voxel coordinates index")
    q.add_argument(
        "--out-format", help="csv, voxel-csv, elastix, elastix-index, transformix, fcsv, mrk.json"
    )
    q.add_argument("--out-space", choices=("lps", "ras"), default="lps", help="world space of csv")
    q.add_argument("--out-axis-order", choices=("xyz", "zyx"), help="axis order of voxel output")
    q.add_argument("--out-image", type=Path, help="image the output voxel coordinates index")
    p.set_defaults(func=cmd_apply, chain=[])


def cmd_apply(args: argparse.Namespace) -> int:
    from medfeat.apply.chain import load_chain
    from medfeat.apply.grids import output_grid
    from medfeat.cli.main import console
    from medfeat.errors import ConfigError
    from medfeat.io.atomic import protecting

    outputs = args.image + args.labels + args.points
    if not (outputs or args.jacobian or args.write_field):
        raise ConfigError(
            "Nothing to write.",
            remedy="Add --image IN OUT, --labels IN OUT, --points IN OUT, --jacobian OUT or "
            "--write-field OUT.",
        )
    inputs = [Path(i) for i, _ in outputs] + [s.path for s in args.chain]
    inputs += [p for p in (args.reference, args.points_image, args.out_image) if p is not None]
    # a run folder's files are inputs, but new outputs may be written beside them
    inputs = [f for p in inputs for f in (sorted(p.iterdir()) if p.is_dir() else [p])]
    chain = load_chain(args.chain, args.mapping, args.invert_iterations)
    out = console()
    reference = _read_reference(args.reference)
    written: list[Path] = []
    with protecting(inputs):
        grid = None
        if args.image or args.labels or args.write_field or _grid_options(args):
            grid = output_grid(
                chain.source_grid, reference, args.spacing_mm, args.size_vox, args.origin_mm
            )
        for src, dst in args.image:
            _write_image(args, chain, grid, Path(src), Path(dst), labels=False)
            written.append(Path(dst))
            out.print(f"{src} -> {dst} (image pulled by the {chain.describe()}; {grid.describe()})")
        for src, dst in args.labels:
            _write_image(args, chain, grid, Path(src), Path(dst), labels=True)
            written.append(Path(dst))
            out.print(f"{src} -> {dst} (labels, {args.label_method}; {grid.describe()})")
        for src, dst in args.points:
            n = _write_points(args, chain, Path(src), Path(dst))
            written.append(Path(dst))
            src_space, dst_space = chain.mapping.split("_to_")
            out.print(f"{src} -> {dst} ({n} {src_space} points pushed into the {dst_space} image)")
        if args.write_field:
            from medfeat.apply.fields import compose_field
            from medfeat.io.fields import write_displacement_field

            write_displacement_field(compose_field(chain, grid), args.write_field)
            written.append(Path(args.write_field))
            out.print(
                f"{args.write_field}: the {chain.describe()} as one field ({grid.describe()})"
            )
        if args.jacobian:
            from medfeat.apply.fields import jacobian_map
            from medfeat.io.images import write_image

            jac = jacobian_map(chain, grid)
            write_image(jac, args.jacobian)
            written.append(Path(args.jacobian))
            out.print(f"{args.jacobian}: Jacobian determinant ({jac.grid.describe()})")
        _write_provenance(args, chain, grid, inputs, written)
    return 0


#: Suffix of the record written beside every output of ``medfeat apply``.
PROVENANCE_SUFFIX = ".provenance.json"


def _write_provenance(args, chain, grid, inputs: list[Path], written: list[Path]) -> None:  # noqa: ANN001
    """Beside each output, ``<output>.provenance.json``: when and how it was made (command line,
    the transform chain and its direction, the output grid, interpolation), from what (every
    input file with its SHA-256), by which versions on which host, and the output's own SHA-256."""
    from medfeat.io.atomic import atomic_write_json
    from medfeat.io.checksum import sha256_file
    from medfeat.provenance import base_record, describe_input

    options = {
        "mapping": chain.mapping,
        "transforms": chain.describe(),
        "interpolation": args.interpolation,
        "label_method": args.label_method,
        "default_value": args.default_value,
        "output_grid": None if grid is None else grid.to_dict(),
    }
    base = base_record(options, seed=0, device="cpu", plugins={})
    base.pop("seed")
    base.pop("out_dir")
    base["inputs"] = [describe_input(p) for p in inputs if p.is_file()]
    for path in written:
        record = {**base, "output": {"path": str(path.resolve()), "sha256": sha256_file(path)}}
        atomic_write_json(path.with_name(path.name + PROVENANCE_SUFFIX), record)


def _grid_options(args: argparse.Namespace) -> bool:
    return any(
        v is not None for v in (args.reference, args.spacing_mm, args.size_vox, args.origin_mm)
    )


def _read_reference(path: Path | None):
    if path is None:
        return None
    from medfeat.io.images import read_image

    return read_image(path)


def _write_image(args, chain, grid, src: Path, dst: Path, labels: bool) -> None:  # noqa: ANN001
    from medfeat.apply.images import resample_image, resample_labels
    from medfeat.io.images import read_image, write_image

    image = read_image(src)
    if labels:
        warped = resample_labels(image, chain, grid, args.label_method, int(args.default_value))
    else:
        warped = resample_image(image, chain, grid, args.interpolation, args.default_value)
    write_image(warped, dst)


def _write_points(args, chain, src: Path, dst: Path) -> int:  # noqa: ANN001
    from medfeat.apply.api import map_points
    from medfeat.io.images import read_image
    from medfeat.io.point_files import format_of, point_format_for, read_points, write_points

    in_grid = read_image(args.points_image).grid if args.points_image else chain.source_grid
    _check_points_input(args, src, in_grid)
    points = read_points(src, in_grid, args.points_axis_order, args.points_space)
    mapped = map_points(points, chain)
    fmt = point_format_for(dst, args.out_format)
    in_fmt, in_order = format_of(points)
    fmt = fmt or in_fmt
    out_grid = read_image(args.out_image).grid if args.out_image else chain.target_grid
    order = args.out_axis_order or (in_order if fmt in ("voxel-csv", "elastix-index") else None)
    write_points(mapped, dst, fmt, args.out_space, out_grid, order, source=points)
    return len(mapped)


def _check_points_input(args, src: Path, grid) -> None:  # noqa: ANN001
    """Say which option is missing before the reader does, in this command's words."""
    from medfeat.errors import ConfigError
    from medfeat.io import landmark_formats as lf
    from medfeat.io.point_files import MARK

    if not src.is_file():
        return  # the reader names the missing file
    text = src.read_text(encoding="utf-8", errors="replace")
    stated = args.points_space or args.points_axis_order or text.startswith(MARK)
    if lf.detect_format(src, text) == "table" and not stated:
        raise ConfigError(
            f"{src} is a plain table of coordinates; it does not say whether they are world mm or "
            "voxel indices.",
            remedy="Add --points-space lps (or ras) for world millimetres, or --points-axis-order "
            "xyz (ITK i,j,k) or zyx (numpy k,j,i) for voxel indices of the source image.",
        )
    voxel = args.points_space == "voxel" or (args.points_axis_order and not args.points_space)
    if voxel and grid is None:
        raise ConfigError(
            f"{src} holds voxel indices, but the image they index is unknown (the transforms "
            "come with no grid of the source image).",
            remedy="Add --points-image IMAGE, the image the points were placed on.",
        )
