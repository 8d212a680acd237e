"""Cost of LEAF training and inference: mask latents encoded once per (sample, flips), batched
teacher tokens, inference without autograd - each with the same results as before."""

from __future__ import annotations

import torch
from medfeat_leaf import networks as nets
from medfeat_leaf.backbone import PatchDescriptor2D, teacher_tokens, teacher_tokens_batched
from medfeat_leaf.build import build_leaf
from medfeat_leaf.model import LeafModel
from medfeat_leaf.train import Trainer

from medfeat.context import RunContext


def _params(model):
    return {k: v.detach().clone() for k, v in model.trainable_modules().state_dict().items()}


def _count_encodes(model) -> list[int]:
    calls: list[int] = []
    original = model.mask_codec.encode
    model.mask_codec.encode = lambda masks: calls.append(len(masks)) or original(masks)
    return calls


def test_mask_latents_are_encoded_once_per_sample_and_flips_with_the_same_training(
    tiny, blobs, tmp_path
):
    train = blobs("train", 3)
    runs = {}
    for cached in (False, True):
        torch.manual_seed(0)
        model = build_leaf(tiny(max_steps=6, batch_size=2))
        calls = _count_encodes(model)
        trainer = Trainer(model, tmp_path / str(cached), RunContext(seed=1), PatchDescriptor2D(8))
        trainer.cache_mask_latents = cached
        trainer.fit(train, [])
        runs[cached] = (_params(model), calls, len(trainer._latents))
    (before, calls_before, _), (after, calls_after, kept) = runs[False], runs[True]
    assert calls_before == [2] * 6  # the whole batch, every step
    assert calls_after == [1] * kept and kept <= 3 * 4  # each (sample, flips) pair once
    assert kept < 6 * 2  # fewer encodings than before: pairs came back
    assert before.keys() == after.keys()
    for k in before:
        assert torch.equal(before[k], after[k]), k


def _vae_leaf(tiny) -> LeafModel:
    """The LEAF model with a (small) frozen kl VAE mask codec, as the ldm-kl-8 preset has."""
    torch.manual_seed(0)
    small = build_leaf(tiny())
    vae = nets.build_vae((32, 32), 4, 1, 8)
    unet = nets.build_unet(nets.unet_spec(tiny().architecture), 8, 4)
    return LeafModel(
        small.config, nets.small_image_encoder((8, 16), 4), nets.VAEMaskCodec(vae), unet
    )


def test_precomputed_mask_latents_give_the_same_loss_with_a_vae_codec(tiny):
    model = _vae_leaf(tiny).train()
    x = torch.rand(3, 3, 32, 32) * 2 - 1
    m = (torch.rand(3, 1, 32, 32) > 0.5).float()
    latents = torch.cat([model.encode_masks(mask[None]) for mask in m])  # as the trainer does
    assert not latents.requires_grad
    torch.manual_seed(4)
    plain = model.loss(x, m, torch.Generator().manual_seed(2))["total"]
    torch.manual_seed(4)  # the same dropout
    given = model.loss(x, m, torch.Generator().manual_seed(2), mask_latents=latents)["total"]
    torch.testing.assert_close(given, plain, atol=1e-6, rtol=1e-5)
    batched = model.encode_masks(m)  # channels-last on CPU for a batch of 3, unlike one mask
    torch.manual_seed(4)
    again = model.loss(x, m, torch.Generator().manual_seed(2), mask_latents=batched)["total"]
    torch.testing.assert_close(again, plain, atol=1e-6, rtol=1e-5)  # same dropout draw


def test_teacher_tokens_are_computed_in_batches_with_the_same_values():
    descriptor = PatchDescriptor2D(patch_size_px=8)
    calls: list[int] = []

    class Counting:
        def tokens(self, rgb):
            calls.append(len(rgb))
            return descriptor.tokens(rgb)

    rgb = torch.rand(7, 3, 48, 40, generator=torch.Generator().manual_seed(0))
    got = teacher_tokens_batched(Counting(), rgb, (3, 4), batch_images=3)
    assert calls == [3, 3, 1]
    expected = torch.stack([teacher_tokens(descriptor, x, (3, 4)) for x in rgb])
    torch.testing.assert_close(got, expected, atol=1e-6, rtol=1e-5)


def test_the_trainer_asks_the_teacher_for_batches(tiny, blobs, tmp_path):
    calls: list[int] = []
    descriptor = PatchDescriptor2D(patch_size_px=8)

    class Counting:
        def tokens(self, rgb):
            calls.append(len(rgb))
            return descriptor.tokens(rgb)

    torch.manual_seed(0)
    model = build_leaf(tiny(max_steps=1, teacher_batch_images=4))
    Trainer(model, tmp_path, RunContext(seed=1), Counting()).fit(blobs("train", 5), [])
    assert calls == [4, 1]


def test_inference_runs_without_autograd(tiny):
    model = build_leaf(tiny()).eval()
    seen = []
    model.unet.register_forward_hook(
        lambda *a: seen.append(torch.is_inference_mode_enabled() and not torch.is_grad_enabled())
    )
    prob = model.predict_probability(torch.rand(2, 3, 32, 32) * 2 - 1)
    assert seen == [True] and not prob.requires_grad
