"""Plugin discovery through entry points, robust to broken plugins.

Every module named in the ``medfeat`` entry-point group is a plugin, the built-ins included
(``builtins = "medfeat.builtins"``). A plugin that fails to import or to register is skipped and
recorded; ``medfeat plugins`` and unknown-component errors report it. Nothing a plugin does while
it is imported or registers its components stops medfeat: exceptions, ``sys.exit`` and a
``KeyboardInterrupt`` it raises itself are all recorded as its load problem (a real Ctrl-C still
stops the program). Functions named like hooks but not hooks (a misspelt ``medfeat_register_*``,
or a hook without ``@hookimpl``) are reported too.

``MEDFEAT_PLUGINS`` limits which *external* plugins load: unset loads all, an empty string loads
none, otherwise a comma-separated list of distribution names (e.g. ``medfeat-dinov3``).
"""

from __future__ import annotations

import difflib
import os
import signal
import threading
import traceback
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from importlib.metadata import EntryPoint, entry_points
from types import ModuleType, TracebackType
from typing import Any

import pluggy

from medfeat import hookspecs
from medfeat.errors import PluginFailure
from medfeat.registry import CORE_PLUGIN, KINDS, LoadProblem, Registry, plugin_failure

ENTRY_POINT_GROUP = "medfeat"
CORE_DISTRIBUTION = CORE_PLUGIN
#: The hook names plugins may implement.
HOOK_NAMES = frozenset(
    name
    for name in dir(hookspecs)
    if name.startswith("medfeat_") and hasattr(getattr(hookspecs, name), "medfeat_spec")
)

_registry: Registry | None = None


def _allowed_plugins() -> set[str] | None:
    value = os.environ.get("MEDFEAT_PLUGINS")
    if value is None:
        return None
    return {v.strip().lower() for v in value.split(",") if v.strip()}


def _entry_point_distribution(ep: EntryPoint) -> tuple[str, str]:
    dist = getattr(ep, "dist", None)
    if dist is None:
        return ep.name, "unknown"
    return dist.metadata["Name"], dist.version


def _short_error(exc: BaseException) -> str:
    """``Type: message (file:line)`` of an exception, on one line."""
    frames = traceback.extract_tb(exc.__traceback__)
    where = f" ({frames[-1].filename}:{frames[-1].lineno})" if frames else ""
    if isinstance(exc, SystemExit):
        return f"it called sys.exit({exc.code!r}){where}"
    if isinstance(exc, KeyboardInterrupt):
        return f"it raised KeyboardInterrupt{where}"
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}{where}"


class _UserInterrupts:
    """Tells a real Ctrl-C (SIGINT while discovering plugins) from a ``KeyboardInterrupt`` that
    a plugin raises itself."""

    def __init__(self) -> None:
        self.pressed = False

    def is_real(self, exc: BaseException) -> bool:
        return isinstance(exc, KeyboardInterrupt) and self.pressed


@contextmanager
def _watch_interrupts() -> Iterator[_UserInterrupts]:
    watch = _UserInterrupts()
    previous = signal.getsignal(signal.SIGINT)
    if threading.current_thread() is not threading.main_thread() or (
        previous is not signal.default_int_handler
    ):
        watch.pressed = True  # cannot tell them apart here: let every KeyboardInterrupt through
        yield watch
        return

    def on_sigint(signum: int, frame: Any) -> None:
        watch.pressed = True
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, on_sigint)
    try:
        yield watch
    finally:
        signal.signal(signal.SIGINT, previous)


def _isolated(watch: _UserInterrupts, exc: BaseException) -> bool:
    """Whether ``exc``, raised by a plugin's code, is that plugin's failure (to record) rather
    than something that must stop medfeat (a real Ctrl-C)."""
    if watch.is_real(exc):
        return False
    return isinstance(exc, Exception | SystemExit | KeyboardInterrupt)


def hook_name_problems(module: Any) -> list[str]:
    """Functions of a plugin module that look like hooks but are not registered as any: a
    ``medfeat_*`` name that is no hook (a misspelling), a hook not marked ``@hookimpl``, or a
    ``@hookimpl`` whose name is no hook."""
    problems = []
    for attr in sorted(dir(module)):
        try:
            obj = getattr(module, attr)
        except Exception:  # a module attribute that raises on access: not a hook either way
            continue
        if isinstance(obj, type | ModuleType) or not callable(obj):
            continue
        opts = getattr(obj, f"{ENTRY_POINT_GROUP}_impl", None)
        if not isinstance(opts, dict) and not attr.startswith("medfeat_"):
            continue
        hook = (opts or {}).get("specname") or attr
        if hook in HOOK_NAMES:
            if opts is None:
                problems.append(
                    f"{attr} is not marked with @hookimpl, so it is ignored; decorate it with "
                    "`@hookimpl` (from medfeat.api)."
                )
            continue
        if opts is not None and opts.get("optionalhook"):
            continue  # a hook of another medfeat version, declared optional
        close = difflib.get_close_matches(hook, sorted(HOOK_NAMES), n=1, cutoff=0.6)
        hint = f" Did you mean {close[0]}?" if close else " (`medfeat_` names are for hooks.)"
        problems.append(f"{hook} is not a medfeat hook, so it is ignored.{hint}")
    return problems


def _top_module(name: str) -> str:
    return name.split(".", 1)[0].split(":", 1)[0]


def _register(
    pm: pluggy.PluginManager,
    registry: Registry,
    name: str,
    module: Any,
    watch: _UserInterrupts,
    module_name: str | None = None,
) -> bool:
    """Register ``module`` (imported as ``module_name``) as plugin ``name``; a failure is
    recorded, not raised."""
    try:
        pm.register(module, name=name)
    except BaseException as exc:
        if not _isolated(watch, exc):
            raise
        registry.problems.append(LoadProblem(name, f"its hooks are invalid: {_short_error(exc)}"))
        return False
    for problem in hook_name_problems(module):
        registry.problems.append(LoadProblem(name, problem))
    if name != CORE_DISTRIBUTION:
        if module_name is None and isinstance(module, ModuleType):
            module_name = module.__name__
        if module_name and _top_module(module_name) != "medfeat":
            registry.modules[_top_module(module_name)] = name
    return True


def build_registry(extra_plugins: Iterable[tuple[str, ModuleType | object]] = ()) -> Registry:
    """Discover plugins and collect their components into a fresh :class:`Registry`.

    ``extra_plugins`` are ``(name, module)`` pairs registered in-process after the entry points,
    which is how tests and embedding applications add plugins without installing them.
    """
    registry = Registry()
    pm = pluggy.PluginManager(ENTRY_POINT_GROUP)
    pm.add_hookspecs(hookspecs)
    allowed = _allowed_plugins()

    eps = sorted(
        entry_points(group=ENTRY_POINT_GROUP),
        key=lambda ep: (_entry_point_distribution(ep)[0] != CORE_DISTRIBUTION, ep.name),
    )
    with _watch_interrupts() as watch:
        for ep in eps:
            dist_name, version = _entry_point_distribution(ep)
            is_core = dist_name == CORE_DISTRIBUTION
            if not is_core and allowed is not None and dist_name.lower() not in allowed:
                continue
            if pm.has_plugin(dist_name) or pm.get_plugin(dist_name) is not None:
                continue
            try:
                module = ep.load()
            except BaseException as exc:  # a broken plugin must not take the tool down
                if not _isolated(watch, exc):
                    raise
                registry.problems.append(
                    LoadProblem(dist_name, f"failed to import {ep.value!r}: {_short_error(exc)}")
                )
                continue
            if _register(pm, registry, dist_name, module, watch, ep.module):
                registry.plugins[dist_name] = version
        for name, module in extra_plugins:
            if _register(pm, registry, name, module, watch):
                registry.plugins[name] = getattr(module, "__version__", "in-process")

        for kind, (hook_name, _) in KINDS.items():
            impls = getattr(pm.hook, hook_name).get_hookimpls()
            # the built-ins register first, whatever ordering (tryfirst/trylast) a plugin asks for
            for impl in sorted(impls, key=lambda i: i.plugin_name != CORE_DISTRIBUTION):
                register = registry.register_callback(kind, impl.plugin_name)
                try:
                    impl.function(register=register)
                except BaseException as exc:
                    if not _isolated(watch, exc):
                        raise
                    registry.problems.append(
                        LoadProblem(impl.plugin_name, f"{hook_name} raised {_short_error(exc)}")
                    )
    registry.plugin_manager = pm
    return registry


def add_plugin_commands(cli: Any, registry: Registry) -> None:
    """Let every plugin add its ``medfeat`` sub-commands to ``cli`` (argparse sub-parsers), one
    plugin at a time: a plugin whose hook fails, or that takes a command name already in use,
    gets none of its commands, and the failure is recorded as its load problem."""
    pm = registry.plugin_manager
    if pm is None:
        return
    with _watch_interrupts() as watch:
        for impl in pm.hook.medfeat_register_commands.get_hookimpls():
            guarded = _CommandsOf(cli, impl.plugin_name)
            before = (dict(cli.choices), list(cli._choices_actions))
            try:
                impl.function(cli=guarded)
            except BaseException as exc:
                if not _isolated(watch, exc):
                    raise
                cli.choices.clear()
                cli.choices.update(before[0])
                cli._choices_actions[:] = before[1]
                reason = (
                    str(exc)
                    if isinstance(exc, CommandNameTaken)
                    else f"medfeat_register_commands raised {_short_error(exc)}"
                )
                registry.problems.append(
                    LoadProblem(impl.plugin_name, f"{reason}; its commands were not added.")
                )


class CommandNameTaken(ValueError):
    """A plugin asked for a sub-command name (or alias) that is already in use."""


class _CommandsOf:
    """The argparse sub-parsers object handed to one plugin: ``add_parser`` refuses names
    already taken (by a built-in command or another plugin); everything else is the real one."""

    def __init__(self, cli: Any, plugin: str) -> None:
        self._cli, self._plugin = cli, plugin

    def add_parser(self, name: str, **kwargs: Any) -> Any:
        for wanted in [name, *kwargs.get("aliases", ())]:
            if wanted in self._cli.choices:
                raise CommandNameTaken(
                    f"it adds a command named {wanted!r}, which is already a medfeat command"
                )
        return self._cli.add_parser(name, **kwargs)

    def __getattr__(self, attr: str) -> Any:
        return getattr(self._cli, attr)


def blame(exc: BaseException) -> tuple[str, str] | None:
    """``(plugin, "module line N")`` of the innermost frame of ``exc``'s traceback that runs a
    plugin's code (not medfeat's), or ``None``. Uses the registry already built, if any."""
    registry = _registry
    if registry is None or not registry.modules:
        return None
    found = None
    tb: TracebackType | None = exc.__traceback__
    for frame, lineno in traceback.walk_tb(tb):
        module = frame.f_globals.get("__name__") or ""
        plugin = registry.modules.get(_top_module(module))
        if plugin is not None:
            found = (plugin, f"{module} line {lineno}")
    return found


def plugin_fault(exc: BaseException) -> PluginFailure | None:
    """The :class:`PluginFailure` to report for an unexpected exception whose traceback runs
    through a plugin's code (see :func:`blame`), or ``None`` when no plugin is involved (then it
    is medfeat's own bug)."""
    culprit = blame(exc)
    if culprit is None:
        return None
    plugin, where = culprit
    return plugin_failure(plugin, exc, f"the plugin {plugin} failed (in {where})")


def get_registry() -> Registry:
    """The process-wide registry, built on first use."""
    global _registry
    if _registry is None:
        _registry = build_registry()
    return _registry


def set_registry(registry: Registry | None) -> None:
    """Replace (or with ``None``, forget) the process-wide registry; for tests and embedding."""
    global _registry
    _registry = registry
