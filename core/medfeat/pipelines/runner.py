"""Shared machinery of all pipelines: build components, guard the output folder, record provenance.

Pipelines that work case by case (registration, correspondence, segmentation inference) run as a
cohort (:mod:`medfeat.cohort`: each case a task, in-process or on Dask workers, resumable and
fault-isolated); training pipelines (pretraining, segmentation training) run as one task here.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medfeat.config.resolve import ResolvedComponent, ResolvedPipeline
from medfeat.context import RunContext
from medfeat.errors import ConfigError, InputFileError
from medfeat.pipelines.cases import FeatureCache
from medfeat.registry import Registry

if TYPE_CHECKING:
    from medfeat.cohort.options import CohortOptions


@dataclass
class Run:
    """One execution of a resolved pipeline: its components, output folder, inputs and features.

    ``staging`` maps a case id to the temporary folder its outputs are written into (renamed to
    ``out_dir/<case>`` once the case is complete); :meth:`case_dir` returns it.
    """

    resolved: ResolvedPipeline
    registry: Registry
    context: RunContext
    out_dir: Path
    protected: set[Path] = field(default_factory=set)
    case_records: dict[str, dict[str, Any]] = field(default_factory=dict)
    features: FeatureCache = field(default_factory=FeatureCache)
    staging: dict[str, Path] = field(default_factory=dict)

    def build(self, key: str, index: int | None = None) -> Any:
        """Build the component of pipeline field ``key`` (``index`` for list fields)."""
        comp = self.resolved.components[key]
        if isinstance(comp, list):
            comp = comp[index or 0]
        if comp is None:
            return None
        return self.build_resolved(comp)

    def build_resolved(self, comp: ResolvedComponent) -> Any:
        entry = self.registry.get(comp.kind, comp.name)
        return entry.build(comp.config, self.context)

    def build_all(self, key: str) -> list[Any]:
        comps = self.resolved.components.get(key) or []
        return [self.build_resolved(c) for c in comps]

    def require_method(self, obj: Any, method: str, key: str, purpose: str) -> None:
        if not callable(getattr(obj, method, None)):
            comp = self.resolved.components[key]
            name = comp.name if isinstance(comp, ResolvedComponent) else key
            raise ConfigError(
                f"{key} {name!r} cannot be used {purpose} (it has no `{method}`).",
                source=self.resolved.source.name,
                line=self.resolved.source.line_of((key, "name")),
                key_path=f"{key}.name",
                remedy="Pick another; `medfeat components` lists each component with its summary.",
            )

    def protect(self, paths: Any) -> None:
        self.protected.update(Path(p).resolve() for p in paths)

    def case_dir(self, case_id: str) -> Path:
        """The folder a case's outputs are written into (its staging folder during a cohort)."""
        d = self.staging.get(case_id) or self.out_dir / case_id
        if d.resolve() in self.protected:
            raise InputFileError(
                f"Output folder {d} is an input of this run.", remedy="Choose another --out."
            )
        d.mkdir(parents=True, exist_ok=True)
        return d


def prepare_out_dir(out_dir: Path, overwrite: bool) -> None:
    """Create the output folder; refuse to mix a new run into an earlier one unless asked to."""
    from medfeat.cohort.outputs import check_output_folder, refuse_earlier_run

    check_output_folder(out_dir)
    refuse_earlier_run(out_dir, overwrite=overwrite, resume=False)
    out_dir.mkdir(parents=True, exist_ok=True)


def uses_all_ranks(pipeline: Any) -> bool:
    """Training pipelines share their work over torchrun's ranks (DistributedDataParallel)."""
    return pipeline.kind == "pretraining" or (
        pipeline.kind == "segmentation" and pipeline.mode == "train"
    )


_uses_all_ranks = uses_all_ranks


@contextlib.contextmanager
def run_log(context: RunContext, out_dir: Path) -> Iterator[Path]:
    """``medfeat.log`` in ``out_dir`` for the run (rank 0). A run that fails before writing its
    summary leaves no log behind (its error went to stderr), so its folder can be removed."""
    progress = context.progress
    path = progress.attach_log(out_dir)
    try:
        yield path
    except BaseException as exc:
        progress.detach_log(exc)
        if not (out_dir / "metrics.json").exists():
            path.unlink(missing_ok=True)
        raise
    progress.detach_log()


def write_report(resolved: ResolvedPipeline, context: RunContext, out_dir: Path) -> None:
    """Build the QC report of a run that wrote its summary, unless ``output.report`` is off.

    The results are complete before this starts, so a report that cannot be built is a warning
    (with the command that rebuilds it), never a failed run.
    """
    if not resolved.pipeline.output.report or not (out_dir / "metrics.json").exists():
        return
    from medfeat.report import build_report

    progress = context.progress
    try:
        index = build_report(out_dir, progress=progress)
    except Exception as exc:  # noqa: BLE001 - the run's results stand without their report
        progress.warn(
            f"the QC report could not be built ({type(exc).__name__}: {exc}); the results are "
            f"complete. Rebuild it with: medfeat report {out_dir}"
        )
        return
    progress.log(f"QC report: {index}")


def run_pipeline(
    resolved: ResolvedPipeline,
    registry: Registry,
    context: RunContext,
    out_dir: Path | None = None,
    cohort: CohortOptions | None = None,
) -> dict[str, Any]:
    """Run a resolved pipeline; returns the summary written to ``metrics.json``.

    Case-by-case pipelines run as a cohort (``cohort``: workers, scheduler, resume); when cases
    failed, the summary is written and :class:`medfeat.cohort.CasesFailed` (carrying it) raised.
    """
    from medfeat.context import process_rank

    pipeline = resolved.pipeline
    out_dir = Path(out_dir or pipeline.output.dir)
    rank, _ = process_rank()
    if not uses_all_ranks(pipeline):
        if rank > 0:
            return {}  # registration, correspondence, inference: rank 0 does the whole job
        from medfeat.cohort.engine import run_cohort
        from medfeat.cohort.options import CohortOptions

        return run_cohort(resolved, registry, context, out_dir, cohort or CohortOptions())
    return _run_training(resolved, registry, context, out_dir)


def _run_training(
    resolved: ResolvedPipeline, registry: Registry, context: RunContext, out_dir: Path
) -> dict[str, Any]:
    """A training pipeline, as one task (its components split the work over torchrun ranks)."""
    from medfeat.cohort.outputs import OutputFolder, check_collisions, config_inputs
    from medfeat.context import process_rank
    from medfeat.io.atomic import atomic_write_json, protecting
    from medfeat.io.checksum import remembering_checksums
    from medfeat.pipelines import pretraining, segmentation
    from medfeat.provenance import base_record

    pipeline = resolved.pipeline
    rank, world = process_rank()
    inputs = config_inputs(resolved)
    folder = OutputFolder(out_dir, lock=rank == 0)
    if rank == 0:  # rank 0 checks (and may refuse) the folder; the others only need it to exist
        check_collisions(out_dir, [], inputs)
        folder.refuse_earlier_run(overwrite=pipeline.output.overwrite, resume=False)
    with folder, run_log(context, out_dir) if rank == 0 else contextlib.nullcontext():
        if rank == 0 and pipeline.output.overwrite:
            folder.remove_earlier_run()
        context.out_dir = out_dir
        run = Run(resolved, registry, context, out_dir)
        run.protect(inputs)
        runner = pretraining.run if pipeline.kind == "pretraining" else segmentation.run
        record = base_record(
            resolved.to_dict(), context.seed, context.device, registry.plugins, out_dir
        )
        record["overrides"] = resolved.overrides
        record["world_size"] = world
        start = time.perf_counter()
        with remembering_checksums(), protecting(run.protected):
            summary = runner(run)
        context.timings["total"] = time.perf_counter() - start
        record["cases"] = run.case_records
        record["timings_s"] = {k: round(v, 4) for k, v in context.timings.items()}
        if context.random_weights:  # such output is a speed/plumbing check, never a result
            note = {"random_weights": list(context.random_weights), "is_result": False}
            summary, record = {**note, **summary}, {**note, **record}
        if rank == 0:  # under torchrun, one copy of the summary (every rank computed the same run)
            atomic_write_json(out_dir / "metrics.json", summary)
            atomic_write_json(out_dir / "provenance.json", record)
            write_report(resolved, context, out_dir)
    return summary
