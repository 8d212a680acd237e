"""The component registry: naming rules, duplicates, aliases and helpful not-found errors."""

import pytest
from pydantic import BaseModel

from medfeat.errors import ComponentNotFoundError, ConfigError, PluginFailure
from medfeat.plugins import build_registry
from medfeat.registry import Component, Registry


class Options(BaseModel):  # a plain pydantic model, as a plugin may use
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
    with pytest.raises(ConfigError, match="backbone 'intensity' at 'size_vox'"):
        comp.build({"size_vox": "three"}, None)
    with pytest.raises(ConfigError, match="boolean"):  # the ConfigModel rules, for any model
        comp.build({"size_vox": True}, None)


# ------------------------------------------------------------ one namespace for names and aliases
ALIAS_PLUGIN = """
from medfeat.api import hookimpl

def make(config, context):
    raise AssertionError("the plugin's optimiser must never be built here")

@hookimpl(trylast=True)  # asks to register before the built-ins: it must not matter
def medfeat_register_optimisers(register):
    register("my-opt", make, aliases=["convex-adam", "myo"])
    register("other-opt", make, aliases=("myo", "Bad Alias"))
    register("convex-adam", make)

@hookimpl
def medfeat_register_backbones(register):
    register(3, make)
    register("not-callable", "make")
    register("still-registered", make, aliases="sr")
"""


def test_an_alias_cannot_take_a_registered_name_or_another_alias(fake_distribution, capsys):
    fake_distribution(
        "medfeat-alias", {"medfeat_alias.py": ALIAS_PLUGIN}, {"alias": "medfeat_alias"}
    )
    reg = build_registry()
    # the built-in keeps its name; the plugin's components keep theirs and their free aliases
    assert reg.get("optimiser", "convex-adam").plugin == "medfeat"
    assert reg.get("optimiser", "myo").name == "my-opt"
    assert reg.get("optimiser", "other-opt").aliases == ()
    assert reg.get("backbone", "sr").name == "still-registered"  # one alias given as text
    problems = [p.message for p in reg.problems if p.plugin == "medfeat-alias"]
    text = "\n".join(problems)
    assert (
        "the alias 'convex-adam' of deformable optimiser 'my-opt' is already taken by medfeat"
        in text
    )
    assert (
        "the alias 'myo' of deformable optimiser 'other-opt' is already taken by medfeat-alias (an alias of 'my-opt')"
        in text
    )
    assert "'Bad Alias' of deformable optimiser 'other-opt' is not a lower-case kebab-case" in text
    assert "deformable optimiser 'convex-adam' is already registered by medfeat" in text
    # a bad registration is skipped; the rest of the hook still registers
    assert "backbone 3: the name must be text; skipped" in text
    assert "backbone 'not-callable': the factory is not callable; skipped" in text

    from medfeat.cli.main import main
    from medfeat.plugins import set_registry

    set_registry(reg)
    assert main(["plugins"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "Load problems:" in out and "No load failures" not in out
    assert "medfeat-alias: the alias 'convex-adam' of deformable optimiser 'my-opt'" in out


def test_a_registered_name_wins_over_an_alias_added_to_the_registry_directly():
    reg = Registry()
    reg.add(component("mind-ssc"))
    reg.aliases["backbone"]["mind-ssc"] = "other"  # even a corrupted alias table cannot shadow it
    assert reg.get("backbone", "mind-ssc").name == "mind-ssc"


# ------------------------------------------------------------ a factory that fails is blamed on its plugin
def test_a_failing_plugin_factory_names_the_plugin_and_the_component():
    def broken(config, context):
        raise ZeroDivisionError("division by zero in the plugin")

    comp = Component("matcher", "fragile", broken, Options, "", "medfeat-fragile")
    with pytest.raises(PluginFailure) as err:
        comp.build({}, None)
    message = str(err.value)
    assert (
        "the matcher 'fragile' of the plugin medfeat-fragile failed while it was being built"
        in message
    )
    assert "ZeroDivisionError: division by zero in the plugin" in message
    assert "pip uninstall medfeat-fragile" in message and "a bug" not in message
    assert err.value.exit_code == 1

    def exits(config, context):
        raise SystemExit(3)

    with pytest.raises(PluginFailure, match=r"it called sys.exit\(3\)"):
        Component("matcher", "exits", exits, Options, "", "medfeat-fragile").build({}, None)

    def user_error(config, context):
        raise ConfigError("the plugin's own clear message")

    with pytest.raises(ConfigError, match="the plugin's own clear message"):  # passed through
        Component("matcher", "clear", user_error, Options, "", "medfeat-fragile").build({}, None)
    # medfeat's own components are not blamed on a plugin: that is a medfeat bug
    with pytest.raises(ZeroDivisionError):
        Component("matcher", "core", broken, Options, "", "medfeat").build({}, None)
