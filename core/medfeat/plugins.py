"""Plugin discovery through entry points, robust to broken plugins.

Every module named in the ``medfeat`` entry-point group is a plugin, the built-ins included
(``builtins = "medfeat.builtins"``). A plugin that fails to import or to register is skipped and
recorded; ``medfeat plugins`` and unknown-component errors report it.

``MEDFEAT_PLUGINS`` limits which *external* plugins load: unset loads all, an empty string loads
none, otherwise a comma-separated list of distribution names (e.g. ``medfeat-dinov3``).
"""

from __future__ import annotations

import os
import traceback
from collections.abc import Iterable
from importlib.metadata import EntryPoint, entry_points
from types import ModuleType

import pluggy

from medfeat import hookspecs
from medfeat.registry import KINDS, LoadProblem, Registry

ENTRY_POINT_GROUP = "medfeat"
CORE_DISTRIBUTION = "medfeat"

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
    frames = traceback.extract_tb(exc.__traceback__)
    where = f" ({frames[-1].filename}:{frames[-1].lineno})" if frames else ""
    return f"{type(exc).__name__}: {exc}{where}"


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
    for ep in eps:
        dist_name, version = _entry_point_distribution(ep)
        is_core = dist_name == CORE_DISTRIBUTION
        if not is_core and allowed is not None and dist_name.lower() not in allowed:
            continue
        if pm.has_plugin(dist_name) or pm.get_plugin(dist_name) is not None:
            continue
        try:
            module = ep.load()
            pm.register(module, name=dist_name)
        except Exception as exc:  # a broken plugin must not take the tool down
            registry.problems.append(
                LoadProblem(dist_name, f"failed to import {ep.value!r}: {_short_error(exc)}")
            )
            continue
        registry.plugins[dist_name] = version
    for name, module in extra_plugins:
        pm.register(module, name=name)
        registry.plugins[name] = getattr(module, "__version__", "in-process")

    for kind, (hook_name, _) in KINDS.items():
        for impl in getattr(
            pm.hook, hook_name
        ).get_hookimpls():  # registration order: built-ins first
            register = registry.register_callback(kind, impl.plugin_name)
            try:
                impl.function(register=register)
            except Exception as exc:
                registry.problems.append(
                    LoadProblem(impl.plugin_name, f"{hook_name} raised {_short_error(exc)}")
                )
    registry.plugin_manager = pm
    return registry


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
