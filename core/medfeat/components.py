"""What each component kind's factory returns.

These are structural protocols: a plugin's class need not inherit from them, only provide the
methods. Tensors are torch tensors in numpy axis order; every spatial array travels with its
:class:`~medfeat.geometry.Grid`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

from medfeat.geometry import DisplacementField, Grid, Image, PointSet

if TYPE_CHECKING:
    import torch

    from medfeat.context import RunContext


@dataclass
class FeatureLevel:
    """One level of a feature map: ``data`` is ``[C, *grid.shape]`` at the level's native resolution."""

    data: torch.Tensor
    grid: Grid
    name: str = ""


@dataclass
class FeatureMap:
    """Multi-level features of one image. Levels may have different grids (all in the image's world space)."""

    levels: list[FeatureLevel]
    source: Image | None = None

    @property
    def num_channels(self) -> int:
        return sum(int(level.data.shape[0]) for level in self.levels)


@runtime_checkable
class Backbone(Protocol):
    """Image -> :class:`FeatureMap` with geometry."""

    def extract(self, image: Image) -> FeatureMap: ...


@runtime_checkable
class FeatureTransform(Protocol):
    """Transforms the feature maps of the images of one job together (joint PCA needs both)."""

    def apply(
        self, features: Sequence[FeatureMap], masks: Sequence[Image | None] | None = None
    ) -> list[FeatureMap]: ...


@runtime_checkable
class Similarity(Protocol):
    """A loss between two tensors ``[B, C, *spatial]``; lower is better."""

    def __call__(
        self, a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor | None = None
    ) -> torch.Tensor: ...


@runtime_checkable
class Regulariser(Protocol):
    """A penalty on a voxel displacement ``[B, ndim, *spatial]`` given spacing (array order, mm)."""

    def __call__(self, disp: torch.Tensor, spacing: Sequence[float]) -> torch.Tensor: ...


@dataclass
class Matches:
    """Correspondences of the query points of A in B.

    ``points``: the matches in B (world mm) of the *matched* queries, in query order, with their
    similarity ``scores``. ``matched``: one bool per query (``None``: every query is matched);
    a query is unmatched when the matcher found no candidate for it (it lies outside A, or its
    search box misses B). Build them with :meth:`from_positions` from per-query positions that
    are NaN where unmatched.
    """

    points: PointSet
    scores: Any
    matched: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.matched is None:
            return
        from medfeat.errors import LandmarkError

        self.matched = np.asarray(self.matched, dtype=bool).reshape(-1)
        n = int(self.matched.sum())
        if n != len(self.points) or n != len(self.scores):
            raise LandmarkError(
                f"Matches: {n} queries are marked matched, but there are {len(self.points)} "
                f"points and {len(self.scores)} scores (one per matched query)."
            )

    @classmethod
    def from_positions(
        cls, positions_mm: np.ndarray, scores: Any, name: str = "matches in B"
    ) -> Matches:
        """From one position ``[N, ndim]`` (world mm) and one score ``[N]`` per query, with
        non-finite positions where a query is unmatched."""
        pos = np.atleast_2d(np.asarray(positions_mm, dtype=np.float64))
        val = np.asarray(scores, dtype=np.float64).reshape(-1)
        ok = np.all(np.isfinite(pos), axis=1)
        points = PointSet(pos[ok].reshape(-1, pos.shape[1]), meta={"name": name})
        return cls(points, val[ok], None if ok.all() else ok)

    @property
    def num_queries(self) -> int:
        return len(self.points) if self.matched is None else len(self.matched)

    @property
    def num_unmatched(self) -> int:
        return 0 if self.matched is None else int((~self.matched).sum())

    def query_mask(self) -> np.ndarray:
        """One bool per query: True where it is matched."""
        if self.matched is None:
            return np.ones(len(self.points), dtype=bool)
        return self.matched

    def positions_mm(self) -> np.ndarray:
        """``[num_queries, ndim]`` world mm, NaN rows for unmatched queries."""
        pts = np.asarray(self.points.points, dtype=np.float64)
        out = np.full((self.num_queries, pts.shape[1]), np.nan)
        out[self.query_mask()] = pts
        return out

    def query_scores(self) -> np.ndarray:
        """``[num_queries]`` scores, NaN for unmatched queries."""
        out = np.full(self.num_queries, np.nan)
        out[self.query_mask()] = np.asarray(self.scores, dtype=np.float64).reshape(-1)
        return out


@runtime_checkable
class Matcher(Protocol):
    """Correspondence search: query points of A -> best matching points in B."""

    def match(
        self, features_a: FeatureMap, features_b: FeatureMap, queries: PointSet
    ) -> Matches: ...


@dataclass
class RegistrationResult:
    """Output of a deformable optimiser: fixed->moving field, optionally its inverse."""

    forward: DisplacementField
    inverse: DisplacementField | None = None
    info: dict = field(default_factory=dict)


@runtime_checkable
class Aligner(Protocol):
    """Finds a rigid or affine pre-alignment in world space.

    Returns a 4x4 matrix in LPS mm that maps a fixed point ``x`` to the moving point ``A @ x`` (the
    direction of the fixed->moving field). ``initial`` is the alignment so far (identity first);
    the result replaces it.
    """

    def align(
        self,
        fixed: Image,
        moving: Image,
        *,
        initial: np.ndarray,
        fixed_mask: Image | None = None,
        moving_mask: Image | None = None,
    ) -> np.ndarray: ...


@runtime_checkable
class DeformableOptimiser(Protocol):
    """Finds a displacement field aligning ``moving`` to ``fixed`` (warped = moving(x + u(x))).

    In a registration pipeline both images (and masks) are on one isotropic working grid in the
    fixed image's frame, the moving one already through the pre-alignment. ``moving_mask`` is
    passed only to optimisers whose ``register`` accepts it."""

    def register(
        self,
        fixed: Image,
        moving: Image,
        features_fixed: FeatureMap,
        features_moving: FeatureMap,
        *,
        similarity: Similarity | None = None,
        regulariser: Regulariser | None = None,
        fixed_mask: Image | None = None,
        moving_mask: Image | None = None,
    ) -> RegistrationResult: ...


@runtime_checkable
class SegmentationHead(Protocol):
    """A trainable segmentation model on images or frozen backbone features.

    A head that segments only some labels may expose ``label_ids`` (after :meth:`load`); inference
    pipelines then score Dice on those labels only, not on every label of the ground truth.
    """

    def fit(
        self,
        train: Sequence[SegmentationSample],
        validation: Sequence[SegmentationSample],
        out_dir: Path,
        context: RunContext,
        backbone: Backbone | None = None,
    ) -> dict:
        """Train; write checkpoints under ``out_dir``; return metrics (e.g. validation Dice)."""
        ...

    def load(self, checkpoint: Path) -> None:
        """Load weights written by :meth:`fit`."""
        ...

    def predict(self, image: Image, backbone: Backbone | None = None) -> Image:
        """Label map on the image's grid."""
        ...


@runtime_checkable
class Pretrainer(Protocol):
    """Learns backbone weights from unlabelled images; writes checkpoints under ``out_dir``."""

    def fit(self, dataset: Dataset, out_dir: Path, context: RunContext) -> dict:
        """Train on ``dataset.images()``; write (resumable) checkpoints under ``out_dir``."""
        ...


@runtime_checkable
class CoordinateProvider(Protocol):
    """Image -> dense body-part coordinates, as a :class:`FeatureMap`."""

    def coordinates(self, image: Image) -> FeatureMap: ...


@dataclass
class RegistrationCase:
    """A fixed/moving pair with whatever annotations exist; points are world LPS mm."""

    id: str
    fixed: Image
    moving: Image
    fixed_points: PointSet | None = None
    moving_points: PointSet | None = None
    fixed_labels: Image | None = None
    moving_labels: Image | None = None
    fixed_mask: Image | None = None
    moving_mask: Image | None = None
    inputs: list[Path] = field(default_factory=list)
    meta: dict = field(default_factory=dict)


@dataclass
class SegmentationSample:
    """An image with its label map (or ``None`` at inference) and a group id for leakage-free splits."""

    id: str
    image: Image
    labels: Image | None = None
    group: str = ""
    inputs: list[Path] = field(default_factory=list)


@runtime_checkable
class Dataset(Protocol):
    """A source of cases. Adapters implement the iterators that make sense for their data."""

    def registration_cases(self) -> Iterator[RegistrationCase]:
        """Fixed/moving pairs (registration and correspondence pipelines)."""
        ...


# Optional dataset methods, used by the pipelines that need them:
#   segmentation_samples(split: str) -> Iterator[SegmentationSample]   split in {"train", "validation", "test", "all"}
#   images() -> Iterator[Image]                                          unlabelled images for pretraining
