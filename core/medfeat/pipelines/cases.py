"""Per-case steps shared by the pipeline kinds: input checks, features, metrics, provenance records."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import numpy as np

from medfeat.components import FeatureMap, RegistrationCase
from medfeat.geometry import Image, PointSet
from medfeat.resources import check_fits

if TYPE_CHECKING:
    from medfeat.pipelines.runner import Run

MAX_CACHED_FEATURE_MAPS = 4


class FeatureCache:
    """Backbone features of a run's images, reused when the same image comes back in a cohort.

    Keyed by the backbone's resolved config and the image's identity
    (:func:`medfeat.geometry.working.content_key`: the file's SHA-256, or the content key of a
    resampled copy); images without one (generated in memory) are not cached. At most
    ``max_maps`` feature maps are kept; the least recently used one is dropped first.
    """

    def __init__(self, max_maps: int = MAX_CACHED_FEATURE_MAPS) -> None:
        self.max_maps = max_maps
        self._maps: OrderedDict[tuple[str, str], FeatureMap] = OrderedDict()

    def __len__(self) -> int:
        return len(self._maps)

    def get(
        self, backbone: str, image: Image, extract: Callable[[Image], FeatureMap]
    ) -> FeatureMap:
        """The features of ``image`` by ``backbone`` (its config), computed by ``extract`` if new."""
        from medfeat.geometry.working import content_key

        identity = content_key(image)
        if identity is None:
            return extract(image)
        key = (backbone, identity)
        if key in self._maps:
            self._maps.move_to_end(key)
            return self._maps[key]
        features = self._maps[key] = extract(image)
        while len(self._maps) > self.max_maps:
            self._maps.popitem(last=False)
        return features


# ------------------------------------------------------------------------------------ checks
def check_case(case: RegistrationCase, *, require_overlap: bool = True) -> None:
    """Refuse unusable inputs before spending time on them (on the arrays already in memory):
    non-finite or constant images, label maps on another grid than their image, landmarks of
    another dimension than the images, unrelatable geometry (images that do not overlap as stored
    pass with ``require_overlap=False``, when a pre-alignment will move them), unpaired landmark
    tables."""
    from medfeat.io.image_checks import check_intensity_image
    from medfeat.io.images import check_geometry_relatable

    for role, image in (("fixed image", case.fixed), ("moving image", case.moving)):
        check_intensity_image(image, role)
        image.check_finite()
        check_not_constant(image)
    for role, labels, image in (
        ("fixed", case.fixed_labels, case.fixed),
        ("moving", case.moving_labels, case.moving),
    ):
        if labels is not None:
            check_same_grid(labels, image, f"{role} label map")
    for points in (case.fixed_points, case.moving_points):
        if points is not None:
            check_point_dimension(points, case.fixed)
    if require_overlap or case.fixed.grid.ndim != case.moving.grid.ndim:
        check_geometry_relatable(case.fixed, case.moving)  # a pre-alignment may bring them together
    if case.fixed_points is not None and case.moving_points is not None:
        case.fixed_points.check_paired_with(case.moving_points)


def check_not_constant(image: Image) -> None:
    """Refuse an image whose voxels all hold one value (nothing to register on)."""
    from medfeat.errors import DataError

    arr = image.numpy()
    if arr.size and np.all(arr.flat[0] == arr):
        raise DataError(
            f"{image.name} is constant: every voxel is {arr.flat[0]!r}, so no feature or "
            "similarity can align it.",
            remedy="Check that the right file was given (an empty export or a blank mask given "
            "as the image is common), and that it reads correctly in a viewer.",
        )


def check_same_grid(labels: Image, image: Image, what: str) -> None:
    """Refuse a label map that does not lie on its image's voxels (it is compared voxel by voxel)."""
    from medfeat.errors import GeometryError

    if not labels.grid.same_as(image.grid):
        raise GeometryError(
            f"The {what} {labels.name} is on another grid ({labels.grid.describe()}) than its "
            f"image {image.name} ({image.grid.describe()}).",
            remedy="Give the label map that was drawn on this image, or resample it onto the "
            "image's grid (nearest neighbour) first.",
        )


def check_point_dimension(points: PointSet, image: Image) -> None:
    """Refuse landmarks with another number of coordinates than the images have axes."""
    from medfeat.errors import LandmarkError

    ndim, cols = image.grid.ndim, points.points.shape[1]
    if cols != ndim:
        name = points.meta.get("path", "A landmark table")
        raise LandmarkError(
            f"{name} has {cols} coordinates per point but the images are {ndim}D.",
            remedy=f"Give {ndim} columns per landmark (world x, y, z in LPS mm, or voxel indices "
            "with their axis order stated).",
        )


MASK_ROLES = ("fixed", "moving")


def apply_mask_policy(run: Run, case: RegistrationCase) -> None:
    """Set ``case.fixed_mask`` and ``case.moving_mask`` as the pipeline's ``fixed_mask`` and
    ``moving_mask`` options say (and save the automatic ones). Pipelines without a
    ``moving_mask`` option keep the dataset's moving mask."""
    pipeline = run.resolved.pipeline
    for role in MASK_ROLES:
        policy = getattr(pipeline, f"{role}_mask", "from-data")
        if policy == "none":
            setattr(case, f"{role}_mask", None)
        elif policy.startswith("auto-"):
            from medfeat.io.images import write_image
            from medfeat.masks import auto_mask

            image = getattr(case, role)
            threshold = getattr(pipeline, f"{role}_mask_threshold", None)
            with run.context.timed("masking"):
                mask = auto_mask(image, policy.removeprefix("auto-"), threshold)
            setattr(case, f"{role}_mask", mask)
            write_image(
                mask, run.case_dir(case.id) / f"{role}_mask_auto.nii.gz", protect=run.protected
            )


# ---------------------------------------------------------------------------------- features
def extract_features(run: Run, backbone: Any, image: Image) -> FeatureMap:
    """Backbone features of ``image``, through the run's :class:`FeatureCache`."""

    def extract(im: Image) -> FeatureMap:
        with run.context.timed("features"):
            return backbone.extract(im)

    return run.features.get(repr(run.resolved.components["backbone"]), image, extract)


def case_features(
    run: Run, backbone: Any, transforms: list[Any], case: RegistrationCase
) -> list[FeatureMap]:
    """Fixed and moving features after the pipeline's feature transforms (applied jointly)."""
    check_fits(backbone, f"Feature extraction for {case.id}", run.context.device, case.fixed)
    feats = [
        extract_features(run, backbone, case.fixed),
        extract_features(run, backbone, case.moving),
    ]
    for t in transforms:
        with run.context.timed("feature transforms"):
            feats = t.apply(feats, [case.fixed_mask, case.moving_mask])
    return feats


# ----------------------------------------------------------------------------------- metrics
def _prealigned(prealignment: np.ndarray | None) -> np.ndarray | None:
    """The pre-alignment when there was one (not the identity), else None."""
    from medfeat.geometry.working import is_identity

    if prealignment is None or is_identity(np.asarray(prealignment)):
        return None
    return np.asarray(prealignment, dtype=np.float64)


def point_metrics(
    case: RegistrationCase, predicted: np.ndarray | None, prealignment: np.ndarray | None = None
) -> dict[str, Any]:
    """Landmark error (mm) before, after the pre-alignment alone (``tre_mm_prealigned``, when
    there was one: the fixed points mapped by the 4x4 fixed->moving ``prealignment``) and, given
    the predicted moving points, after."""
    from medfeat.metrics.tre import tre

    if case.fixed_points is None or case.moving_points is None:
        return {}
    out = {"tre_mm_before": tre(case.fixed_points.points, case.moving_points.points)}
    a = _prealigned(prealignment)
    if a is not None:
        mapped = case.fixed_points.points @ a[:3, :3].T + a[:3, 3]
        out["tre_mm_prealigned"] = tre(mapped, case.moving_points.points)
    if predicted is not None:
        out["tre_mm_after"] = tre(predicted, case.moving_points.points)
    return out


def label_metrics(
    case: RegistrationCase, warped_labels: Image | None, prealignment: np.ndarray | None = None
) -> dict[str, Any]:
    """Dice and HD95 (mm) per label of the fixed labels against the moving labels before
    (resampled onto the fixed grid as they are), after the pre-alignment alone (``prealigned``,
    when there was one; nearest neighbour through the 4x4 fixed->moving ``prealignment``) and
    after registration (``warped_labels``)."""
    from medfeat.geometry.working import resample_image
    from medfeat.io.resample import resample_to_grid
    from medfeat.metrics.overlap import dice_per_label, hd95_per_label

    if case.fixed_labels is None or case.moving_labels is None or warped_labels is None:
        return {}
    stages = {"before": resample_to_grid(case.moving_labels, case.fixed.grid, "nearest")}
    a = _prealigned(prealignment)
    if a is not None:
        mapped = resample_image(case.moving_labels, case.fixed.grid, affine=a, nearest=True)
        stages["prealigned"] = mapped.with_data(np.rint(mapped.numpy()).astype(np.int64))
    stages["after"] = warped_labels
    dice = {k: dice_per_label(case.fixed_labels, v) for k, v in stages.items()}
    hd95 = {k: hd95_per_label(case.fixed_labels, v, dice[k]) for k, v in stages.items()}
    out: dict[str, Any] = {f"dice_{k}": _by_label(v) for k, v in dice.items()}
    return out | {f"hd95_mm_{k}": _by_label(v) for k, v in hd95.items()}


def dice_metrics(
    reference: Image, predicted: Image, labels: Iterable[int] | None = None
) -> dict[str, Any]:
    """Dice per label (default: every label present) and their mean, for a predicted label map."""
    from medfeat.metrics.overlap import dice_per_label, mean_dice

    scores = dice_per_label(reference, predicted, labels)
    return {"dice": _by_label(scores), "mean_dice": mean_dice(scores)}


def _by_label(scores: dict[int, float]) -> dict[str, float]:
    return {str(k): v for k, v in scores.items()}


# -------------------------------------------------------------------------------- provenance
def case_record(case: RegistrationCase) -> dict[str, Any]:
    """Inputs (with checksums, computed once when they were read) and image geometry of a case."""
    from medfeat.provenance import describe_image, describe_input

    return {
        "inputs": [describe_input(p) for p in case.inputs],
        "fixed": describe_image(case.fixed),
        "moving": describe_image(case.moving),
    }
