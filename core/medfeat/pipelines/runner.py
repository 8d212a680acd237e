"""Shared machinery of all pipelines: build components, guard the output folder, record provenance."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medfeat.config.resolve import ResolvedComponent, ResolvedPipeline
from medfeat.context import RunContext
from medfeat.errors import ConfigError, InputFileError
from medfeat.pipelines.cases import FeatureCache
from medfeat.registry import Registry


@dataclass
class Run:
    """One execution of a resolved pipeline: its components, output folder, inputs and features."""

    resolved: ResolvedPipeline
    registry: Registry
    context: RunContext
    out_dir: Path
    protected: set[Path] = field(default_factory=set)
    case_records: dict[str, dict[str, Any]] = field(default_factory=dict)
    features: FeatureCache = field(default_factory=FeatureCache)

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

    def protect(self, paths: list[Path]) -> None:
        self.protected.update(Path(p).resolve() for p in paths)

    def case_dir(self, case_id: str) -> Path:
        d = self.out_dir / case_id
        if d.resolve() in self.protected:
            raise InputFileError(
                f"Output folder {d} is an input of this run.", remedy="Choose another --out."
            )
        d.mkdir(parents=True, exist_ok=True)
        return d


def prepare_out_dir(out_dir: Path, overwrite: bool) -> None:
    """Create the output folder; refuse to mix a new run into an earlier one unless asked to."""
    if out_dir.exists() and not out_dir.is_dir():
        raise InputFileError(
            f"Output path {out_dir} exists and is not a folder.", remedy="Choose another --out."
        )
    if (out_dir / "provenance.json").exists() and not overwrite:
        raise InputFileError(
            f"{out_dir} already holds the results of an earlier run (provenance.json is there).",
            remedy="Choose another --out, or set output.overwrite=true to replace them.",
        )
    out_dir.mkdir(parents=True, exist_ok=True)


def _uses_all_ranks(pipeline: Any) -> bool:
    """Training pipelines share their work over torchrun's ranks (DistributedDataParallel)."""
    return pipeline.kind == "pretraining" or (
        pipeline.kind == "segmentation" and pipeline.mode == "train"
    )


def run_pipeline(
    resolved: ResolvedPipeline, registry: Registry, context: RunContext, out_dir: Path | None = None
) -> dict[str, Any]:
    """Run a resolved pipeline; returns the summary written to ``metrics.json``."""
    from medfeat.context import process_rank
    from medfeat.io.atomic import atomic_write_json
    from medfeat.io.checksum import remembering_checksums
    from medfeat.pipelines import correspondence, pretraining, registration, segmentation
    from medfeat.provenance import base_record

    pipeline = resolved.pipeline
    out_dir = Path(out_dir or pipeline.output.dir)
    rank, world = process_rank()
    if rank > 0 and not _uses_all_ranks(pipeline):
        return {}  # registration, correspondence, inference: rank 0 does the whole job
    if rank == 0:
        prepare_out_dir(out_dir, pipeline.output.overwrite)
    else:  # rank 0 checks (and may refuse) the folder; the others only need it to exist
        out_dir.mkdir(parents=True, exist_ok=True)
    context.out_dir = out_dir
    run = Run(resolved, registry, context, out_dir)
    runners = {
        "registration": registration.run,
        "correspondence": correspondence.run,
        "segmentation": segmentation.run,
        "pretraining": pretraining.run,
    }
    record = base_record(resolved.to_dict(), context.seed, context.device, registry.plugins)
    record["overrides"] = resolved.overrides
    record["world_size"] = world
    start = time.perf_counter()
    with remembering_checksums():  # each input is hashed once, when it is read
        summary = runners[pipeline.kind](run)
    context.timings["total"] = time.perf_counter() - start
    record["cases"] = run.case_records
    record["timings_s"] = {k: round(v, 4) for k, v in context.timings.items()}
    if context.random_weights:  # such output is a speed/plumbing check, never a result
        note = {"random_weights": list(context.random_weights), "is_result": False}
        summary, record = {**note, **summary}, {**note, **record}
    if rank == 0:  # under torchrun, one copy of the summary (every rank computed the same run)
        atomic_write_json(out_dir / "metrics.json", summary)
        atomic_write_json(out_dir / "provenance.json", record)
    return summary
