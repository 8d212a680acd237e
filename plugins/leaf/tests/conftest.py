"""Tiny LEAF configurations shared by the plugin's tests."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    """Tiny models run fastest on one thread; several threads on a shared CPU oversubscribe it."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny_config(**training):
    from medfeat_leaf.config import LeafConfig

    return LeafConfig.model_validate(
        {
            "architecture": {
                "preset": "small",
                "mask_downsample": 4,
                "unet_channels": [32, 64],
                "unet_attention_levels": [False, True],
                "unet_layers_per_level": 1,
                "unet_num_heads": 2,
                "encoder_channels": [8, 16, 16],
                "dropout": 0.1,
            },
            "distillation": {"projector_hidden": 16},
            "training": {
                "image_size_px": 32,
                "batch_size": 2,
                "max_steps": 4,
                "lr": 1e-3,
                "warmup_steps": 2,
                "ema_decay": 0.5,
                "checkpoint_every_steps": 2,
                "validate_every_steps": 100,
                "teacher_image_size_px": None,
                **training,
            },
        }
    )


@pytest.fixture
def tiny():
    return tiny_config


@pytest.fixture
def blobs():
    """Generated samples: ``blobs(split, n, size)``."""
    from medfeat_leaf.config import SyntheticBlobsConfig
    from medfeat_leaf.datasets import SyntheticBlobs

    def make(split: str = "train", n: int = 6, size: int = 32):
        cfg = SyntheticBlobsConfig(size_px=size, n_train=n, n_validation=n, n_test=n)
        return list(SyntheticBlobs(cfg).segmentation_samples(split))

    return make
