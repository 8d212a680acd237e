"""Loaders: official Meta layout vs Hugging Face layout, strictness, and clear errors."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from medfeat_dinov3.checkpoints import (
    load_dinov2,
    load_dinov3,
    official_dinov3_keys,
    official_to_hf,
)
from medfeat_dinov3.config import Dinov2SlicesConfig, Dinov3SlicesConfig
from medfeat_dinov3.naming import DINOV2_NAMING, DINOV3_NAMING, to_file_names, to_module_names
from medfeat_dinov3.networks import DINOV2_REG, DINOV3, dinov2_hf_config, dinov3_hf_config

from medfeat.errors import CheckpointError


def official_forward(state: dict, spec, x: torch.Tensor) -> torch.Tensor:
    """Patch tokens of an official DINOv3 state dict, written from the Meta layout directly
    (fused qkv with masked bias, RoPE on patch tokens from ``periods``, LayerScale ``gamma``)."""
    c, heads, prefix = spec.hidden_size, spec.num_heads, 1 + spec.num_register_tokens
    t = F.conv2d(x, state["patch_embed.proj.weight"], state["patch_embed.proj.bias"], stride=16)
    b, _, h, w = t.shape
    t = torch.cat(
        [
            state["cls_token"].expand(b, -1, -1),
            state["storage_tokens"].expand(b, -1, -1),
            t.flatten(2).transpose(1, 2),
        ],
        1,
    )
    ch, cw = (torch.arange(h) + 0.5) / h, (torch.arange(w) + 0.5) / w
    coords = 2 * torch.stack(torch.meshgrid(ch, cw, indexing="ij"), -1).flatten(0, 1) - 1
    angles = 2 * math.pi * coords[:, :, None] / state["rope_embed.periods"][None, None, :]
    angles = angles.flatten(1, 2).tile(2)
    cos, sin = angles.cos(), angles.sin()

    def rope(z):
        half = z.shape[-1] // 2
        rotated = torch.cat([-z[..., half:], z[..., :half]], -1)
        return torch.cat(
            [z[:, :, :prefix], z[:, :, prefix:] * cos + rotated[:, :, prefix:] * sin], 2
        )

    for n in range(spec.num_layers):
        p = f"blocks.{n}."
        y = F.layer_norm(t, (c,), state[p + "norm1.weight"], state[p + "norm1.bias"], 1e-5)
        bias = state[p + "attn.qkv.bias"] * state[p + "attn.qkv.bias_mask"]
        qkv = F.linear(y, state[p + "attn.qkv.weight"], bias).reshape(b, -1, 3, heads, c // heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)
        a = F.scaled_dot_product_attention(rope(q), rope(k), v).transpose(1, 2).reshape(b, -1, c)
        t = t + state[p + "ls1.gamma"] * F.linear(
            a, state[p + "attn.proj.weight"], state[p + "attn.proj.bias"]
        )
        y = F.layer_norm(t, (c,), state[p + "norm2.weight"], state[p + "norm2.bias"], 1e-5)
        y = F.linear(F.gelu(F.linear(y, state[p + "mlp.fc1.weight"], state[p + "mlp.fc1.bias"])),
                     state[p + "mlp.fc2.weight"], state[p + "mlp.fc2.bias"])  # fmt: skip
        t = t + state[p + "ls2.gamma"] * y
    return F.layer_norm(t, (c,), state["norm.weight"], state["norm.bias"], 1e-5)[:, prefix:]


def param(model, file_name: str) -> torch.Tensor:
    """The parameter of ``model`` saved as ``file_name`` (module names depend on transformers)."""
    params = dict(model.module.named_parameters())
    (tensor,) = to_module_names({file_name: None}, model.module, DINOV3_NAMING)
    return params[tensor]


def tokens(model, x):
    with torch.no_grad():
        return model.module(pixel_values=x).last_hidden_state[:, model.num_prefix_tokens :]


@pytest.mark.parametrize("name", ["vit-s16", "vit-b16", "vit-l16"])
def test_official_key_layout_is_the_manifest(manifest, name):
    expected = manifest(f"dinov3_{name.replace('-', '')}")
    assert official_dinov3_keys(DINOV3[name]) == expected


def test_official_file_and_hf_folder_give_identical_features(
    manifest, official_state, hf_dir, tmp_path
):
    """ViT-S/16 at full size: random weights built from the manifest, saved in the official layout,
    strictly loaded; the same weights as an HF folder give the same tokens, and both agree with a
    forward pass written directly from the Meta layout."""
    spec = DINOV3["vit-s16"]
    state = official_state(manifest("dinov3_vits16"), spec, seed=1)
    torch.save(state, tmp_path / "dinov3_vits16_pretrain_lvd1689m-08c60483.pth")
    official = load_dinov3(
        Dinov3SlicesConfig(
            model="vit-s16", checkpoint=tmp_path / "dinov3_vits16_pretrain_lvd1689m-08c60483.pth"
        )
    )
    folder = hf_dir(tmp_path / "hf", dinov3_hf_config(spec), official_to_hf(state, spec))
    hf = load_dinov3(Dinov3SlicesConfig(model="vit-s16", checkpoint=folder))
    x = torch.randn(2, 3, 64, 48, generator=torch.Generator().manual_seed(0))
    a, b = tokens(official, x), tokens(hf, x)
    assert a.shape == (2, 12, 384)
    assert torch.equal(a, b)
    reference = official_forward(state, spec, x)
    assert torch.allclose(a, reference, atol=1e-4), (a - reference).abs().max()
    # the load really happened: the first block's q weight is the file's
    q = param(official, "layer.0.attention.q_proj.weight")
    assert torch.equal(q, state["blocks.0.attn.qkv.weight"][:384])


@pytest.mark.slow
def test_vitl16_official_file_loads_strictly(manifest, official_state, tmp_path):
    spec = DINOV3["vit-l16"]
    state = official_state(manifest("dinov3_vitl16"), spec)
    path = tmp_path / "dinov3_vitl16_pretrain_lvd1689m-8aa4cbdd.pth"
    torch.save(state, path)
    del state
    model = load_dinov3(Dinov3SlicesConfig(model="vit-l16", checkpoint=path))
    loaded = torch.load(path, weights_only=True)
    assert torch.equal(
        param(model, "layer.23.attention.o_proj.weight"), loaded["blocks.23.attn.proj.weight"]
    )
    q = loaded["blocks.5.attn.qkv.weight"][:1024]
    assert torch.equal(param(model, "layer.5.attention.q_proj.weight"), q)


# ---------------------------------------------------------------------------- errors
@pytest.fixture
def tiny_state(official_state):
    spec = DINOV3["tiny"]
    return official_state(official_dinov3_keys(spec), spec)


def load_tiny(path, model="tiny"):
    return load_dinov3(Dinov3SlicesConfig(model=model, checkpoint=path))


def test_missing_checkpoint_names_the_source(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist.*ai.meta.com/dinov3"):
        load_tiny(tmp_path / "nope.pth")


def test_no_checkpoint_and_no_random_weights_is_refused():
    with pytest.raises(CheckpointError, match="checkpoint` is not set.*random_weights: true"):
        load_dinov3(Dinov3SlicesConfig(model="tiny"))


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (
            b"version https://git-lfs.github.com/spec/v1\noid sha256:abc\nsize 1\n",
            "Git LFS pointer",
        ),
        (b"<!DOCTYPE html><html>Request access</html>" + b" " * 5000, "HTML page"),
        (b"", "empty file"),
    ],
)
def test_placeholder_files_are_recognised(tmp_path, content, expected):
    path = tmp_path / "dinov3_vitl16_pretrain_lvd1689m-8aa4cbdd.pth"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=expected):
        load_tiny(path)


def test_truncated_file_is_reported(tmp_path, tiny_state):
    path = tmp_path / "w.pth"
    torch.save(tiny_state, path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="could not be read.*truncated"):
        load_tiny(path)


def test_wrong_size_file_lists_the_differences(tmp_path, official_state):
    small = DINOV3["vit-s16"]
    torch.save(official_state(official_dinov3_keys(small), small), tmp_path / "s.pth")
    with pytest.raises(CheckpointError, match=r"wrong shape.*Pick the `model`"):
        load_tiny(tmp_path / "s.pth")  # a ViT-S file given to the tiny model


def test_missing_keys_are_listed(tmp_path, tiny_state):
    del tiny_state["blocks.1.ls2.gamma"]
    torch.save(tiny_state, tmp_path / "w.pth")
    with pytest.raises(CheckpointError, match=r"1 missing \(e.g. blocks.1.ls2.gamma\)"):
        load_tiny(tmp_path / "w.pth")


def test_unmasked_k_bias_is_refused(tmp_path, tiny_state):
    tiny_state["blocks.0.attn.qkv.bias_mask"] = torch.ones_like(
        tiny_state["blocks.0.attn.qkv.bias_mask"]
    )
    torch.save(tiny_state, tmp_path / "w.pth")
    with pytest.raises(CheckpointError, match="masked k bias"):
        load_tiny(tmp_path / "w.pth")


def test_wrong_rope_periods_are_refused(tmp_path, tiny_state):
    tiny_state["rope_embed.periods"] = torch.rand(4)
    torch.save(tiny_state, tmp_path / "w.pth")
    with pytest.raises(CheckpointError, match="RoPE periods"):
        load_tiny(tmp_path / "w.pth")


def test_hf_names_in_a_pth_point_to_the_folder(tmp_path, tiny_state):
    torch.save(official_to_hf(tiny_state, DINOV3["tiny"]), tmp_path / "w.pth")
    with pytest.raises(CheckpointError, match="Hugging Face parameter names"):
        load_tiny(tmp_path / "w.pth")


def test_hf_folder_checks(tmp_path, tiny_state, hf_dir):
    spec = DINOV3["tiny"]
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="without config.json"):
        load_tiny(tmp_path / "empty")
    other = dinov3_hf_config(DINOV3["vit-s16"])
    folder = hf_dir(tmp_path / "hf", other, official_to_hf(tiny_state, spec))
    with pytest.raises(CheckpointError, match="hidden_size=384 \\(expected 64\\)"):
        load_tiny(folder)


def test_dinov2_folder_round_trip_and_errors(tmp_path, hf_dir):
    spec = DINOV2_REG["tiny"]
    random = load_dinov2(Dinov2SlicesConfig(model="tiny", random_weights=True, random_seed=3))
    folder = hf_dir(tmp_path / "v2", dinov2_hf_config(spec), random.module.state_dict())
    loaded = load_dinov2(Dinov2SlicesConfig(model="tiny", checkpoint=folder))
    x = torch.randn(1, 3, 56, 42)
    assert torch.equal(tokens(random, x), tokens(loaded, x))
    assert tokens(loaded, x).shape == (1, 12, 64)
    with pytest.raises(CheckpointError, match="not a folder"):
        load_dinov2(Dinov2SlicesConfig(model="tiny", checkpoint=tmp_path / "x.pth"))


# ---------------------------------------------------------------------------- transformers folders
def _saved_by_transformers(folder, model_cls, config, seed: int):
    """A folder written by transformers itself (``save_pretrained``), from its own random init."""
    torch.manual_seed(seed)
    model = model_cls(config).eval()
    model.save_pretrained(str(folder))
    return model


def _file_keys(folder) -> set[str]:
    from safetensors import safe_open

    with safe_open(str(folder / "model.safetensors"), framework="pt") as fh:
        return set(fh.keys())


def test_a_dinov3_folder_written_by_transformers_loads_and_gives_its_tokens(tmp_path):
    from transformers import DINOv3ViTModel

    spec = DINOV3["tiny"]
    ref = _saved_by_transformers(tmp_path / "hf", DINOv3ViTModel, dinov3_hf_config(spec), 4)
    keys = _file_keys(tmp_path / "hf")  # the Hub's layout, whatever the installed version
    assert {"embeddings.register_tokens", "layer.1.attention.q_proj.weight", "norm.weight"} <= keys
    assert not any(k.startswith("model.") for k in keys)
    loaded = load_dinov3(Dinov3SlicesConfig(model="tiny", checkpoint=tmp_path / "hf"))
    x = torch.randn(2, 3, 48, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = ref(pixel_values=x).last_hidden_state[:, 5:]
    torch.testing.assert_close(tokens(loaded, x), expected, rtol=0, atol=0)


def test_official_weights_written_out_by_transformers_load_back_identically(
    tmp_path, official_state
):
    """official .pth -> plugin -> transformers' save_pretrained -> plugin: same tokens."""
    spec = DINOV3["tiny"]
    state = official_state(official_dinov3_keys(spec), spec, seed=2)
    torch.save(state, tmp_path / "w.pth")
    official = load_dinov3(Dinov3SlicesConfig(model="tiny", checkpoint=tmp_path / "w.pth"))
    official.module.save_pretrained(str(tmp_path / "hf"))
    again = load_dinov3(Dinov3SlicesConfig(model="tiny", checkpoint=tmp_path / "hf"))
    x = torch.randn(1, 3, 32, 64, generator=torch.Generator().manual_seed(3))
    reference = official_forward(state, spec, x)
    torch.testing.assert_close(tokens(official, x), reference, atol=1e-5, rtol=1e-5)
    assert torch.equal(tokens(official, x), tokens(again, x))
    # and a state dict of the module itself (5.x names under transformers 5) is a folder's job
    torch.save(official.module.state_dict(), tmp_path / "module.pth")
    with pytest.raises(CheckpointError, match="Hugging Face parameter names"):
        load_tiny(tmp_path / "module.pth")


def test_a_dinov2_folder_written_by_transformers_loads_and_gives_its_tokens(tmp_path):
    from transformers import Dinov2WithRegistersModel

    spec = DINOV2_REG["tiny"]
    ref = _saved_by_transformers(
        tmp_path / "v2", Dinov2WithRegistersModel, dinov2_hf_config(spec), 5
    )
    assert "encoder.layer.0.attention.attention.query.weight" in _file_keys(tmp_path / "v2")
    loaded = load_dinov2(Dinov2SlicesConfig(model="tiny", checkpoint=tmp_path / "v2"))
    x = torch.randn(1, 3, 56, 42, generator=torch.Generator().manual_seed(6))
    with torch.no_grad():
        expected = ref(pixel_values=x).last_hidden_state[:, 5:]
    torch.testing.assert_close(tokens(loaded, x), expected, rtol=0, atol=0)


# file naming (the Hub's, = transformers 4.x modules) <-> transformers 5.x module naming
_NAMINGS = {
    "dinov3": (
        DINOV3_NAMING,
        ["embeddings.cls_token", "layer.0.attention.q_proj.weight", "layer.11.mlp.up_proj.bias"],
        ["embeddings.cls_token", "model.layer.0.attention.q_proj.weight",
         "model.layer.11.mlp.up_proj.bias"],
    ),
    "dinov2": (
        DINOV2_NAMING,
        ["encoder.layer.3.attention.attention.query.weight",
         "encoder.layer.3.attention.attention.key.bias",
         "encoder.layer.3.attention.attention.value.weight",
         "encoder.layer.3.attention.output.dense.bias", "encoder.layer.3.mlp.fc1.weight"],
        ["encoder.layer.3.attention.q_proj.weight", "encoder.layer.3.attention.k_proj.bias",
         "encoder.layer.3.attention.v_proj.weight", "encoder.layer.3.attention.o_proj.bias",
         "encoder.layer.3.mlp.fc1.weight"],
    ),
}  # fmt: skip


class _Keys:
    """A stand-in module that only has state-dict keys."""

    def __init__(self, keys):
        self.keys = keys

    def state_dict(self):
        return dict.fromkeys(self.keys)


@pytest.mark.parametrize("model", sorted(_NAMINGS))
@pytest.mark.parametrize("file_side", [True, False], ids=["file-names", "v5-names"])
@pytest.mark.parametrize("module_side", ["4.x", "5.x"])
def test_both_namings_map_onto_modules_of_both_transformers_generations(
    model, file_side, module_side
):
    naming, file_keys, v5_keys = _NAMINGS[model]
    given = file_keys if file_side else v5_keys
    want = file_keys if module_side == "4.x" else v5_keys
    state = {k: i for i, k in enumerate(given)}
    mapped = to_module_names(state, _Keys(want), naming)
    assert list(mapped) == want and list(mapped.values()) == list(range(len(want)))
    assert list(to_file_names(state, naming)) == file_keys


def test_the_installed_transformers_renames_exactly_as_the_table_says(tmp_path):
    """Guards the naming table: the module's keys, in file naming, are what save_pretrained
    writes (a transformers version with a third naming fails here)."""
    from medfeat_dinov3.networks import build_dinov2, build_dinov3

    for name, module, naming in (
        ("v3", build_dinov3(DINOV3["tiny"], seed=0), DINOV3_NAMING),
        ("v2", build_dinov2(DINOV2_REG["tiny"], seed=0), DINOV2_NAMING),
    ):
        module.save_pretrained(str(tmp_path / name))
        keys = module.state_dict().keys()
        assert set(to_file_names(dict.fromkeys(keys), naming)) == _file_keys(tmp_path / name)
