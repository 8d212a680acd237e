"""The public API: plugins import medfeat only through ``medfeat.api``, and it stays light."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import medfeat.api as api

ROOT = Path(__file__).resolve().parents[1]
PLUGIN_SOURCES = sorted(ROOT.glob("plugins/*/src")) + [ROOT / "examples/plugin-template/src"]


def private_imports(path: Path) -> list[str]:
    """``file:line module`` for each import of a medfeat module other than ``medfeat.api``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules = [node.module]
        elif isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        else:
            continue
        for module in modules:
            if module.split(".")[0] == "medfeat" and module != "medfeat.api":
                found.append(f"{path.relative_to(ROOT)}:{node.lineno} {module}")
    return found


def test_the_rule_checker_finds_private_imports(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text(
        "import medfeat.io\nfrom medfeat import hookimpl\nfrom medfeat.api import Grid\n"
        "def f():\n    from medfeat.cli.main import console\n"
    )
    bad = bad.rename(ROOT / "tests" / f".tmp_{tmp_path.name}.py")
    try:
        modules = [hit.split()[-1] for hit in private_imports(bad)]
    finally:
        bad.unlink()
    assert modules == ["medfeat.io", "medfeat", "medfeat.cli.main"]


@pytest.mark.parametrize("src", PLUGIN_SOURCES, ids=lambda p: p.parent.name)
def test_plugins_import_medfeat_only_through_the_public_api(src):
    assert src.is_dir()
    hits = [hit for path in sorted(src.rglob("*.py")) for hit in private_imports(path)]
    assert not hits, "import these from medfeat.api instead:\n" + "\n".join(hits)


def test_every_exported_name_resolves_and_is_listed():
    assert sorted(api.__all__) == api.__all__
    for name in api.__all__:
        assert getattr(api, name) is not None, name
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        api.nope  # noqa: B018


def test_importing_the_api_pulls_in_neither_torch_nor_model_code():
    code = "import sys, medfeat.api; from medfeat.api import hookimpl, ConfigModel, Grid; print(sorted(m for m in ('torch', 'monai', 'SimpleITK') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
