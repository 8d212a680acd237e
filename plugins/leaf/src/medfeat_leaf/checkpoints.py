"""Strict loaders for the official LDM checkpoints and for diffusers-format folders (local only)."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from medfeat.api import CheckpointError, load_state_dict_strict, read_state_dict
from medfeat_leaf.networks import UNetSpec

UNET_PREFIX = "model.diffusion_model."
UNET_SOURCE = (
    "the CompVis latent-diffusion release: LDM lsun_churches (LDM-KL-8), "
    "https://ommer-lab.com/files/latent-diffusion/lsun_churches.zip (model.ckpt)"
)
VAE_SOURCE = (
    "the CompVis kl-f8 first-stage model: "
    "https://ommer-lab.com/files/latent-diffusion/kl-f8.zip (model.ckpt)"
)
_DIFFUSERS_FILES = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin")


def _download_remedy(source: str) -> str:
    return f"Download it yourself from {source} and give its local path (nothing is downloaded)."


def read_weights(path: Path, what: str, source: str) -> dict[str, torch.Tensor]:
    """Tensors of a .ckpt/.pt/.bin/.safetensors file (a Lightning ``state_dict`` is unwrapped)
    or of the weights file in a diffusers folder."""
    path = Path(path)
    if path.is_dir():
        for name in _DIFFUSERS_FILES:
            if (path / name).is_file():
                return read_weights(path / name, what, source)
        raise CheckpointError(
            f"{what}: folder {path} holds no diffusers weights ({' or '.join(_DIFFUSERS_FILES)}).",
            remedy=f"Point to the checkpoint file or a diffusers folder; the weights come from {source}.",
        )
    return read_state_dict(path, what=what, remedy=_download_remedy(source))


def _transformers_weight_files(folder: Path, what: str, remedy: str) -> list[Path]:
    """The weights of a transformers folder: one file, or the shards its index names."""
    import json

    for name in ("model.safetensors", "pytorch_model.bin"):
        if (folder / name).is_file():
            return [folder / name]
    for name in ("model.safetensors.index.json", "pytorch_model.bin.index.json"):
        if (folder / name).is_file():
            try:
                shards = sorted(set(json.loads((folder / name).read_text())["weight_map"].values()))
            except (ValueError, KeyError, TypeError, AttributeError) as exc:
                raise CheckpointError(
                    f"{what}: {folder / name} is not a weight index ({type(exc).__name__}).",
                    remedy=remedy,
                ) from None
            if not shards:
                raise CheckpointError(f"{what}: {folder / name} names no shard.", remedy=remedy)
            return [folder / shard for shard in shards]
    raise CheckpointError(
        f"{what}: {folder} holds no model.safetensors or pytorch_model.bin (nor a sharded index).",
        remedy=remedy,
    )


def load_transformers_folder(folder: Path, what: str, remedy: str) -> nn.Module:
    """The transformers model of a local folder (config.json + weights), nothing downloaded.

    The weights are read by medfeat's safe reader (never unpickled code; empty, truncated or
    pickled files give one clear message) and handed to transformers, which maps the file's
    names onto the installed version's modules; any key left over or missing is refused.
    """
    from transformers import AutoConfig
    from transformers.models.auto.modeling_auto import MODEL_MAPPING

    folder = Path(folder)
    if not (folder / "config.json").is_file():
        raise CheckpointError(
            f"{what}: {folder} is not a transformers model folder (no config.json).", remedy=remedy
        )
    try:
        config = AutoConfig.from_pretrained(str(folder), local_files_only=True)
        model_cls = MODEL_MAPPING[type(config)]
    except (OSError, ValueError, KeyError) as exc:
        raise CheckpointError(
            f"{what}: {folder}/config.json does not describe a model this transformers "
            f"knows ({type(exc).__name__}: {str(exc)[:200]}).",
            remedy=remedy,
        ) from None
    state: dict[str, torch.Tensor] = {}
    for file in _transformers_weight_files(folder, what, remedy):
        state.update(read_state_dict(file, what=what, remedy=remedy))
    try:
        model, info = model_cls.from_pretrained(
            None, config=config, state_dict=state, output_loading_info=True
        )
    except (OSError, ValueError, RuntimeError, KeyError) as exc:
        raise CheckpointError(
            f"{what}: the weights in {folder} do not fit its config.json "
            f"({type(exc).__name__}: {str(exc)[:200]}).",
            remedy=remedy,
        ) from None
    problems = {k: sorted(map(str, info.get(k) or ())) for k in ("missing_keys", "unexpected_keys")}
    problems["mismatched_keys"] = sorted(str(m[0]) for m in info.get("mismatched_keys") or ())
    found = {k: v for k, v in problems.items() if v}
    if found:
        listed = "; ".join(
            f"{len(v)} {k.replace('_', ' ')} (e.g. {', '.join(v[:3])})" for k, v in found.items()
        )
        raise CheckpointError(
            f"{what}: the weights in {folder} do not match its config.json: {listed}.",
            remedy=remedy,
        )
    return model.eval()


def load_strict(module: nn.Module, state: dict[str, torch.Tensor], what: str, source: str) -> None:
    """Strict load of ``state`` into ``module`` (a mismatch lists the key differences)."""
    load_state_dict_strict(
        module,
        state,
        what=what,
        remedy=f"Use the checkpoint from {source} with the matching architecture preset.",
    )


# ---------------------------------------------------------------- U-Net (CompVis openaimodel)
_RES = {
    "in_layers.0": "norm1",
    "in_layers.2": "conv1",
    "emb_layers.1": "time_emb_proj",
    "out_layers.0": "norm2",
    "out_layers.3": "conv2",
    "skip_connection": "conv_shortcut",
}


def _resblock(src: dict, old: str, new: str, out: dict) -> None:
    for a, b in _RES.items():
        for p in ("weight", "bias"):
            key = f"{old}.{a}.{p}"
            if key in src:
                out[f"{new}.{b}.{p}"] = src.pop(key)


def _attention(src: dict, old: str, new: str, heads: int, out: dict) -> None:
    """LDM AttentionBlock (legacy qkv order: heads x [q, k, v] x head_dim) -> diffusers Attention."""
    out[f"{new}.group_norm.weight"] = src.pop(f"{old}.norm.weight")
    out[f"{new}.group_norm.bias"] = src.pop(f"{old}.norm.bias")
    w = src.pop(f"{old}.qkv.weight")
    b = src.pop(f"{old}.qkv.bias")
    ch = w.shape[1]
    w = w.reshape(heads, 3, ch // heads, ch)
    b = b.reshape(heads, 3, ch // heads)
    for i, name in enumerate(("to_q", "to_k", "to_v")):
        out[f"{new}.{name}.weight"] = w[:, i].reshape(ch, ch).contiguous()
        out[f"{new}.{name}.bias"] = b[:, i].reshape(ch).contiguous()
    out[f"{new}.to_out.0.weight"] = src.pop(f"{old}.proj_out.weight").reshape(ch, ch)
    out[f"{new}.to_out.0.bias"] = src.pop(f"{old}.proj_out.bias")


def convert_ldm_unet(state: dict[str, torch.Tensor], spec: UNetSpec) -> dict[str, torch.Tensor]:
    """CompVis ``openaimodel.UNetModel`` keys (prefix stripped) -> :func:`build_unet` keys.

    Every source key is consumed; leftovers raise :class:`CheckpointError` (strict).
    """
    src = dict(state)
    out: dict[str, torch.Tensor] = {}
    try:
        for p in ("weight", "bias"):
            out[f"conv_in.{p}"] = src.pop(f"input_blocks.0.0.{p}")
            out[f"time_embedding.linear_1.{p}"] = src.pop(f"time_embed.0.{p}")
            out[f"time_embedding.linear_2.{p}"] = src.pop(f"time_embed.2.{p}")
            out[f"conv_norm_out.{p}"] = src.pop(f"out.0.{p}")
            out[f"conv_out.{p}"] = src.pop(f"out.2.{p}")
        levels, layers, heads = len(spec.channels), spec.layers_per_level, spec.num_heads
        block = 1
        for lvl in range(levels):
            for j in range(layers):
                _resblock(src, f"input_blocks.{block}.0", f"down_blocks.{lvl}.resnets.{j}", out)
                if spec.attention[lvl]:
                    _attention(
                        src,
                        f"input_blocks.{block}.1",
                        f"down_blocks.{lvl}.attentions.{j}",
                        heads,
                        out,
                    )
                block += 1
            if lvl < levels - 1:
                _resblock(src, f"input_blocks.{block}.0", f"down_blocks.{lvl}.downsamplers.0", out)
                block += 1
        _resblock(src, "middle_block.0", "mid_block.resnets.0", out)
        _attention(src, "middle_block.1", "mid_block.attentions.0", heads, out)
        _resblock(src, "middle_block.2", "mid_block.resnets.1", out)
        block = 0
        for u in range(levels):
            attn = spec.attention[levels - 1 - u]
            for j in range(layers + 1):
                _resblock(src, f"output_blocks.{block}.0", f"up_blocks.{u}.resnets.{j}", out)
                if attn:
                    _attention(
                        src, f"output_blocks.{block}.1", f"up_blocks.{u}.attentions.{j}", heads, out
                    )
                if u < levels - 1 and j == layers:
                    _resblock(
                        src,
                        f"output_blocks.{block}.{2 if attn else 1}",
                        f"up_blocks.{u}.upsamplers.0",
                        out,
                    )
                block += 1
    except KeyError as exc:
        raise CheckpointError(
            f"LDM U-Net: key {UNET_PREFIX}{exc.args[0]} is missing from the checkpoint.",
            remedy=f"Use the U-Net of {UNET_SOURCE} with the ldm-kl-8 preset.",
        ) from None
    if src:
        raise CheckpointError(
            f"LDM U-Net: {len(src)} checkpoint keys have no place in the architecture "
            f"(e.g. {sorted(src)[:3]}).",
            remedy=f"Use the U-Net of {UNET_SOURCE} with the ldm-kl-8 preset.",
        )
    return out


def load_ldm_unet(path: Path, unet: nn.Module, spec: UNetSpec) -> None:
    """CompVis LDM checkpoint (U-Net under ``model.diffusion_model.``) or diffusers folder -> ``unet``."""
    what = "LDM U-Net"
    state = read_weights(path, what, UNET_SOURCE)
    if Path(path).is_dir():
        load_strict(unet, state, what, UNET_SOURCE)
        return
    sub = {k[len(UNET_PREFIX) :]: v for k, v in state.items() if k.startswith(UNET_PREFIX)}
    if not sub:
        kind = "a VAE" if any(k.startswith("encoder.") for k in state) else "something else"
        raise CheckpointError(
            f"{what}: {path} has no key under {UNET_PREFIX!r}; it looks like {kind} "
            f"(first keys: {list(state)[:3]}).",
            remedy=f"Give the full LDM checkpoint of {UNET_SOURCE} as unet_checkpoint.",
        )
    load_strict(unet, convert_ldm_unet(sub, spec), what, UNET_SOURCE)


# ---------------------------------------------------------------- kl-f8 VAE
_VAE_PARTS = ("encoder.", "decoder.", "quant_conv.", "post_quant_conv.")


def load_kl_vae(path: Path, vae: nn.Module) -> None:
    """Standalone kl-f8 checkpoint (loss/discriminator keys ignored), full LDM checkpoint
    (``first_stage_model.``) or diffusers AutoencoderKL folder -> ``vae``."""
    what = "kl-f8 VAE"
    state = read_weights(path, what, VAE_SOURCE)
    if Path(path).is_dir():
        load_strict(vae, state, what, VAE_SOURCE)
        return
    if any(k.startswith("first_stage_model.") for k in state):
        state = {
            k[len("first_stage_model.") :]: v
            for k, v in state.items()
            if k.startswith("first_stage_model.")
        }
    state = {k: v for k, v in state.items() if not k.startswith("loss.")}
    stray = [k for k in state if not k.startswith(_VAE_PARTS)]
    if stray or not state:
        raise CheckpointError(
            f"{what}: {path} is not a kl-f8 autoencoder checkpoint "
            f"({'no keys' if not state else f'unexpected keys such as {stray[:3]}'}).",
            remedy=f"Give the kl-f8 checkpoint from {VAE_SOURCE} as vae_checkpoint.",
        )
    from diffusers.loaders.single_file_utils import convert_ldm_vae_checkpoint

    n = len(vae.config.block_out_channels)
    converted = convert_ldm_vae_checkpoint(
        state,
        {
            "down_block_types": ("DownEncoderBlock2D",) * n,
            "up_block_types": ("UpDecoderBlock2D",) * n,
        },
    )
    if len(converted) != len(state):
        used = len(converted)
        raise CheckpointError(
            f"{what}: only {used} of {len(state)} checkpoint tensors map onto the autoencoder.",
            remedy=f"Give the kl-f8 checkpoint from {VAE_SOURCE} as vae_checkpoint.",
        )
    load_strict(vae, converted, what, VAE_SOURCE)
