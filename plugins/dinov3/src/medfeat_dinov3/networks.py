"""The ViT architectures the plugin knows: sizes, Hugging Face configs and the frozen modules."""

from __future__ import annotations

from dataclasses import dataclass

import torch


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


@dataclass
class SliceModel:
    """A frozen 2D ViT and what is needed to read its patch tokens."""

    module: torch.nn.Module
    patch_size: int
    num_prefix_tokens: int
    hidden_size: int
    description: str


def _materialise(module: torch.nn.Module, seed: int | None) -> torch.nn.Module:
    """Allocate a module built on the ``meta`` device: random weights when ``seed`` is given
    (normal(0, 0.02) matrices, unit norms and layer scales, zero biases), else uninitialised memory
    that a strict state-dict load fills. Much faster than transformers' own initialisation."""
    module = module.to_empty(device="cpu")
    rope = getattr(module, "rope_embeddings", None)
    if rope is not None:  # the only non-persistent buffer (DINOv3); as transformers computes it
        rope.inv_freq = 1 / rope.base ** torch.arange(0, 1, 4 / rope.head_dim, dtype=torch.float32)
    if seed is not None:
        gen = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for name, p in module.named_parameters():
                if name.endswith("bias"):
                    p.zero_()
                elif p.ndim == 1:  # norms and layer scales
                    p.fill_(1.0)
                else:
                    p.copy_(0.02 * torch.randn(p.shape, generator=gen))
    return module.eval()


def build_dinov3(spec: VitSpec, seed: int | None = None) -> torch.nn.Module:
    """``DINOv3ViTModel`` of ``spec``: random (``seed``) or allocated for a strict load."""
    from transformers import DINOv3ViTModel

    with torch.device("meta"):
        module = DINOv3ViTModel(dinov3_hf_config(spec))
    return _materialise(module, seed)


def build_dinov2(spec: VitSpec, seed: int | None = None) -> torch.nn.Module:
    """``Dinov2WithRegistersModel`` of ``spec``: random (``seed``) or allocated for a strict load."""
    from transformers import Dinov2WithRegistersModel

    with torch.device("meta"):
        module = Dinov2WithRegistersModel(dinov2_hf_config(spec))
    return _materialise(module, seed)
