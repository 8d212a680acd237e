"""Pipeline YAML: schema, component options, line-aware errors, overrides, requirements, paths
relative to the pipeline file, inputs that must exist."""

import os
import textwrap
from pathlib import Path

import pytest

from medfeat.cli.main import main
from medfeat.config.resolve import resolve_pipeline
from medfeat.config.source import load_yaml, parse_yaml
from medfeat.errors import ComponentNotFoundError, ConfigError, PluginError
from medfeat.plugins import get_registry

REPO = Path(__file__).resolve().parents[2]

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
            from medfeat.api import hookimpl
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


OVERRIDE_BASE = GOOD.format(optimiser="convex-adam")


@pytest.mark.parametrize(
    "override, expected",
    [
        # a key the override created: blamed on the override, not on a line of the file
        ("a.b.c=1", "command line override 'a.b.c=1' at 'a': unknown option 'a'"),
        ("data.b.c=1", "command line override 'data.b.c=1' at 'data.b': unknown option 'b'"),
        ("kind=[registration]", "command line override 'kind=[registration]' at 'kind': `kind` "),
        ("requires=3", "command line override 'requires=3' at 'requires[0]': 3 is not a valid"),
        ("data.name.x=1", "'data.name.x=1': data.name is the value 'breathing-phantom', not a"),
        ("data.shape.7=1", "'data.shape.7=1': data.shape is a list of 3 item(s); it has no item 7"),
        ("feature_transforms.0.name=x", "feature_transforms is not in the pipeline, so it has no"),
        ("optimiser.steps", "override 'optimiser.steps' is not of the form key.path=value"),
        ("optimiser.a..b=1", "the key 'optimiser.a..b' has an empty part"),
        ("optimiser.x=&a [*a]", "'optimiser.x=&a [*a]': a recursive alias"),
    ],
)
def test_bad_overrides_are_blamed_on_the_override(override, expected):
    with pytest.raises(ConfigError) as err:
        resolve(OVERRIDE_BASE, [override])
    message = str(err.value)
    assert expected in message
    assert "p.yaml" not in message  # the file is not at fault


def test_a_section_check_after_an_override_names_the_override(fake_distribution):
    fake_distribution(
        "medfeat-pairwise",
        {
            "medfeat_pairwise.py": """
            from pydantic import model_validator
            from medfeat.api import ConfigModel, hookimpl
            class C(ConfigModel):
                low: int = 1
                high: int = 2
                @model_validator(mode="after")
                def _ordered(self):
                    if self.low > self.high:
                        raise ValueError("low must not exceed high")
                    return self
            @hookimpl
            def medfeat_register_optimisers(register):
                register("pairwise", lambda c, ctx: None, config=C)
        """
        },
        {"pairwise": "medfeat_pairwise"},
    )
    with pytest.raises(ConfigError) as err:
        resolve(GOOD.format(optimiser="pairwise"), ["optimiser.low=5"])
    message = str(err.value)
    assert message.startswith("p.yaml, line 8 at 'optimiser': low must not exceed high")
    assert "after the command line override 'optimiser.low=5'" in message


def test_unknown_options_suggest_close_names():
    with pytest.raises(
        ConfigError,
        match="command line override 'optimiser.adam_iteration=3' at 'optimiser.adam_iteration'",
    ) as err:
        resolve(GOOD.format(optimiser="convex-adam"), ["optimiser.adam_iteration=3"])
    assert "Did you mean 'adam_iterations'?" in str(err.value)
    # inside a nested model: the suggestion comes from that model's options
    text = (
        "kind: registration\ndata: {name: files, fixed: f, moving: m, fixed_landmarks: {pth: x}}\n"
    )
    with pytest.raises(ConfigError, match=r"fixed_landmarks.pth'.*Did you mean 'path'\?"):
        resolve(text + "optimiser: {name: convex-adam}\n")
    # no close name: the options are listed
    with pytest.raises(ConfigError, match="its options are: normalise, window_min"):
        resolve(GOOD.replace("normalise: zscore", "zzz: 1").format(optimiser="convex-adam"))


def test_merge_keys_and_extension_fields():
    text = GOOD.format(optimiser="convex-adam") + (
        "x-features: &mind {name: mind-ssc, radius_mm: 1, dilation_mm: 2}\nfeature_transforms: []\n"
    )
    text = text.replace("backbone:\n  name: intensity\n  normalise: zscore\n", "")
    text += "backbone:\n  <<: *mind\n  dilation_mm: 3\n"
    backbone = resolve(text).to_dict()["backbone"]
    assert (backbone["name"], backbone["radius_mm"], backbone["dilation_mm"]) == (
        "mind-ssc",
        1,
        3,
    )
    with pytest.raises(ConfigError, match="line 12 at 'backbone.radius_m'.*'radius_mm'"):
        resolve(text + "  radius_m: 2\n")


# ------------------------------------------------------------------ paths and inputs
NESTED_PLUGIN = """
from pathlib import Path
from pydantic import Field
from medfeat.api import ComponentRef, ConfigModel, OutputPath, hookimpl, nested_component

class WeightsConfig(ConfigModel):
    checkpoint: Path = Field(description="Weights file.")

class TrainerConfig(ConfigModel):
    coordinates: nested_component("coordinate_provider") = Field(
        default_factory=lambda: ComponentRef(name="weights"), description="Coordinates.")
    log_dir: OutputPath | None = Field(None, description="Written by the run.")

@hookimpl
def medfeat_register_coordinate_providers(register):
    register("weights", lambda c, ctx: None, config=WeightsConfig)

@hookimpl
def medfeat_register_pretrainers(register):
    register("trainer", lambda c, ctx: None, config=TrainerConfig)
"""


@pytest.fixture
def project(tmp_path, monkeypatch, fake_distribution):
    """A pipeline in ``project/pipelines`` naming images in ``project/images``; cwd elsewhere."""
    from medfeat.io.images import write_image
    from medfeat.phantoms import breathing_phantom

    fake_distribution(
        "medfeat-nested", {"medfeat_nested.py": NESTED_PLUGIN}, {"n": "medfeat_nested"}
    )
    root = tmp_path / "project"
    (root / "images").mkdir(parents=True)
    (root / "pipelines").mkdir()
    pair = breathing_phantom((8, 8, 8), 4.0)
    write_image(pair.fixed, root / "images" / "f.nii.gz")
    write_image(pair.moving, root / "images" / "m.nii.gz")
    (root / "images" / "w.pt").write_bytes(b"")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    return root


def write_pipeline(root: Path, text: str) -> Path:
    path = root / "pipelines" / "p.yaml"
    path.write_text(textwrap.dedent(text))
    return path


REGISTRATION = """\
kind: registration
data: {name: files, fixed: ../images/f.nii.gz, moving: ../images/m.nii.gz}
optimiser: {name: convex-adam}
output: {dir: results}
"""


def test_relative_paths_are_relative_to_the_pipeline_file(project):
    path = write_pipeline(project, REGISTRATION)
    resolved = resolve_pipeline(load_yaml(path), get_registry())
    data = resolved.components["data"].config
    assert data.fixed == project / "images" / "f.nii.gz"
    assert data.fixed.is_absolute() and data.fixed.is_file()
    assert resolved.pipeline.output.dir == project / "pipelines" / "results"
    assert resolved.inputs == {"data.fixed": data.fixed, "data.moving": data.moving}
    assert resolved.to_dict()["data"]["moving"] == str(project / "images" / "m.nii.gz")


def test_paths_inside_nested_models_and_nested_components_too(project):
    path = write_pipeline(
        project,
        """\
        kind: pretraining
        data: {name: files, fixed: ../images/f.nii.gz, moving: ../images/m.nii.gz,
               fixed_landmarks: {path: ../images/f.nii.gz}}
        pretrainer:
          name: trainer
          coordinates: {name: weights, checkpoint: ../images/w.pt}
          log_dir: logs
        """,
    )
    resolved = resolve_pipeline(load_yaml(path), get_registry())
    assert resolved.components["data"].config.fixed_landmarks.path.is_file()
    trainer = resolved.components["pretrainer"].config
    assert trainer.coordinates.options["checkpoint"] == str(project / "images" / "w.pt")
    assert trainer.log_dir == project / "pipelines" / "logs"  # an output: not checked
    assert set(resolved.inputs) == {
        "data.fixed",
        "data.moving",
        "data.fixed_landmarks.path",
        "pretrainer.coordinates.checkpoint",
    }


def test_command_line_paths_are_relative_to_the_working_directory(project):
    path = write_pipeline(project, REGISTRATION)
    os.chdir(project)
    resolved = resolve_pipeline(
        load_yaml(path),
        get_registry(),
        ["data.moving=images/m.nii.gz", "output.dir=out"],
    )
    assert resolved.components["data"].config.moving == Path("images/m.nii.gz")
    assert resolved.components["data"].config.fixed == project / "images" / "f.nii.gz"
    assert resolved.pipeline.output.dir == Path("out")
    # a whole section from the command line (as `medfeat bench --root` gives it)
    resolved = resolve_pipeline(
        load_yaml(path),
        get_registry(),
        ["data={name: files, fixed: images/f.nii.gz, moving: images/m.nii.gz}"],
    )
    assert resolved.components["data"].config.fixed == Path("images/f.nii.gz")


def test_a_missing_input_names_its_line_key_and_how_it_was_read(project):
    path = write_pipeline(project, REGISTRATION.replace("m.nii.gz", "gone.nii.gz"))
    with pytest.raises(ConfigError) as err:
        resolve_pipeline(load_yaml(path), get_registry())
    msg = " ".join(str(err.value).split())
    assert f"{path}, line 2 at 'data.moving'" in msg
    assert f"{project / 'images' / 'gone.nii.gz'} does not exist" in msg
    assert "written '../images/gone.nii.gz'" in msg and str(project / "pipelines") in msg
    assert "data.moving=/path/to/it" in msg
    # from the command line: relative to the working directory, and it says so
    with pytest.raises(
        ConfigError,
        match="command line override 'data.moving=m.nii.gz' at 'data.moving'.*working directory",
    ):
        resolve_pipeline(load_yaml(path), get_registry(), ["data.moving=m.nii.gz"])
    # a nested component's input is checked as well
    nested = write_pipeline(
        project,
        """\
        kind: pretraining
        data: {name: files, fixed: ../images/f.nii.gz, moving: ../images/m.nii.gz}
        pretrainer: {name: trainer, coordinates: {name: weights, checkpoint: nope.pt}}
        """,
    )
    with pytest.raises(ConfigError, match="line 3 at 'pretrainer.coordinates.checkpoint'"):
        resolve_pipeline(load_yaml(nested), get_registry())
    # the check can be left out (e.g. to read the configuration of a finished run)
    resolve_pipeline(load_yaml(path), get_registry(), check_inputs=False)


def test_validate_checks_inputs_from_any_working_directory(project, capsys):
    path = write_pipeline(project, REGISTRATION)
    assert main(["validate", str(path)]) == 0
    assert "its inputs exist: data.fixed, data.moving" in capsys.readouterr().out
    (project / "images" / "f.nii.gz").unlink()
    assert main(["validate", str(path)]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "line 2 at 'data.fixed'" in err and "does not exist" in err


EXAMPLES = sorted(REPO.glob("examples/*.yaml")) + sorted(REPO.glob("plugins/*/examples/*.yaml"))


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: str(p.relative_to(REPO)))
def test_every_example_is_valid_from_another_folder(path, tmp_path, monkeypatch):
    """Schema and options only: the examples' data and weights are not shipped."""
    monkeypatch.chdir(tmp_path)
    resolved = resolve_pipeline(load_yaml(path), get_registry(), check_inputs=False)
    for key, value in resolved.inputs.items():
        assert value.is_absolute(), f"{key} = {value} is relative to the working directory"


# ------------------------------------------------------------------ nested components
DEEP_PLUGIN = """
from pydantic import BaseModel, Field
from medfeat.api import ComponentRef, hookimpl, nested_component

class InnerCfg(BaseModel, extra="forbid"):
    stride: int = 1

class Deeper(BaseModel, extra="forbid"):
    helper: nested_component("pretrainer") = Field(default_factory=lambda: ComponentRef(name="inner"))

class OuterCfg(BaseModel, extra="forbid"):
    inner: nested_component("pretrainer") = Field(default_factory=lambda: ComponentRef(name="inner"))
    deeper: Deeper = Field(default_factory=Deeper)
    maybe: nested_component("pretrainer") | None = None
    several: list[nested_component("pretrainer")] = []
    named: dict[str, nested_component("pretrainer")] = {}

@hookimpl
def medfeat_register_pretrainers(register):
    register("inner", lambda c, ctx: None, config=InnerCfg)
    register("outer", lambda c, ctx: None, config=OuterCfg)
"""


def test_components_named_inside_a_component_are_validated_with_their_yaml_line(
    fake_distribution, tmp_path, capsys
):
    fake_distribution("medfeat-deep", {"medfeat_deep.py": DEEP_PLUGIN}, {"d": "medfeat_deep"})
    cases = {
        "inner: {name: innr}": ("line 5", "'pretrainer.inner.name'", "Did you mean 'inner'"),
        "inner: {name: inner, strides: 2}": ("line 5", "'pretrainer.inner.strides'", "unknown option"),
        "deeper: {helper: {name: inner, stride: x}}": ("line 5", "pretrainer.deeper.helper.stride", "integer"),
        "maybe: {name: iner}": ("line 5", "'pretrainer.maybe.name'", "Did you mean 'inner'"),
        "several: [{name: inner}, {name: inner, strid: 1}]": ("line 5", "pretrainer.several[1].strid", "unknown option"),
        "named: {a: {name: inner, strid: 1}}": ("line 5", "pretrainer.named.a.strid", "unknown option"),
    }  # fmt: skip
    for i, (section, expected) in enumerate(cases.items()):
        path = tmp_path / f"p{i}.yaml"
        path.write_text(
            f"kind: pretraining\ndata: {{name: breathing-phantom}}\npretrainer:\n  name: outer\n  {section}\n"
        )
        assert main(["validate", str(path)]) == 2
        err = " ".join(capsys.readouterr().err.split())
        for text in expected:
            assert text in err, (section, text, err)
    ok = tmp_path / "ok.yaml"
    ok.write_text("kind: pretraining\ndata: {name: breathing-phantom}\npretrainer: {name: outer}\n")
    assert main(["validate", str(ok)]) == 0
