"""``medfeat run``: run a pipeline and write its outputs, metrics and provenance."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from medfeat.cli.main import add_pipeline_args, resolve_cli_pipeline


def add_parser(sub: Any) -> None:
    p = sub.add_parser("run", help="run a pipeline")
    add_pipeline_args(p)
    p.add_argument("--out", type=Path, help="output folder (overrides output.dir)")
    p.add_argument("--device", help="auto, cpu, cuda or cuda:N (overrides device)")
    p.add_argument("--seed", type=int, help="random seed (overrides seed)")
    add_cohort_args(p)
    p.set_defaults(func=cmd_run)


def add_cohort_args(p: argparse.ArgumentParser) -> None:
    """Where the cases run and whether finished ones are kept (docs/cohorts.md)."""
    g = p.add_argument_group("cohorts (each case a task; docs/cohorts.md)")
    where = g.add_mutually_exclusive_group()
    where.add_argument(
        "--workers",
        type=int,
        metavar="N",
        help="run the cases on a local Dask cluster of N processes",
    )
    where.add_argument(
        "--scheduler", metavar="ADDRESS", help="run the cases on an existing Dask scheduler"
    )
    where.add_argument(
        "--cluster",
        type=Path,
        metavar="FILE.yaml",
        help="run the cases as batch jobs (SLURM, PBS, SGE, LSF) through dask-jobqueue",
    )
    g.add_argument(
        "--resume",
        action="store_true",
        help="keep the cases an earlier run in --out finished (same configuration and inputs)",
    )


def cohort_options(args: argparse.Namespace) -> Any:
    from medfeat.cohort import CohortOptions

    return CohortOptions(
        workers=args.workers, scheduler=args.scheduler, cluster=args.cluster, resume=args.resume
    )


def cmd_run(args: argparse.Namespace) -> int:
    from medfeat.context import RunContext, process_rank, resolve_device, seed_everything
    from medfeat.pipelines import run_pipeline
    from medfeat.progress import Progress

    extra = []
    if args.device:
        extra.append(f"device={args.device}")
    if args.seed is not None:
        extra.append(f"seed={args.seed}")
    resolved, registry = resolve_cli_pipeline(args, extra)
    pipeline = resolved.pipeline
    device = resolve_device(pipeline.device)
    seed_everything(pipeline.seed)
    rank, _ = process_rank()
    # under torchrun only rank 0 reports (the other ranks' progress would interleave)
    progress = (
        Progress(enabled=False, verbosity=-1)
        if rank
        else Progress(verbosity=args.verbose - args.quiet)
    )
    context = RunContext(device=device, seed=pipeline.seed, progress=progress)
    out_dir = args.out or pipeline.output.dir
    cohort = cohort_options(args)
    try:
        run_pipeline(resolved, registry, context, out_dir, cohort)
    finally:
        from medfeat.distributed import teardown_distributed

        teardown_distributed()
    progress.log(f"Outputs, metrics.json and provenance.json are in {out_dir}")
    if context.random_weights:
        progress.warn(
            "this run used RANDOM weights ("
            + "; ".join(context.random_weights)
            + "): its outputs check speed and plumbing only and are NOT a result."
        )
    return 0
