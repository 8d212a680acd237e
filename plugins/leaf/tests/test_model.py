"""The LEAF model: single-step inference from t = T, thresholding, and its losses."""

from __future__ import annotations

import pytest
import torch
from medfeat_leaf.build import build_leaf
from medfeat_leaf.model import distillation_loss
from torch.nn import functional as F


def test_single_step_inference_shapes_threshold_and_seed(tiny):
    torch.manual_seed(0)
    model = build_leaf(tiny()).eval()
    x = torch.rand(3, 3, 32, 32) * 2 - 1
    g = lambda: torch.Generator().manual_seed(5)  # noqa: E731
    prob = model.predict_probability(x, g())
    assert prob.shape == (3, 1, 32, 32) and prob.min() >= 0 and prob.max() <= 1
    torch.testing.assert_close(prob, model.predict_probability(x, g()))  # same seed, same output
    assert torch.equal(model.predict_mask(x, g()), prob > 0.5)
    model.config.threshold = 0.2
    assert torch.equal(model.predict_mask(x, g()), prob > 0.2)


def test_inference_uses_t_max_and_the_x0_estimate(tiny, monkeypatch):
    model = build_leaf(tiny()).eval()
    seen = {}

    def fake_denoise(z_x, z_t, t):
        seen["t"] = t
        return torch.full_like(z_t, 0.6)  # x0 latent -> mask value (0.6 + 1) / 2 = 0.8

    monkeypatch.setattr(model, "denoise", fake_denoise)
    prob = model.predict_probability(torch.zeros(2, 3, 32, 32))
    assert seen["t"].tolist() == [999, 999]
    torch.testing.assert_close(prob, torch.full((2, 1, 32, 32), 0.8))


def test_distillation_loss_is_the_plain_mean_negative_cosine():
    g = torch.Generator().manual_seed(0)
    p, q = torch.randn(3, 7, 5, generator=g), torch.randn(3, 7, 5, generator=g)
    manual = (
        -sum(F.cosine_similarity(p[b, n], q[b, n], dim=0) for b in range(3) for n in range(7)) / 21
    )
    torch.testing.assert_close(distillation_loss(p, q), manual)
    # no division by the batch size twice: repeating a batch does not change the loss
    torch.testing.assert_close(
        distillation_loss(p[:1].repeat(4, 1, 1), q[:1].repeat(4, 1, 1)),
        distillation_loss(p[:1], q[:1]),
    )
    assert distillation_loss(p, p).item() == pytest.approx(-1.0)
    assert distillation_loss(p, -p).item() == pytest.approx(1.0)


@pytest.mark.parametrize("prediction", ["x0", "epsilon"])
def test_sdseg_x0_term_is_the_l1_of_the_x0_estimate(tiny, prediction, monkeypatch):
    cfg = tiny().model_copy(update={"prediction": prediction, "x0_loss_weight": 1.0})
    torch.manual_seed(0)
    model = build_leaf(cfg)
    seen = {}
    real = model.denoise

    def spy(z_x, z_t, t):
        out = real(z_x, z_t, t)
        seen.update(z_t=z_t, t=t, out=out)
        return out

    monkeypatch.setattr(model, "denoise", spy)
    images, masks = torch.rand(2, 3, 32, 32) * 2 - 1, (torch.rand(2, 1, 32, 32) > 0.5).float()
    result = model.loss(images, masks, torch.Generator().manual_seed(1))
    z_y = model.mask_codec.encode(masks)
    x0_hat = model.schedule.to_x0(prediction, seen["out"], seen["z_t"], seen["t"])
    torch.testing.assert_close(result["x0"], F.l1_loss(x0_hat, z_y))
    torch.testing.assert_close(result["total"], result["diffusion"] + result["x0"])
    if prediction == "x0":  # the extra term repeats LEAF's own loss
        torch.testing.assert_close(result["x0"], result["diffusion"])


# ---------------------------------------------------------------- fidelity to the LEAF reference
def _vae_leaf(tiny, **options):
    """A LEAF model with a (tiny) kl-style VAE as mask codec and image encoder, like ldm-kl-8,
    whose U-Net output is large enough for the x0 clamp to matter."""
    from medfeat_leaf.model import LeafModel
    from medfeat_leaf.networks import ImageEncoder, UNetSpec, VAEMaskCodec, build_unet, build_vae

    torch.manual_seed(0)
    vae = build_vae((32, 32), latent_channels=4, layers_per_block=1, norm_groups=8).eval()
    unet = build_unet(UNetSpec((32, 64), (False, True), 1, 2, 0.0), 8, 4).eval()
    with torch.no_grad():
        unet.conv_out.weight.mul_(40)
    config = tiny().model_copy(update=options)
    return LeafModel(config, ImageEncoder.from_vae(vae), VAEMaskCodec(vae), unet).eval(), vae, unet


def _reference_prediction(vae, unet, images, seed, *, scale=True, clip=True):
    """LEAF single-step inference from its documented maths: z^x = posterior mode of the image x
    0.18215; z_T ~ N(0, I); U-Net(concat(z^x, z_T), 999) predicts x0; one DDIM step (diffusers,
    prediction_type 'sample', clip_sample as given) from t = 999; decode x0 / 0.18215, clamp to
    [-1, 1], map to [0, 1] and average the channels."""
    from diffusers import DDIMScheduler

    with torch.no_grad():
        z_x = vae.encode(images).latent_dist.mode() * (0.18215 if scale else 1.0)
        z_t = torch.randn(z_x.shape, generator=torch.Generator().manual_seed(seed))
        out = unet(torch.cat([z_x, z_t], 1), torch.full((images.shape[0],), 999)).sample
        ddim = DDIMScheduler(
            num_train_timesteps=1000,
            beta_start=0.0015,
            beta_end=0.0155,
            beta_schedule="linear",
            prediction_type="sample",
            clip_sample=clip,
        )
        ddim.set_timesteps(1)
        x0 = ddim.step(out, 999, z_t).prev_sample
        decoded = vae.decode(x0 / 0.18215).sample.clamp(-1, 1)
    return ((decoded + 1) / 2).mean(1, keepdim=True), out


def test_single_step_inference_is_the_reference_computation(tiny):
    model, vae, unet = _vae_leaf(tiny)
    images = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(1)) * 2 - 1
    expected, raw_x0 = _reference_prediction(vae, unet, images, seed=7)
    assert raw_x0.abs().max() > 2  # the clamp matters for this U-Net
    got = model.predict_probability(images, torch.Generator().manual_seed(7))
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
    unclamped, _ = _reference_prediction(vae, unet, images, seed=7, clip=False)
    assert (got - unclamped).abs().max() > 1e-3  # so the comparison above can fail
    unscaled, _ = _reference_prediction(vae, unet, images, seed=7, scale=False)
    assert (got - unscaled).abs().max() > 1e-3


@pytest.mark.parametrize(
    ("options", "scale", "clip"),
    [
        ({"scale_image_latent": False}, False, True),
        ({"clip_x0": False}, True, False),
        ({"scale_image_latent": False, "clip_x0": False}, False, False),
    ],
)
def test_departures_from_the_reference_are_opt_in(tiny, options, scale, clip):
    assert tiny().scale_image_latent and tiny().clip_x0  # the defaults are the reference's
    model, vae, unet = _vae_leaf(tiny, **options)
    images = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(2)) * 2 - 1
    expected, _ = _reference_prediction(vae, unet, images, seed=3, scale=scale, clip=clip)
    got = model.predict_probability(images, torch.Generator().manual_seed(3))
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("scale", [True, False])
def test_training_conditions_the_unet_on_the_scaled_image_latent(tiny, monkeypatch, scale):
    model, vae, _ = _vae_leaf(tiny, scale_image_latent=scale)
    seen = {}
    real = model.denoise

    def spy(z_x, z_t, t):
        seen["z_x"] = z_x
        return real(z_x, z_t, t)

    monkeypatch.setattr(model, "denoise", spy)
    images = torch.rand(2, 3, 32, 32) * 2 - 1
    model.loss(images, (torch.rand(2, 1, 32, 32) > 0.5).float(), torch.Generator().manual_seed(0))
    with torch.no_grad():
        mode = vae.encode(images).latent_dist.mode()
    torch.testing.assert_close(seen["z_x"], mode * (0.18215 if scale else 1.0))


def test_a_leaf_pt_trained_before_the_reference_fix_keeps_its_behaviour(tiny, tmp_path):
    from medfeat_leaf.heads import load_trained

    from medfeat.weights import save_checkpoint

    model = build_leaf(tiny())
    stored = model.config.model_dump(mode="json")
    for key in ("scale_image_latent", "clip_x0"):
        del stored[key]
    weights = {k: v.detach() for k, v in model.trainable_modules().state_dict().items()}
    save_checkpoint({"config": stored, "weights": weights, "step": 0}, tmp_path / "old.pt")
    old = load_trained(tmp_path / "old.pt")
    assert not old.config.scale_image_latent and not old.config.clip_x0
    save_checkpoint(
        {"config": model.config.model_dump(mode="json"), "weights": weights, "step": 0},
        tmp_path / "new.pt",
    )
    new = load_trained(tmp_path / "new.pt")
    assert new.config.scale_image_latent and new.config.clip_x0
