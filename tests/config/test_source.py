"""YAML with source lines: merge keys, duplicate keys, the folder relative paths are relative to;
alias bombs, recursive aliases, list keys and unreadable values refused in one message."""

import re
import textwrap

import pytest

from medfeat.config.source import MAX_ALIAS_COPIES, YamlStructureError, load_yaml, parse_yaml
from medfeat.errors import ConfigError, InputFileError

BASE = """\
x-base: &base
  name: convex-adam
  grid_spacing_vox: 4
  levels: {a: 1}
optimiser:
  <<: *base
  grid_spacing_vox: 2
"""


def test_a_merge_key_copies_what_the_mapping_does_not_set():
    source = parse_yaml(BASE, "p.yaml")
    assert source.data["optimiser"] == {
        "name": "convex-adam",
        "grid_spacing_vox": 2,
        "levels": {"a": 1},
    }
    # each key has the line where its value is written: the override here, the anchor for the rest
    assert source.line_of(("optimiser", "grid_spacing_vox")) == 7
    assert source.line_of(("optimiser", "name")) == 2
    assert source.line_of(("optimiser", "levels", "a")) == 4
    # the copy is a copy: changing it leaves the anchor's mapping alone
    source.data["optimiser"]["levels"]["a"] = 5
    assert source.data["x-base"]["levels"] == {"a": 1}


def test_several_merges_earlier_ones_win():
    text = textwrap.dedent("""\
        a: &a {k: 1, only_a: true}
        b: &b {k: 2, only_b: true}
        c:
          <<: [*a, *b]
        """)
    assert parse_yaml(text).data["c"] == {"k": 1, "only_a": True, "only_b": True}


def test_a_key_written_twice_is_still_an_error_with_its_line():
    with pytest.raises(ConfigError, match=r"p.yaml, line 8 at 'optimiser.grid_spacing_vox'"):
        parse_yaml(BASE + "  grid_spacing_vox: 3\n", "p.yaml")


def test_a_merge_of_something_other_than_a_mapping_is_refused():
    with pytest.raises(ConfigError, match=r"line 2 at 'a': a merge key `<<` takes a mapping"):
        parse_yaml("a:\n  <<: 3\n", "p.yaml")


def test_a_file_knows_its_folder_and_text_has_none(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "p.yaml").write_text("kind: registration\n")
    assert load_yaml(tmp_path / "sub" / "p.yaml").folder == tmp_path / "sub"
    assert parse_yaml("kind: registration\n").folder is None


# ------------------------------------------------------------ YAML that cannot be a pipeline
def alias_bomb(levels: int = 9, fan_out: int = 9) -> str:
    """Each level's list holds ``fan_out`` aliases of the level before: fan_out**levels values."""
    text = "l0: &l0 [" + ", ".join(["lol"] * fan_out) + "]\n"
    for i in range(1, levels):
        text += f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * fan_out) + "]\n"
    return text + f"kind: *l{levels - 1}\n"


def test_an_alias_bomb_is_refused_in_one_message_without_expanding_it():
    with pytest.raises(YamlStructureError, match=r"p.yaml, line \d+ .*alias bomb") as err:
        parse_yaml(alias_bomb(), "p.yaml")  # 9**9 = 387 million values if expanded
    assert "fewer levels of aliases" in str(err.value)


def test_ordinary_aliases_are_copied_within_the_bound():
    text = "a: &a {x: [1, 2, 3]}\n" + "".join(f"b{i}: *a\n" for i in range(200))
    data = parse_yaml(text).data
    assert data["b199"] == {"x": [1, 2, 3]}
    data["b0"]["x"].append(4)  # each alias is its own copy
    assert data["b1"]["x"] == [1, 2, 3]
    assert MAX_ALIAS_COPIES >= 1000


@pytest.mark.parametrize(
    "text, where",
    [
        ("a: &a [1, *a]\n", "line 1 at 'a[1]'"),
        ("a: &a {b: {c: *a}}\n", "line 1 at 'a.b.c'"),
        ("a: &a\n  <<: *a\n  x: 1\n", "line 1 at 'a'"),
    ],
)
def test_a_recursive_alias_is_refused(text, where):
    with pytest.raises(YamlStructureError, match="recursive alias") as err:
        parse_yaml(text, "p.yaml")
    assert str(err.value).startswith(f"p.yaml, {where}: ")


@pytest.mark.parametrize(
    "text, shape", [("? [a, b]\n: 1\n", "list"), ("x:\n  {a: 1}: 2\n", "mapping")]
)
def test_a_list_or_mapping_as_a_key_is_refused(text, shape):
    with pytest.raises(YamlStructureError, match=f"a {shape} is used as a mapping key"):
        parse_yaml(text, "p.yaml")


@pytest.mark.parametrize(
    "text, expected",
    [
        ("a: !!int abc\n", "'abc' cannot be read as int"),
        ("a: !!timestamp 2020-13-45\n", "cannot be read as timestamp"),
        ("a: !!python/object/apply:os.system [ls]\n", "'!!python/object/apply:os.system' is not"),
        ("a: !!set {x, y}\n", "'!!set' is not supported"),
        ("a: " + "[" * 3000 + "]" * 3000 + "\n", "nested too deeply"),
    ],
)
def test_values_that_cannot_be_read_get_one_clear_message(text, expected):
    with pytest.raises(ConfigError, match=re.escape(expected)):
        parse_yaml(text, "p.yaml")


def test_a_huge_file_is_not_read(tmp_path, monkeypatch):
    import medfeat.config.source as source

    monkeypatch.setattr(source, "MAX_FILE_BYTES", 1000)
    path = tmp_path / "p.yaml"
    path.write_text("kind: registration\n" + "#" * 2000 + "\n")
    with pytest.raises(InputFileError, match="a pipeline is a small text file"):
        load_yaml(path)
