"""Local, strict loading of DINOv3 (official Meta ``.pth`` or HF directory) and DINOv2-reg weights.

Official DINOv3 files are converted to the Hugging Face ``DINOv3ViTModel`` file naming (the same
tensors, renamed; METHODS.md section 2). Folders written by transformers (``save_pretrained``, the
Hub's repositories) are read in that file naming; both are then renamed to the module of the
installed transformers (4.x and 5.x name it differently, :mod:`medfeat_dinov3.naming`) and loaded
with ``strict=True``. Every file is read by medfeat's safe reader; nothing is downloaded.
"""

from __future__ import annotations

from pathlib import Path

import torch

from medfeat.api import (
    CheckpointError,
    check_state_dict,
    load_state_dict_strict,
    read_state_dict,
)
from medfeat_dinov3.config import Dinov2SlicesConfig, Dinov3WeightsConfig
from medfeat_dinov3.naming import DINOV2_NAMING, DINOV3_NAMING, to_file_names, to_module_names
from medfeat_dinov3.networks import (
    DINOV2_REG,
    DINOV3,
    DINOV3_ROPE_BASE,
    SliceModel,
    VitSpec,
    build_dinov2,
    build_dinov3,
)

DINOV3_SOURCE = (
    "Official DINOv3 weights are gated: request access at https://ai.meta.com/dinov3/ "
    "(files like dinov3_vitl16_pretrain_lvd1689m-8aa4cbdd.pth) or on the Hugging Face Hub "
    "(facebook/dinov3-vitl16-pretrain-lvd1689m), download them yourself and give the local path."
)
DINOV2_SOURCE = (
    "DINOv2-with-registers weights: download the Hugging Face directory "
    "(e.g. facebook/dinov2-with-registers-large) yourself and give its local path."
)


def _read_state(path: Path, what: str, source: str) -> dict:
    """The flat state dict of a ``.pth``/``.bin``/``.safetensors`` file (unwrapped from ``model``
    or ``state_dict``); files far too small for ViT weights are refused before reading."""
    return read_state_dict(
        path, what=what, remedy=source, nested=("model", "state_dict"), min_bytes=4096
    )


def official_dinov3_keys(spec: VitSpec) -> dict[str, tuple[int, ...]]:
    """Every key and shape of an official Meta DINOv3 ``.pth`` for ``spec``."""
    c, r = spec.hidden_size, spec.num_register_tokens
    keys: dict[str, tuple[int, ...]] = {
        "cls_token": (1, 1, c),
        "storage_tokens": (1, r, c),
        "mask_token": (1, c),
        "patch_embed.proj.weight": (c, 3, spec.patch_size, spec.patch_size),
        "patch_embed.proj.bias": (c,),
        "rope_embed.periods": (spec.head_dim // 4,),
    }
    for n in range(spec.num_layers):
        b = f"blocks.{n}."
        keys.update(
            {
                b + "norm1.weight": (c,),
                b + "norm1.bias": (c,),
                b + "attn.qkv.weight": (3 * c, c),
                b + "attn.qkv.bias": (3 * c,),
                b + "attn.qkv.bias_mask": (3 * c,),
                b + "attn.proj.weight": (c, c),
                b + "attn.proj.bias": (c,),
                b + "ls1.gamma": (c,),
                b + "norm2.weight": (c,),
                b + "norm2.bias": (c,),
                b + "ls2.gamma": (c,),
            }
        )
        h = spec.intermediate_size
        if spec.gated_mlp:
            keys.update(
                {
                    b + "mlp.w1.weight": (h, c),
                    b + "mlp.w1.bias": (h,),
                    b + "mlp.w2.weight": (h, c),
                    b + "mlp.w2.bias": (h,),
                    b + "mlp.w3.weight": (c, h),
                    b + "mlp.w3.bias": (c,),
                }
            )
        else:
            keys.update(
                {
                    b + "mlp.fc1.weight": (h, c),
                    b + "mlp.fc1.bias": (h,),
                    b + "mlp.fc2.weight": (c, h),
                    b + "mlp.fc2.bias": (c,),
                }
            )
    keys["norm.weight"] = (c,)
    keys["norm.bias"] = (c,)
    return keys


def rope_periods(spec: VitSpec) -> torch.Tensor:
    """The official RoPE ``periods`` buffer: base ** (2 i / (head_dim / 2)), i < head_dim / 4."""
    d = spec.head_dim
    return DINOV3_ROPE_BASE ** (2 * torch.arange(d // 4, dtype=torch.float32) / (d // 2))


def official_to_hf(state: dict, spec: VitSpec) -> dict:
    """Rename an official DINOv3 state dict to the file naming of ``DINOv3ViTModel`` (as
    ``save_pretrained`` writes it: ``layer.N.*``), qkv split and k bias dropped.

    The official k bias is multiplied by ``bias_mask`` (zero on the k third); a non-zero masked k bias
    cannot be expressed in the HF layout and is refused.
    """
    c = spec.hidden_size
    periods = state["rope_embed.periods"].float()
    if not torch.allclose(periods, rope_periods(spec), rtol=1e-4):
        raise CheckpointError(
            "The checkpoint's RoPE periods do not match base 100 with head dim "
            f"{spec.head_dim} (found {periods[:3].tolist()}...).",
            remedy="This is not a DINOv3 ViT of the chosen size. " + DINOV3_SOURCE,
        )
    out = {
        "embeddings.cls_token": state["cls_token"],
        "embeddings.register_tokens": state["storage_tokens"],
        "embeddings.mask_token": state["mask_token"].reshape(1, 1, c),
        "embeddings.patch_embeddings.weight": state["patch_embed.proj.weight"],
        "embeddings.patch_embeddings.bias": state["patch_embed.proj.bias"],
        "norm.weight": state["norm.weight"],
        "norm.bias": state["norm.bias"],
    }
    mlp_names = (
        {"w1": "gate_proj", "w2": "up_proj", "w3": "down_proj"}
        if spec.gated_mlp
        else {"fc1": "up_proj", "fc2": "down_proj"}
    )
    for n in range(spec.num_layers):
        src, dst = f"blocks.{n}.", f"layer.{n}."
        q, k, v = state[src + "attn.qkv.weight"].chunk(3, dim=0)
        bias = state[src + "attn.qkv.bias"] * state[src + "attn.qkv.bias_mask"].to(
            state[src + "attn.qkv.bias"].dtype
        )
        bq, bk, bv = bias.chunk(3)
        if not torch.isfinite(bias).all() or bk.abs().max() > 0:
            raise CheckpointError(
                f"Block {n}: the masked k bias of attn.qkv is not zero (or bias_mask is not set).",
                remedy="The file is not a released DINOv3 backbone. " + DINOV3_SOURCE,
            )
        out.update(
            {
                dst + "norm1.weight": state[src + "norm1.weight"],
                dst + "norm1.bias": state[src + "norm1.bias"],
                dst + "attention.q_proj.weight": q,
                dst + "attention.q_proj.bias": bq,
                dst + "attention.k_proj.weight": k,
                dst + "attention.v_proj.weight": v,
                dst + "attention.v_proj.bias": bv,
                dst + "attention.o_proj.weight": state[src + "attn.proj.weight"],
                dst + "attention.o_proj.bias": state[src + "attn.proj.bias"],
                dst + "layer_scale1.lambda1": state[src + "ls1.gamma"],
                dst + "norm2.weight": state[src + "norm2.weight"],
                dst + "norm2.bias": state[src + "norm2.bias"],
                dst + "layer_scale2.lambda1": state[src + "ls2.gamma"],
            }
        )
        for a, b in mlp_names.items():
            out[dst + f"mlp.{b}.weight"] = state[src + f"mlp.{a}.weight"]
            out[dst + f"mlp.{b}.bias"] = state[src + f"mlp.{a}.bias"]
    return {k: v.contiguous() for k, v in out.items()}


def _hf_weight_files(path: Path, source: str) -> list[Path]:
    """The weight file(s) of a Hugging Face folder: one file, or the shards of an index."""
    import json

    for name in ("model.safetensors", "pytorch_model.bin"):
        if (path / name).is_file():
            return [path / name]
    for name in ("model.safetensors.index.json", "pytorch_model.bin.index.json"):
        index = path / name
        if index.is_file():
            try:
                shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
            except (ValueError, KeyError, TypeError, AttributeError) as exc:
                raise CheckpointError(
                    f"{index} is not a weight index ({type(exc).__name__}).", remedy=source
                ) from None
            files = [path / s for s in shards]
            missing = [f.name for f in files if not f.is_file()]
            if missing or not files:
                raise CheckpointError(
                    f"{path}: the shards {missing[:3]} named in {name} are missing.",
                    remedy=source,
                )
            return files
    raise CheckpointError(
        f"{path} has no model.safetensors or pytorch_model.bin (nor a sharded index).",
        remedy=source,
    )


def _hf_directory_state(path: Path, what: str, source: str) -> tuple[dict, dict]:
    """``config.json`` and the weights (file naming) of a Hugging Face model directory."""
    import json

    config_file = path / "config.json"
    if not config_file.is_file():
        raise CheckpointError(
            f"{path} is a folder without config.json, so it is not a Hugging Face model directory.",
            remedy=source,
        )
    try:
        found = json.loads(config_file.read_text())
    except (ValueError, UnicodeDecodeError) as exc:
        raise CheckpointError(
            f"{config_file} is not valid JSON ({type(exc).__name__}).", remedy=source
        ) from None
    if not isinstance(found, dict):
        raise CheckpointError(f"{config_file} does not hold a JSON object.", remedy=source)
    state: dict = {}
    for file in _hf_weight_files(path, source):
        state.update(_read_state(file, what, source))
    return found, state


def _check_hf_config(found: dict, expected, path: Path, source: str) -> None:
    fields = ("model_type", "hidden_size", "num_hidden_layers", "num_attention_heads", "patch_size")
    diff = [
        f"{f}={found.get(f)!r} (expected {getattr(expected, f)!r})"
        for f in fields
        if found.get(f) != getattr(expected, f)
    ]
    if diff:
        raise CheckpointError(
            f"{path}/config.json does not describe the chosen model: {', '.join(diff)}.",
            remedy="Set `model` to the architecture of the folder. " + source,
        )


def load_dinov3(config: Dinov3WeightsConfig) -> SliceModel:
    """The DINOv3 model of ``config``: official .pth, HF directory, or (explicitly) random weights."""
    spec = DINOV3[config.model]
    module = build_dinov3(spec, config.random_seed if config.checkpoint is None else None)
    what = f"DINOv3 {config.model}"
    if config.checkpoint is None:
        if not config.random_weights:
            raise CheckpointError(
                f"DINOv3 needs weights for {config.model}: `checkpoint` is not set.",
                remedy=DINOV3_SOURCE
                + " For tests and timing only, set random_weights: true (features are then meaningless).",
            )
        return SliceModel(
            module,
            spec.patch_size,
            1 + spec.num_register_tokens,
            spec.hidden_size,
            f"{what}, RANDOM weights (seed {config.random_seed})",
        )
    path = Path(config.checkpoint).expanduser()
    if path.is_dir():
        found, state = _hf_directory_state(path, what, DINOV3_SOURCE)
        _check_hf_config(found, module.config, path, DINOV3_SOURCE)
        state = to_module_names(state, module, DINOV3_NAMING)
        load_state_dict_strict(module, state, what=what, path=path, remedy=DINOV3_SOURCE)
        return SliceModel(
            module,
            spec.patch_size,
            1 + spec.num_register_tokens,
            spec.hidden_size,
            f"{what} from HF directory {path}",
        )
    state = _read_state(path, what, DINOV3_SOURCE)
    if any(k.startswith(("layer.", "embeddings.")) for k in to_file_names(state, DINOV3_NAMING)):
        raise CheckpointError(
            f"{path} holds Hugging Face parameter names, not the official DINOv3 layout.",
            remedy="Give the whole HF directory (with config.json) as `checkpoint`.",
        )
    layout_note = "" if spec.key_layout_verified else " (key layout of H+/16 is unverified)"
    check_state_dict(
        state,
        official_dinov3_keys(spec),
        what=what + layout_note,
        path=path,
        remedy="Pick the `model` that matches the file (vit-s16, vit-b16, vit-l16, vit-h16plus). "
        + DINOV3_SOURCE,
    )
    converted = to_module_names(official_to_hf(state, spec), module, DINOV3_NAMING)
    load_state_dict_strict(module, converted, what=what, path=path, remedy=DINOV3_SOURCE)
    return SliceModel(
        module,
        spec.patch_size,
        1 + spec.num_register_tokens,
        spec.hidden_size,
        f"{what} from official file {path.name}",
    )


def load_dinov2(config: Dinov2SlicesConfig) -> SliceModel:
    """The DINOv2-with-registers model of ``config``: HF directory or (explicitly) random weights."""
    spec = DINOV2_REG[config.model]
    module = build_dinov2(spec, config.random_seed if config.checkpoint is None else None)
    what = f"DINOv2-reg {config.model}"
    prefix = 1 + spec.num_register_tokens
    if config.checkpoint is None:
        if not config.random_weights:
            raise CheckpointError(
                f"backbone dinov2-slices needs weights for {config.model}: `checkpoint` is not set.",
                remedy=DINOV2_SOURCE + " For tests and timing only, set random_weights: true.",
            )
        return SliceModel(
            module,
            spec.patch_size,
            prefix,
            spec.hidden_size,
            f"{what}, RANDOM weights (seed {config.random_seed})",
        )
    path = Path(config.checkpoint).expanduser()
    if not path.is_dir():
        raise CheckpointError(
            f"dinov2-slices loads Hugging Face directories; {path} is not a folder.",
            remedy=DINOV2_SOURCE,
        )
    found, state = _hf_directory_state(path, what, DINOV2_SOURCE)
    _check_hf_config(found, module.config, path, DINOV2_SOURCE)
    state = to_module_names(state, module, DINOV2_NAMING)
    load_state_dict_strict(module, state, what=what, path=path, remedy=DINOV2_SOURCE)
    return SliceModel(module, spec.patch_size, prefix, spec.hidden_size, f"{what} from {path}")
