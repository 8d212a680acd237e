"""The ViT architectures the plugin knows, as Hugging Face configs (no weights)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class VitSpec:
    """Size of one ViT: enough to build its HF config and its official key layout."""

    hidden_size: int
    num_layers: int
    num_heads: int
    intermediate_size: int
    gated_mlp: bool = False
    patch_size: int = 16
    num_register_tokens: int = 4
    key_layout_verified: bool = True

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads


# DINOv3 (METHODS.md section 2; facebookresearch/dinov3). H+/16 uses SwiGLU: its FFN width 6 x 1280
# becomes 5120 after the 2/3 SwiGLU reduction. Its key layout has no manifest here (unverified).
DINOV3 = {
    "vit-s16": VitSpec(384, 12, 6, 1536),
    "vit-b16": VitSpec(768, 12, 12, 3072),
    "vit-l16": VitSpec(1024, 24, 16, 4096),
    "vit-h16plus": VitSpec(1280, 32, 20, 5120, gated_mlp=True, key_layout_verified=False),
    "tiny": VitSpec(64, 2, 4, 256),
}

# DINOv2 with registers (HF Dinov2WithRegistersModel layout; patch 14, 4 registers).
DINOV2_REG = {
    "vit-s14-reg": VitSpec(384, 12, 6, 1536, patch_size=14),
    "vit-b14-reg": VitSpec(768, 12, 12, 3072, patch_size=14),
    "vit-l14-reg": VitSpec(1024, 24, 16, 4096, patch_size=14),
    "vit-g14-reg": VitSpec(1536, 40, 24, 6144, gated_mlp=True, patch_size=14),
    "tiny": VitSpec(64, 2, 4, 256, patch_size=14),
}

# DINOv3 models are trained with RoPE base 100 and LayerNorm eps 1e-5.
DINOV3_ROPE_BASE = 100.0


def dinov3_hf_config(spec: VitSpec):
    """The ``transformers.DINOv3ViTConfig`` of ``spec``."""
    from transformers import DINOv3ViTConfig

    return DINOv3ViTConfig(
        patch_size=spec.patch_size,
        hidden_size=spec.hidden_size,
        intermediate_size=spec.intermediate_size,
        num_hidden_layers=spec.num_layers,
        num_attention_heads=spec.num_heads,
        num_register_tokens=spec.num_register_tokens,
        use_gated_mlp=spec.gated_mlp,
        rope_theta=DINOV3_ROPE_BASE,
        layer_norm_eps=1e-5,
        key_bias=False,
    )


def dinov2_hf_config(spec: VitSpec):
    """The ``transformers.Dinov2WithRegistersConfig`` of ``spec``."""
    from transformers import Dinov2WithRegistersConfig

    return Dinov2WithRegistersConfig(
        patch_size=spec.patch_size,
        hidden_size=spec.hidden_size,
        num_hidden_layers=spec.num_layers,
        num_attention_heads=spec.num_heads,
        mlp_ratio=spec.intermediate_size // spec.hidden_size,
        use_swiglu_ffn=spec.gated_mlp,
        num_register_tokens=spec.num_register_tokens,
        image_size=518,
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


def rope_periods(spec: VitSpec):
    """The official RoPE ``periods`` buffer: base ** (2 i / (head_dim / 2)), i < head_dim / 4."""
    import torch

    d = spec.head_dim
    return DINOV3_ROPE_BASE ** (2 * torch.arange(d // 4, dtype=torch.float32) / (d // 2))
