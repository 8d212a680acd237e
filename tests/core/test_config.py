"""Pipeline YAML: schema, component options, line-aware errors, overrides, requirements."""

import textwrap

import pytest

from medfeat.config.resolve import resolve_pipeline
from medfeat.config.source import parse_yaml
from medfeat.errors import ComponentNotFoundError, ConfigError, PluginError
from medfeat.plugins import get_registry

GOOD = """\
kind: registration
data:
  name: breathing-phantom
  shape: [16, 16, 16]
backbone:
  name: intensity
  normalise: zscore
optimiser:
  name: {optimiser}
"""


def resolve(text, overrides=None):
    return resolve_pipeline(parse_yaml(textwrap.dedent(text), "p.yaml"), get_registry(), overrides)


def test_unknown_component_names_line_suggestion_and_providers(monkeypatch):
    monkeypatch.setenv("MEDFEAT_PLUGINS", "")  # built-ins only: the list below is exact
    with pytest.raises(ComponentNotFoundError) as err:
        resolve(GOOD.replace("name: intensity", "name: intensty").format(optimiser="x"))
    msg = str(err.value)
    assert "p.yaml, line 6" in msg and "backbone.name" in msg
    assert "Did you mean 'intensity'" in msg
    assert "Available backbones: intensity" in msg and "(from medfeat)" in msg


def test_component_of_another_kind_is_named():
    with pytest.raises(ComponentNotFoundError, match="registered as a dataset, not a backbone"):
        resolve(GOOD.replace("name: intensity", "name: files").format(optimiser="x"))


def test_wrong_option_type_points_at_its_line():
    text = GOOD.replace("shape: [16, 16, 16]", "shape: [16, 16, 16]\n  spacing_mm: wide")
    with pytest.raises(ConfigError) as err:
        resolve(text.format(optimiser="x"))
    msg = str(err.value)
    assert "p.yaml, line 5" in msg and "data.spacing_mm" in msg and "'wide'" in msg


def test_unknown_option_is_refused():
    with pytest.raises(
        ConfigError, match=r"line 7 at 'backbone.normalize': unknown option 'normalize'"
    ):
        resolve(GOOD.replace("normalise: zscore", "normalize: zscore").format(optimiser="x"))


def test_missing_kind_and_unknown_kind():
    with pytest.raises(ConfigError, match="has no `kind:`"):
        resolve("data: {name: files}\n")
    with pytest.raises(ConfigError, match="Did you mean 'registration'"):
        resolve("kind: registraton\n")


def test_missing_section_is_reported():
    with pytest.raises(ConfigError, match="needs 'optimiser', which is missing"):
        resolve("kind: registration\ndata: {name: breathing-phantom}\n")


def test_requires_missing_plugin_fails_early():
    with pytest.raises(PluginError, match="requires the plugin 'medfeat-not-installed'"):
        resolve("kind: registration\nrequires: [medfeat-not-installed>=0.1]\n")
    with pytest.raises(PluginError, match="version 0.1.0 is installed"):
        resolve("kind: registration\nrequires: medfeat>=99\n")


def test_overrides_and_resolved_config(fake_distribution):
    fake_distribution(
        "medfeat-opt",
        {
            "medfeat_opt.py": """
            from medfeat import hookimpl
            from pydantic import BaseModel
            class C(BaseModel):
                steps: int = 3
            @hookimpl
            def medfeat_register_optimisers(register):
                register("opt", lambda c, ctx: None, config=C)
        """
        },
        {"opt": "medfeat_opt"},
    )
    r = resolve(
        GOOD.format(optimiser="opt"), ["optimiser.steps=7", "data.seed=4", "output.dir=elsewhere"]
    )
    d = r.to_dict()
    assert d["optimiser"] == {"name": "opt", "steps": 7}
    assert d["data"]["seed"] == 4 and d["data"]["spacing_mm"] == 3.0  # defaults are filled in
    assert d["output"]["dir"] == "elsewhere"
    with pytest.raises(ConfigError, match="command line override.*optimiser.steps"):
        resolve(GOOD.format(optimiser="opt"), ["optimiser.steps=many"])
    with pytest.raises(ConfigError, match="not of the form"):
        resolve(GOOD.format(optimiser="opt"), ["optimiser.steps"])
