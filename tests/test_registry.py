"""The component registry: naming rules, duplicates, aliases and helpful not-found errors."""

import pytest
from pydantic import BaseModel

from medfeat.errors import ComponentNotFoundError
from medfeat.plugins import build_registry
from medfeat.registry import Component, Registry


class Options(BaseModel):
    size_vox: int = 1


def component(name, plugin="medfeat-a", kind="backbone", aliases=()):
    return Component(kind, name, lambda c, x: c, Options, "", plugin, tuple(aliases))


def test_duplicate_names_are_refused_with_a_reason(fake_distribution):
    fake_distribution(
        "medfeat-dup",
        {
            "medfeat_dup.py": "from medfeat.api import hookimpl\n@hookimpl\ndef medfeat_register_backbones(register):\n    register('intensity', lambda c, x: None)\n    register('Bad Name', lambda c, x: None)\n"
        },
        {"dup": "medfeat_dup"},
    )
    reg = build_registry()
    assert reg.get("backbone", "intensity").plugin == "medfeat"
    messages = " ".join(p.message for p in reg.problems if p.plugin == "medfeat-dup")
    assert "already registered by medfeat" in messages and "kebab-case" in messages


def test_aliases_resolve_and_a_name_taken_by_an_alias_is_refused():
    reg = Registry()
    reg.add(component("mind-ssc", aliases=("mind",)))
    reg.add(component("mind", plugin="medfeat-b"))
    assert reg.get("backbone", "mind").name == "mind-ssc"
    assert reg.names("backbone") == ["mind-ssc"]
    assert "already registered by medfeat-a" in reg.problems[0].message


def test_a_config_that_is_not_a_pydantic_model_is_refused():
    reg = Registry()
    reg.add(Component("backbone", "plain", lambda c, x: c, dict, "", "medfeat-a"))
    assert reg.names("backbone") == []
    assert "config must be a pydantic model class" in reg.problems[0].message


def test_not_found_suggests_close_names_and_the_kind_a_name_belongs_to():
    reg = Registry()
    reg.add(component("intensity"))
    reg.add(component("feature-matcher", kind="matcher"))
    with pytest.raises(ComponentNotFoundError) as err:
        reg.get("backbone", "intensty")
    assert "Did you mean 'intensity'?" in str(err.value)
    assert "Available backbones: intensity (from medfeat-a)" in str(err.value)
    with pytest.raises(ComponentNotFoundError, match="registered as a matcher, not a backbone"):
        reg.get("backbone", "feature-matcher")


def test_build_validates_the_options_before_calling_the_factory():
    comp = component("intensity")
    assert comp.build({"size_vox": 3}, None) == Options(size_vox=3)
    with pytest.raises(ValueError, match="size_vox"):
        comp.build({"size_vox": "three"}, None)
