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
    p.set_defaults(func=cmd_run)


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
    try:
        run_pipeline(resolved, registry, context, out_dir)
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
