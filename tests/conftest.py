"""Fixtures shared by the core tests (the repository's conftest.py adds the plugin-wide ones)."""

from __future__ import annotations

import tempfile

import pytest
from hypothesis import settings
from hypothesis.configuration import set_hypothesis_home_dir

# keep hypothesis from writing its example database into the repository; no deadlines on a
# loaded machine
set_hypothesis_home_dir(tempfile.mkdtemp(prefix="medfeat-hypothesis-"))
settings.register_profile("medfeat", database=None, deadline=None)
settings.load_profile("medfeat")


@pytest.fixture
def build():
    """``build(kind, name, **options)``: a registered component, built as a pipeline builds it."""
    from medfeat.context import RunContext
    from medfeat.plugins import get_registry

    def make(kind: str, name: str, **options):
        return get_registry().get(kind, name).build(options, RunContext())

    return make
