"""``medfeat`` CLI: run/validate pipelines, list plugins and components.

User errors (:class:`~medfeat.errors.MedfeatError`) print as one paragraph and exit with status 2;
``--debug`` shows the traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from medfeat import __version__
from medfeat.errors import MedfeatError, ResourceError


def console(stderr: bool = False):
    """The rich console medfeat prints through (``stderr=True`` for messages about the run)."""
    from rich.console import Console

    return Console(stderr=stderr, highlight=False, soft_wrap=True)


# Built-in sub-commands, one module each under medfeat.cli with an ``add_parser(sub)``; ``run`` is
# listed first and the rest after ``validate`` so that ``medfeat --help`` reads in that order.
BUILTIN_COMMANDS = ("run", "bench", "apply", "report")


def add_pipeline_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("pipeline", type=Path, help="pipeline YAML file")
    p.add_argument("overrides", nargs="*", metavar="key.path=value", help="override config values")
    p.add_argument("--print-config", action="store_true", help="print the resolved configuration")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="medfeat",
        description="Registration, correspondence and segmentation with learned and classical features.",
    )
    parser.add_argument("--version", action="version", version=f"medfeat {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more output")
    parser.add_argument("-q", "--quiet", action="count", default=0, help="less output")
    parser.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    import importlib

    for name in BUILTIN_COMMANDS[:1]:
        importlib.import_module(f"medfeat.cli.{name}").add_parser(sub)

    p = sub.add_parser(
        "validate", help="check a pipeline and that its input files exist, without running it"
    )
    add_pipeline_args(p)
    p.set_defaults(func=cmd_validate)

    for name in BUILTIN_COMMANDS[1:]:
        importlib.import_module(f"medfeat.cli.{name}").add_parser(sub)

    p = sub.add_parser("plugins", help="installed plugins, their components and load failures")
    p.set_defaults(func=cmd_plugins)

    p = sub.add_parser("components", help="registered components with summaries and config options")
    p.add_argument("kind", nargs="?", help="only this kind (e.g. backbone, optimiser)")
    p.set_defaults(func=cmd_components)

    from medfeat.plugins import add_plugin_commands, get_registry

    # each plugin's commands are isolated: a failing hook or a taken name is a load problem
    add_plugin_commands(sub, get_registry())
    return parser


def resolve_cli_pipeline(args: argparse.Namespace, extra: list[str] | None = None):
    """Resolve the pipeline of a sub-command's arguments (``pipeline``, ``overrides``,
    ``print_config``, as added by :func:`add_pipeline_args`), with ``extra`` overrides appended.

    Returns ``(resolved pipeline, registry)``; a plugin's sub-command uses it to run on a pipeline
    exactly as ``medfeat run`` would read it.
    """
    from medfeat.config.resolve import resolve_pipeline
    from medfeat.config.source import load_yaml
    from medfeat.plugins import get_registry

    registry = get_registry()
    resolved = resolve_pipeline(
        load_yaml(args.pipeline), registry, [*args.overrides, *(extra or [])]
    )
    if args.print_config:
        import yaml

        console().print(yaml.safe_dump(resolved.to_dict(), sort_keys=False), end="")
    return resolved, registry


def cmd_validate(args: argparse.Namespace) -> int:
    """Schema, component options and the existence of every input path (as a run checks them)."""
    resolved, _ = resolve_cli_pipeline(args)
    if not args.print_config:
        inputs = f"; its inputs exist: {', '.join(resolved.inputs)}" if resolved.inputs else ""
        console().print(f"{args.pipeline}: valid {resolved.pipeline.kind} pipeline{inputs}.")
    return 0


def cmd_plugins(args: argparse.Namespace) -> int:
    from rich.markup import escape
    from rich.table import Table

    from medfeat.plugins import get_registry
    from medfeat.registry import KINDS

    registry = get_registry()
    table = Table(title="medfeat plugins")
    table.add_column("plugin")
    table.add_column("version")
    table.add_column("components")
    for plugin, version in sorted(registry.plugins.items()):
        parts = []
        for kind, (_, human) in KINDS.items():
            names = [
                c.name + (f" (alias {', '.join(c.aliases)})" if c.aliases else "")
                for c in registry.components[kind].values()
                if c.plugin == plugin
            ]
            if names:
                parts.append(f"{human}s: {', '.join(sorted(names))}")
        table.add_row(escape(plugin), escape(version), escape("\n".join(parts)) or "-")
    out = console()
    out.print(table)
    if registry.problems:
        out.print("[bold red]Load problems:[/bold red]")
        for p in registry.problems:
            out.print(f"  {p.plugin}: {p.message}", markup=False)
    else:
        out.print("No load failures.")
    return 0


def _schema_lines(model) -> list[str]:
    lines = []
    for name, f in model.model_fields.items():
        from medfeat.config.schema import ComponentKind

        ann = getattr(f.annotation, "__name__", None) or str(f.annotation).replace("typing.", "")
        default = (
            "required" if f.is_required() else f"= {f.get_default(call_default_factory=True)!r}"
        )
        nested = [m.kind for m in f.metadata if isinstance(m, ComponentKind)]
        if nested:  # another component: {name, options}
            ann = f"{nested[0].replace('_', ' ')} section"
            if not f.is_required():
                ref = f.get_default(call_default_factory=True)
                default = f"= {{name: {ref.name}{''.join(f', {k}: {v}' for k, v in ref.options.items())}}}"
        desc = f" — {f.description}" if f.description else ""
        lines.append(f"    {name}: {ann} {default}{desc}")
    return lines


def _kind_named(text: str, kinds: dict[str, tuple[str, str]]) -> str | None:
    """The kind id ``text`` names: ``optimiser``, ``optimisers``, ``feature-transforms``,
    ``similarities``, or a kind's human name (``deformable optimisers``)."""
    wanted = text.strip().lower().replace("-", "_").replace(" ", "_")
    for kind, (_, human) in kinds.items():
        plural = kind[:-1] + "ies" if kind.endswith("y") else kind + "s"
        human = human.replace(" ", "_").replace("-", "_")
        if wanted in (kind, plural, human, human + "s"):
            return kind
    return None


def cmd_components(args: argparse.Namespace) -> int:
    from rich.markup import escape

    from medfeat.errors import ConfigError
    from medfeat.plugins import get_registry
    from medfeat.registry import CORE_PLUGIN, KINDS

    registry = get_registry()
    kinds = list(KINDS)
    if args.kind:
        kind = _kind_named(args.kind, KINDS)
        if kind is None:
            raise ConfigError(
                f"unknown component kind {args.kind!r}.", remedy=f"Kinds are: {', '.join(KINDS)}."
            )
        kinds = [kind]
    out = console()
    for kind in kinds:
        out.print(f"[bold]{KINDS[kind][1]}s[/bold]")
        comps = registry.components[kind]
        if not comps:
            out.print("  (none installed)")
        for name, comp in sorted(comps.items()):
            also = f" (alias {escape(', '.join(comp.aliases))})" if comp.aliases else ""
            out.print(
                f"  [cyan]{name}[/cyan]{also} ({escape(comp.plugin)}): {escape(comp.summary)}"
            )
            try:
                lines = _schema_lines(comp.config)
            except Exception as exc:  # a plugin's option model that cannot describe itself
                if comp.plugin == CORE_PLUGIN:
                    raise
                lines = [
                    f"    (its options cannot be listed: {comp.failure(exc, 'to list its options').message})"
                ]
            for line in lines:
                out.print(line, markup=False)
    return 0


def _print_error(exc: BaseException) -> None:
    from medfeat.context import process_rank
    from medfeat.errors import Interrupted

    if isinstance(exc, Interrupted) and process_rank()[0] > 0:
        return  # under torchrun every rank stops together; rank 0 says so once
    from rich.markup import escape

    out = console(stderr=True)
    title = getattr(exc, "title", "Error")
    out.print(f"[bold red]{escape(title)}:[/bold red] {escape(str(exc))}")


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    try:
        parser = build_parser()
        args, unknown = parser.parse_known_args(argv)
        # overrides may come after options: `run p.yaml --out d key=value`
        stray = [u for u in unknown if "=" in u and not u.startswith("-")]
        if stray and hasattr(args, "overrides"):
            args.overrides = [*args.overrides, *stray]
            unknown = [u for u in unknown if u not in stray]
        if unknown:
            parser.error(f"unrecognized arguments: {' '.join(unknown)}")
        if not getattr(args, "func", None):
            parser.print_help()
            return 0
        return int(args.func(args) or 0)
    except MedfeatError as exc:
        if debug:
            raise
        _print_error(exc)
        return exc.exit_code
    except MemoryError:
        if debug:
            raise
        _print_error(
            ResourceError(
                "The job ran out of memory.",
                remedy="Use a coarser resolution, fewer feature channels or a smaller chunk size, or run on a machine with more memory.",
            )
        )
        return 2
    except KeyboardInterrupt:
        _print_error(
            MedfeatError("Interrupted; finished outputs were kept, nothing half-written was left.")
        )
        return 130
    except Exception as exc:
        if debug:
            raise
        if "out of memory" in str(exc).lower():
            _print_error(
                ResourceError(
                    f"The job ran out of memory ({str(exc).splitlines()[0]}).",
                    remedy="Use --device cpu, a coarser resolution or smaller chunks.",
                )
            )
            return 2
        error = internal_error(exc)
        _print_error(error)
        return getattr(error, "exit_code", 1)


def internal_error(exc: BaseException) -> BaseException:
    """What to say about an unexpected exception: a plugin's failure when the innermost plugin
    frame of its traceback is a plugin's code (naming the plugin and where), else a medfeat bug."""
    from medfeat.plugins import plugin_fault

    fault = plugin_fault(exc)
    if fault is not None:
        return fault
    return RuntimeError(
        f"medfeat hit an internal error: {type(exc).__name__}: {exc}. This is a bug; rerun with "
        "--debug for the traceback and report it."
    )


if __name__ == "__main__":
    sys.exit(main())
