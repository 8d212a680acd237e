"""``medfeat meddift-ablation``: the timestep x level sweep on a correspondence pipeline's data."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_ablation_command(cli) -> None:
    p = cli.add_parser(
        "meddift-ablation",
        help="MedDIFT timestep x level-subset sweep (paper Fig. 2): CSV + heatmap PNG",
    )
    p.add_argument("pipeline", type=Path, help="correspondence pipeline with a maisi-dift backbone")
    p.add_argument("overrides", nargs="*", metavar="key.path=value")
    p.add_argument("--timesteps", type=int, nargs="+", default=[10, 20, 30, 60, 100, 200])
    p.add_argument(
        "--level-subsets",
        nargs="+",
        default=None,
        help="comma-separated level lists, e.g. 0,1,2,3 3 2,3 (default: all 15 subsets)",
    )
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--device")
    p.add_argument("--print-config", action="store_true")
    p.set_defaults(func=cmd_ablation)


def _subsets(specs: list[str] | None):
    from medfeat.api import ConfigError
    from medfeat_maisi_dift.ablation import ALL_SUBSETS

    if specs is None:
        return list(ALL_SUBSETS)
    out = []
    for spec in specs:
        try:
            levels = tuple(sorted({int(v) for v in spec.split(",")}))
        except ValueError:
            levels = ()
        if not levels or any(v not in range(4) for v in levels):
            raise ConfigError(
                f"--level-subsets entry {spec!r} is not a comma-separated list of levels 0..3.",
                source="command line",
            )
        out.append(levels)
    return out


def cmd_ablation(args: argparse.Namespace) -> int:
    from medfeat.api import (
        ConfigError,
        Progress,
        RunContext,
        console,
        resolve_cli_pipeline,
        resolve_device,
        seed_everything,
    )
    from medfeat_maisi_dift.ablation import plot_heatmap, sweep, write_table
    from medfeat_maisi_dift.config import MedDiftMatcherConfig
    from medfeat_maisi_dift.matcher import MedDiftMatcher

    for t in args.timesteps:
        if not 0 <= t < 1000:
            raise ConfigError(f"--timesteps {t} is outside 0..999.", source="command line")
    subsets = _subsets(args.level_subsets)
    resolved, registry = resolve_cli_pipeline(
        args, [f"device={args.device}"] if args.device else []
    )
    comps = resolved.components
    backbone = comps.get("backbone")
    if (
        resolved.pipeline.kind != "correspondence"
        or backbone is None
        or backbone.name != "maisi-dift"
    ):
        raise ConfigError(
            "meddift-ablation needs a correspondence pipeline whose backbone is maisi-dift.",
            source=str(args.pipeline),
            remedy="See plugins/maisi-dift/examples/ for one.",
        )
    matcher_comp = comps.get("matcher")
    matcher_cfg = (
        matcher_comp.config
        if matcher_comp is not None and matcher_comp.name == "meddift-matcher"
        else MedDiftMatcherConfig()
    )
    seed_everything(resolved.pipeline.seed)
    progress = Progress(verbosity=args.verbose - args.quiet)
    ctx = RunContext(
        device=resolve_device(resolved.pipeline.device),
        seed=resolved.pipeline.seed,
        progress=progress,
    )
    model = registry.get("backbone", "maisi-dift").build(backbone.config, ctx)
    data = registry.get(comps["data"].kind, comps["data"].name).build(comps["data"].config, ctx)
    cells = sweep(
        data.registration_cases(),
        model,
        MedDiftMatcher(matcher_cfg),
        args.timesteps,
        subsets,
        progress=progress.log,
    )
    random_weights = bool(backbone.config.random_weights)
    args.out.mkdir(parents=True, exist_ok=True)
    write_table(cells, args.out / "ablation.csv", random_weights)
    plot_heatmap(cells, args.out / "ablation.png", random_weights)
    console().print(f"wrote {args.out / 'ablation.csv'} and {args.out / 'ablation.png'}")
    return 0
