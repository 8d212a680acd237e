"""Pipeline schemas: one pydantic model per pipeline kind.

Component sections are ``{name: <registered name>, ...options}``. The schema only checks the shape
(``name`` present); :mod:`medfeat.config.resolve` then validates the options with the named
component's own config model.

Path options: a relative path written in a pipeline file is relative to that file's folder (one
given on the command line, to the working directory). A ``Path`` option is an input, which must
exist before a run, unless its type is :data:`OutputPath`; :data:`InputPath` says so explicitly.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from medfeat.config.base import ConfigModel


class ComponentRef(BaseModel):
    """A component section: a registered ``name`` plus that component's options."""

    model_config = ConfigDict(extra="allow")
    name: str

    @property
    def options(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


@dataclass(frozen=True)
class ComponentKind:
    """Marks a config field as naming another registered component of ``kind``."""

    kind: str


@dataclass(frozen=True)
class PathRole:
    """Marks a path option as an ``input`` (checked to exist before a run) or an ``output``."""

    role: Literal["input", "output"]


#: A path the run reads (a file, folder or checkpoint): ``medfeat validate`` checks it exists.
InputPath = Annotated[Path, PathRole("input")]
#: A path the run writes (a folder or file it creates): not checked for existence.
OutputPath = Annotated[Path, PathRole("output")]


def nested_component(kind: str) -> Any:
    """Type of a component config field that holds another component, ``{name: ..., options}``.

    For example a pretrainer's coordinate provider::

        coordinates: nested_component("coordinate_provider") = Field(
            default_factory=lambda: ComponentRef(name="bbox-normalised"))

    ``medfeat validate`` and ``medfeat run`` resolve the name through the registry (with "did you
    mean") and validate the options with that component's config model, reporting the YAML line.
    The component's factory builds it from ``.name`` and ``.options`` when it needs it.
    """
    return Annotated[ComponentRef, ComponentKind(kind)]


Strict = ConfigModel


class OutputOptions(Strict):
    """Where and how results are written."""

    dir: OutputPath = Field(
        Path("medfeat-out"),
        description="Output folder (relative: to the pipeline file's folder); `--out` overrides it.",
    )
    field_convention: Literal["itk", "learn2reg"] = Field(
        "itk",
        description="Displacement field files: `itk` (world LPS mm on the fixed grid) or "
        "`learn2reg` (voxel displacements).",
    )
    write_inverse: bool = Field(
        True, description="Also write the moving->fixed field when the optimiser provides it."
    )
    write_warped: bool = Field(
        True, description="Write the warped moving image (and labels, when given)."
    )
    overwrite: bool = Field(
        False, description="Allow replacing results of an earlier run in `dir`."
    )
    report: bool = Field(
        True, description="Write the HTML quality-control report (report/index.html) of the run."
    )


class PipelineBase(Strict):
    kind: str = Field(description="Pipeline kind: registration, correspondence, segmentation, ...")
    description: str = Field("", description="Free text shown in the run's provenance.")
    requires: list[str] = Field(
        default_factory=list, description="Plugin requirements, e.g. 'medfeat-dinov3>=0.1'."
    )
    seed: int = Field(
        0,
        ge=0,
        le=2**32 - 1,
        description="Random seed of the run (0 to 2^32-1); `--seed` overrides it.",
    )
    device: str = Field(
        "auto",
        pattern=r"^(auto|cpu|cuda(:[0-9]+)?)$",
        description="auto, cpu, cuda or cuda:N; `--device` overrides it.",
    )
    data: ComponentRef = Field(description="A dataset adapter producing the cases to process.")
    output: OutputOptions = Field(
        default_factory=OutputOptions, description="Where and how results are written."
    )

    @field_validator("requires", mode="before")
    @classmethod
    def _listify(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value


class RegistrationPipeline(PipelineBase):
    """Fixed/moving -> displacement field, warped image/labels, transformed points, metrics."""

    kind: Literal["registration"] = Field(description="Pipeline kind.")
    backbone: ComponentRef = Field(
        default_factory=lambda: ComponentRef(name="intensity"),
        description="Feature extractor applied to both images.",
    )
    feature_transforms: list[ComponentRef] = Field(
        default_factory=list, description="Transforms applied to both feature maps, in order."
    )
    similarity: ComponentRef | None = Field(
        None, description="Data term, for optimisers that take one."
    )
    regulariser: ComponentRef | None = Field(
        None, description="Penalty on the field, for optimisers that take one."
    )
    prealignment: list[ComponentRef] = Field(
        default_factory=list,
        description="Rigid/affine pre-alignments run in order before the deformable optimiser "
        "(e.g. centroids, then an affine fit); the written transform includes them.",
    )
    optimiser: ComponentRef = Field(description="The deformable registration method.")
    fixed_mask: Literal["from-data", "auto-lung", "auto-body", "none"] = Field(
        "from-data",
        description="Region that weights the data term: the dataset's mask, one derived automatically "
        "from the fixed intensities (lungs / body, Otsu threshold), or none.",
    )
    fixed_mask_threshold: float | None = Field(
        None, description="Intensity threshold of the automatic masks (default: Otsu)."
    )
    moving_mask: Literal["from-data", "auto-lung", "auto-body", "none"] = Field(
        "from-data",
        description="Region of the moving image (pre-alignments and feature transforms use it): "
        "the dataset's moving mask, one derived from the moving intensities, or none.",
    )
    moving_mask_threshold: float | None = Field(
        None, description="Intensity threshold of the automatic moving masks (default: Otsu)."
    )
    working_spacing_mm: float | None = Field(
        None,
        gt=0,
        le=50,
        allow_inf_nan=False,
        description="Isotropic spacing (mm) of the working grid: both images and their masks are "
        "resampled onto the fixed image's box and direction at this spacing (the moving image "
        "through the pre-alignment) before any feature is computed. Default: the geometric "
        "mean of the fixed image's spacing (its own voxels when it is isotropic).",
    )


class CorrespondencePipeline(PipelineBase):
    """Query points in A -> matched points in B, with scores and (when known) errors in mm."""

    kind: Literal["correspondence"] = Field(description="Pipeline kind.")
    backbone: ComponentRef = Field(description="Feature extractor applied to both images.")
    feature_transforms: list[ComponentRef] = Field(
        default_factory=list, description="Transforms applied to both feature maps, in order."
    )
    matcher: ComponentRef = Field(description="Matches the query points of A into B.")


class SegmentationPipeline(PipelineBase):
    """Train a segmentation head (on images or frozen backbone features), or run inference with one."""

    kind: Literal["segmentation"] = Field(description="Pipeline kind.")
    mode: Literal["train", "infer"] = Field(
        "train", description="`train` a head, or `infer` with trained head weights."
    )
    backbone: ComponentRef | None = Field(
        None, description="Frozen feature extractor whose features the head reads (optional)."
    )
    head: ComponentRef = Field(description="The segmentation head.")
    checkpoint: InputPath | None = Field(None, description="Head weights file for `infer`.")


class PretrainingPipeline(PipelineBase):
    """Learn backbone weights from unlabelled images."""

    kind: Literal["pretraining"] = Field(description="Pipeline kind.")
    pretrainer: ComponentRef = Field(description="Learns backbone weights from the data.")


PIPELINE_KINDS: dict[str, type[PipelineBase]] = {
    "registration": RegistrationPipeline,
    "correspondence": CorrespondencePipeline,
    "segmentation": SegmentationPipeline,
    "pretraining": PretrainingPipeline,
}

#: Pipeline field -> component kind it names.
COMPONENT_FIELDS: dict[str, str] = {
    "data": "dataset",
    "backbone": "backbone",
    "feature_transforms": "feature_transform",
    "similarity": "similarity",
    "regulariser": "regulariser",
    "prealignment": "aligner",
    "optimiser": "optimiser",
    "matcher": "matcher",
    "head": "segmentation_head",
    "pretrainer": "pretrainer",
}
