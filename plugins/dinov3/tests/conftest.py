"""Fixtures of the medfeat-dinov3 tests: manifests, random official state dicts, HF folders."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

MANIFESTS = Path(__file__).resolve().parents[3].parent / "shared" / "reference" / "checkpoints"


@pytest.fixture
def manifest():
    """``manifest("dinov3_vits16")`` -> {key: shape}; skips when the reference folder is absent."""

    def load(name: str) -> dict[str, tuple[int, ...]]:
        path = MANIFESTS / f"{name}.json"
        if not path.is_file():
            pytest.skip(f"checkpoint manifest not available: {path} (internal reference files)")
        return {k: tuple(v) for k, v in json.loads(path.read_text()).items()}

    return load


def random_official_state(layout: dict[str, tuple[int, ...]], spec, seed: int = 0) -> dict:
    """Random tensors for every key of an official DINOv3 layout, with the buffers set as released:
    RoPE periods for base 100 and a qkv bias mask that zeroes the k third."""
    from medfeat_dinov3.checkpoints import rope_periods

    gen = torch.Generator().manual_seed(seed)
    state = {k: 0.05 * torch.randn(shape, generator=gen) for k, shape in layout.items()}
    for k in state:
        if k.endswith("bias_mask"):
            mask = torch.ones(state[k].shape)
            third = mask.shape[0] // 3
            mask[third : 2 * third] = 0
            state[k] = mask
        if k.endswith(("norm1.weight", "norm2.weight")) or k == "norm.weight":
            state[k] = 1 + state[k]
    state["rope_embed.periods"] = rope_periods(spec)
    return state


def write_hf_dir(path: Path, hf_config, state: dict) -> Path:
    """A Hugging Face model folder (config.json + model.safetensors) holding ``state``."""
    from safetensors.torch import save_file

    path.mkdir(parents=True, exist_ok=True)
    hf_config.to_json_file(str(path / "config.json"))
    save_file({k: v.contiguous() for k, v in state.items()}, str(path / "model.safetensors"))
    return path


@pytest.fixture
def official_state():
    return random_official_state


@pytest.fixture
def hf_dir():
    return write_hf_dir
