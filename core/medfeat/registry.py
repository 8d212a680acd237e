"""The component registry: names, kinds, duplicates and "did you mean" suggestions."""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from medfeat.config.base import NoOptions
from medfeat.errors import ComponentNotFoundError

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
        """Validate ``config`` (if a dict) and call the factory."""
        if not isinstance(config, self.config):
            config = self.config.model_validate(config or {})
        return self.factory(config, context)


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
    plugin_manager: Any = None

    def register_callback(self, kind: str, plugin: str) -> Callable[..., None]:
        """The ``register`` callback handed to a plugin's hook for ``kind``."""

        def register(
            name: str,
            factory: Callable[[Any, Any], Any],
            *,
            config: type[BaseModel] | None = None,
            summary: str = "",
            aliases: tuple[str, ...] | list[str] = (),
            accepts: tuple[str, ...] | list[str] = (),
        ) -> None:
            self.add(
                Component(
                    kind=kind,
                    name=name,
                    factory=factory,
                    config=config or NoOptions,
                    summary=summary.strip().splitlines()[0] if summary.strip() else "",
                    plugin=plugin,
                    aliases=tuple(aliases),
                    accepts=tuple(accepts),
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
        taken = self.components[kind].get(name) or self.components[kind].get(
            self.aliases[kind].get(name, "")
        )
        if taken is not None:
            self.problems.append(
                LoadProblem(
                    component.plugin,
                    f"{KINDS[kind][1]} {name!r} is already registered by {taken.plugin}; this registration was ignored.",
                )
            )
            return
        self.components[kind][name] = component
        for alias in component.aliases:
            self.aliases[kind].setdefault(alias, name)

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
