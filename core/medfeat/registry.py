"""The component registry: names, kinds, duplicates and "did you mean" suggestions."""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from pydantic import BaseModel, ValidationError

from medfeat.config.base import NoOptions, validate_options
from medfeat.errors import ComponentNotFoundError, ConfigError, MedfeatError, PluginFailure

#: The plugin (distribution) name of medfeat's own, built-in components.
CORE_PLUGIN = "medfeat"

#: kind id -> (hook name, human name)
KINDS: dict[str, tuple[str, str]] = {
    "backbone": ("medfeat_register_backbones", "backbone"),
    "feature_transform": ("medfeat_register_feature_transforms", "feature transform"),
    "similarity": ("medfeat_register_similarities", "similarity measure"),
    "regulariser": ("medfeat_register_regularisers", "regulariser"),
    "matcher": ("medfeat_register_matchers", "matcher"),
    "aligner": ("medfeat_register_aligners", "pre-alignment"),
    "optimiser": ("medfeat_register_optimisers", "deformable optimiser"),
    "segmentation_head": ("medfeat_register_segmentation_heads", "segmentation head"),
    "pretrainer": ("medfeat_register_pretrainers", "pretrainer"),
    "coordinate_provider": ("medfeat_register_coordinate_providers", "coordinate provider"),
    "dataset": ("medfeat_register_datasets", "dataset"),
}

_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]*$")


@dataclass(frozen=True)
class Component:
    """One registered component: how to build it and how to validate its YAML section."""

    kind: str
    name: str
    factory: Callable[[Any, Any], Any]
    config: type[BaseModel]
    summary: str
    plugin: str
    aliases: tuple[str, ...] = ()
    #: Pipeline sections this component consumes besides its own, e.g. ``("similarity", "regulariser")``
    #: for a deformable optimiser that takes any registered similarity measure and regulariser.
    accepts: tuple[str, ...] = ()

    def build(self, config: BaseModel | dict | None, context: Any) -> Any:
        """Validate ``config`` (if a dict) and call the factory.

        Invalid options are a :class:`ConfigError`. A plugin's factory that fails with anything
        but a :class:`MedfeatError` (or running out of memory) is a :class:`PluginFailure` that
        names the plugin and the component: the fault is the plugin's, not the user's or medfeat's.
        """
        human = KINDS[self.kind][1]
        if not isinstance(config, self.config):
            try:
                config = validate_options(self.config, config or {})
            except ValidationError as exc:
                err = exc.errors()[0]
                where = ".".join(str(p) for p in err["loc"])
                raise ConfigError(
                    f"invalid options for the {human} {self.name!r}"
                    + (f" at '{where}'" if where else "")
                    + f": {err['msg']}.",
                    remedy=f"`medfeat components {self.kind}` lists its options.",
                ) from None
        try:
            return self.factory(config, context)
        except (MedfeatError, MemoryError):
            raise
        except (Exception, SystemExit) as exc:
            if self.plugin == CORE_PLUGIN or "out of memory" in str(exc).lower():
                raise
            raise self.failure(exc, "while it was being built") from exc

    def failure(self, exc: BaseException, when: str) -> PluginFailure:
        """The :class:`PluginFailure` of this component's plugin for ``exc``."""
        human = KINDS[self.kind][1]
        return plugin_failure(
            self.plugin, exc, f"the {human} {self.name!r} of the plugin {self.plugin} failed {when}"
        )


def plugin_failure(plugin: str, exc: BaseException, what: str) -> PluginFailure:
    """A :class:`PluginFailure`: ``what`` (a sentence that names ``plugin``) failed with ``exc``."""
    if isinstance(exc, SystemExit):
        reason = f"it called sys.exit({exc.code!r})"
    else:
        text = " ".join(str(exc).split())
        reason = f"{type(exc).__name__}: {text[:300]}" if text else type(exc).__name__
    return PluginFailure(
        f"{what}: {reason}. This is a fault in that plugin, not in your pipeline or in medfeat.",
        remedy=f"Update the plugin (pip install -U {plugin}), or uninstall it "
        f"(pip uninstall {plugin}) and use another component, and report the problem to its "
        "authors; rerun with --debug for the traceback.",
    )


@dataclass
class LoadProblem:
    """A plugin that failed to import or register, or a rejected registration."""

    plugin: str
    message: str


@dataclass
class Registry:
    """All components by kind. Owns naming rules, duplicate detection and suggestions."""

    components: dict[str, dict[str, Component]] = field(
        default_factory=lambda: {k: {} for k in KINDS}
    )
    aliases: dict[str, dict[str, str]] = field(default_factory=lambda: {k: {} for k in KINDS})
    problems: list[LoadProblem] = field(default_factory=list)
    plugins: dict[str, str] = field(default_factory=dict)  # plugin (distribution) name -> version
    #: top-level module name -> plugin, for each plugin but the core (to blame a traceback)
    modules: dict[str, str] = field(default_factory=dict)
    plugin_manager: Any = None

    def register_callback(self, kind: str, plugin: str) -> Callable[..., None]:
        """The ``register`` callback handed to a plugin's hook for ``kind``."""

        human = KINDS[kind][1]

        def register(
            name: str,
            factory: Callable[[Any, Any], Any],
            *,
            config: type[BaseModel] | None = None,
            summary: str = "",
            aliases: tuple[str, ...] | list[str] = (),
            accepts: tuple[str, ...] | list[str] = (),
        ) -> None:
            def refuse(why: str) -> None:
                self.problems.append(LoadProblem(plugin, f"{human} {name!r}: {why}; skipped."))

            if not isinstance(name, str):
                return refuse("the name must be text")
            if not callable(factory):
                return refuse("the factory is not callable")
            aliases = (aliases,) if isinstance(aliases, str) else aliases
            accepts = (accepts,) if isinstance(accepts, str) else accepts
            try:
                aliases, accepts = tuple(aliases or ()), tuple(accepts or ())
            except TypeError:
                return refuse("`aliases` and `accepts` must be lists of names")
            text = summary.strip() if isinstance(summary, str) else ""
            self.add(
                Component(
                    kind=kind,
                    name=name,
                    factory=factory,
                    config=config or NoOptions,
                    summary=text.splitlines()[0] if text else "",
                    plugin=plugin,
                    aliases=aliases,
                    accepts=accepts,
                )
            )

        return register

    def add(self, component: Component) -> None:
        """Add a component; a duplicate name is refused and recorded as a load problem."""
        kind, name = component.kind, component.name
        if kind not in KINDS:
            raise ValueError(f"Unknown component kind {kind!r}; kinds are {sorted(KINDS)}.")
        if not _NAME_RE.match(name):
            self.problems.append(
                LoadProblem(
                    component.plugin,
                    f"{KINDS[kind][1]} name {name!r} is not lower-case kebab-case; skipped.",
                )
            )
            return
        if not (isinstance(component.config, type) and issubclass(component.config, BaseModel)):
            self.problems.append(
                LoadProblem(
                    component.plugin,
                    f"{KINDS[kind][1]} {name!r}: config must be a pydantic model class; skipped.",
                )
            )
            return
        human = KINDS[kind][1]
        taken = self._owner(kind, name)
        if taken is not None:
            self.problems.append(
                LoadProblem(
                    component.plugin,
                    f"{human} {name!r} is already registered by {taken}; this registration "
                    "was ignored.",
                )
            )
            return
        accepted: list[str] = []
        for alias in component.aliases:
            owner = self._owner(kind, alias) if isinstance(alias, str) else None
            if alias == name or alias in accepted:
                continue
            if not isinstance(alias, str) or not _NAME_RE.match(alias):
                why = "is not a lower-case kebab-case name"
            elif owner is not None:
                why = f"is already taken by {owner}"
            else:
                accepted.append(alias)
                continue
            self.problems.append(
                LoadProblem(
                    component.plugin,
                    f"the alias {alias!r} of {human} {name!r} {why}; the alias was refused "
                    "(names and aliases of one kind share one namespace).",
                )
            )
        if tuple(accepted) != component.aliases:
            component = replace(component, aliases=tuple(accepted))
        self.components[kind][name] = component
        for alias in accepted:
            self.aliases[kind][alias] = name

    def _owner(self, kind: str, name: str) -> str | None:
        """Who holds ``name`` in the namespace of ``kind`` (a component name or an alias), in
        words, or ``None`` when it is free."""
        if name in self.components[kind]:
            return self.components[kind][name].plugin
        target = self.aliases[kind].get(name)
        if target is not None:
            return f"{self.components[kind][target].plugin} (an alias of {target!r})"
        return None

    # ---------------------------------------------------------------- lookup
    def names(self, kind: str) -> list[str]:
        return sorted(self.components[kind])

    def providers(self, kind: str) -> list[str]:
        """Plugins that provide at least one component of ``kind``."""
        return sorted({c.plugin for c in self.components[kind].values()})

    def get(
        self,
        kind: str,
        name: str,
        *,
        source: str | None = None,
        line: int | None = None,
        key_path: str | None = None,
    ) -> Component:
        """The component ``name`` of ``kind``, or a :class:`ComponentNotFoundError` that helps."""
        if name in self.components[kind]:  # a registered name is never shadowed by an alias
            return self.components[kind][name]
        name = self.aliases[kind].get(name, name)
        try:
            return self.components[kind][name]
        except KeyError:
            raise ComponentNotFoundError(
                self.not_found_message(kind, name),
                source=source,
                line=line,
                key_path=key_path,
                remedy=self.not_found_remedy(kind),
            ) from None

    def not_found_message(self, kind: str, name: str) -> str:
        human = KINDS[kind][1]
        msg = f"there is no {human} named {name!r}."
        close = difflib.get_close_matches(
            name, list(self.components[kind]) + list(self.aliases[kind]), n=3, cutoff=0.5
        )
        if close:
            msg += " Did you mean " + " or ".join(repr(c) for c in close) + "?"
        other = [k for k in KINDS if k != kind and name in self.components[k]]
        if other:
            msg += f" {name!r} is registered as a {KINDS[other[0]][1]}, not a {human}."
        available = self.names(kind)
        msg += f" Available {human}s: {', '.join(available) if available else 'none'}"
        providers = self.providers(kind)
        if providers:
            msg += f" (from {', '.join(providers)})"
        msg += "."
        if self.problems:
            failed = sorted({p.plugin for p in self.problems})
            msg += f" Plugins that failed to load: {', '.join(failed)} (see `medfeat plugins`)."
        return msg

    @staticmethod
    def not_found_remedy(kind: str) -> str:
        return f"Fix the name, or install the plugin that provides it; `medfeat components {kind}` lists what is installed."


def build_component(ref: Any, kind: str, context: Any, *, key_path: str | None = None) -> Any:
    """Build the component named in a nested section (a :func:`~medfeat.config.schema.nested_component`
    field, ``{name: ..., options}``) through the process-wide registry.

    ``key_path`` (e.g. ``"coordinates.name"``) is named in the error when the name is unknown.
    """
    from medfeat.plugins import get_registry

    entry = get_registry().get(kind, ref.name, key_path=key_path)
    return entry.build(ref.options, context)
