"""Registration: the plugin's components under their names, with their config models and factories."""

from __future__ import annotations

from medfeat.api import RunContext, get_registry


def test_components_are_registered_with_their_config_models():
    from medfeat_maisi_dift.config import LungCTConfig, MaisiDiftConfig, MedDiftMatcherConfig

    reg = get_registry()
    expected = {
        ("backbone", "maisi-dift"): MaisiDiftConfig,
        ("matcher", "meddift-matcher"): MedDiftMatcherConfig,
        ("dataset", "learn2reg-lungct"): LungCTConfig,
    }
    for (kind, name), config in expected.items():
        component = reg.get(kind, name)
        assert component.config is config and component.plugin == "medfeat-maisi-dift"


def test_factories_build_the_components(tmp_path):
    from medfeat_maisi_dift.datasets import LungCTDataset
    from medfeat_maisi_dift.matcher import MedDiftMatcher

    reg = get_registry()
    matcher = reg.get("matcher", "meddift-matcher").build({"box_half_size_mm": 5.0}, RunContext())
    assert isinstance(matcher, MedDiftMatcher) and matcher.config.box_half_size_mm == 5.0
    data = reg.get("dataset", "learn2reg-lungct").build({"root": str(tmp_path)}, RunContext())
    assert isinstance(data, LungCTDataset) and data.config.root == tmp_path
