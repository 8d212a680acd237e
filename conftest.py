"""Shared fixtures for ``tests/`` and every plugin's tests.

Real-data location (skipped when absent), an isolated plugin registry, fake distributions.
"""

from __future__ import annotations

import importlib
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture
def shared_data() -> Path:
    """``../shared/data`` beside the repository; tests using it skip when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(
            f"real data not available: {SHARED_DATA} does not exist (internal test data, not shipped)"
        )
    return SHARED_DATA


@pytest.fixture(autouse=True)
def _fresh_registry(monkeypatch):
    """Each test discovers plugins anew, so environment and sys.path changes take effect."""
    from medfeat.plugins import set_registry

    monkeypatch.delenv("MEDFEAT_PLUGINS", raising=False)
    set_registry(None)
    yield
    set_registry(None)


@pytest.fixture
def fake_distribution(tmp_path, monkeypatch):
    """Install a distribution by writing real ``.dist-info`` metadata onto ``sys.path``.

    ``make(name, modules={relpath: source}, entry_points={ep_name: module})`` returns the folder.
    importlib.metadata discovers it exactly as it discovers a pip-installed package.
    """
    site = tmp_path / "site-packages"
    site.mkdir()
    monkeypatch.syspath_prepend(str(site))
    created_modules: list[str] = []

    def make(
        name: str, modules: dict[str, str], entry_points: dict[str, str], version: str = "0.1.0"
    ) -> Path:
        for rel, source in modules.items():
            path = site / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(textwrap.dedent(source))
            created_modules.append(
                rel.removesuffix(".py").replace("/__init__", "").replace("/", ".")
            )
        info = site / f"{name.replace('-', '_')}-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
        eps = "\n".join(f"{k} = {v}" for k, v in entry_points.items())
        (info / "entry_points.txt").write_text(f"[medfeat]\n{eps}\n")
        importlib.invalidate_caches()
        return site

    yield make
    for mod in created_modules:
        sys.modules.pop(mod, None)
