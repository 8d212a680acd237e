"""YAML with source lines: merge keys, duplicate keys, the folder relative paths are relative to."""

import textwrap

import pytest

from medfeat.config.source import load_yaml, parse_yaml
from medfeat.errors import ConfigError

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
