"""``bpr-ddpm``: 3D DDPM pretraining on CT patches with channel-concatenated body-part coordinates.

Resumable (atomic checkpoints of model, EMA and optimiser; the patch/noise stream is a pure function
of seed and step), bf16 autocast on CUDA, DDP under ``torchrun`` (one patch stream per rank).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from medfeat.api import (
    DataError,
    Image,
    Interrupted,
    load_state_dict_strict,
    save_checkpoint,
    setup_distributed,
    stop_requests,
)
from medfeat_bpr_diffusion.checkpoints import DDPM_FORMAT, read_ddpm_checkpoint
from medfeat_bpr_diffusion.config import DiffusionConfig, PretrainConfig
from medfeat_bpr_diffusion.coordinates import build_provider, coordinates_on_grid
from medfeat_bpr_diffusion.networks import DiffusionUNet3d, unet_multiple_of
from medfeat_bpr_diffusion.preprocess import preprocess


def make_scheduler(config: DiffusionConfig) -> Any:
    """MONAI's DDPM noise schedule (``add_noise`` and ``alphas_cumprod``)."""
    from monai.networks.schedulers import DDPMScheduler

    return DDPMScheduler(
        num_train_timesteps=config.num_train_timesteps,
        schedule=config.schedule,
        beta_start=config.beta_start,
        beta_end=config.beta_end,
    )


def prepare_volume(
    image: Image, config: PretrainConfig, provider: Any, multiple_of: int
) -> tuple[torch.Tensor, torch.Tensor, Image]:
    """Canonical [0, 1] volume ``[1, *shape]``, its coordinate maps ``[C, *shape]`` and the image."""
    pre = preprocess(image, config.preprocess, multiple_of, config.patch_size_vox)
    coords = coordinates_on_grid(provider, image, pre.grid)
    return torch.from_numpy(pre.numpy())[None], coords, pre


class VolumeStream:
    """Streams preprocessed volumes from ``dataset.images()`` in order, keeping only a few in memory.

    Visit ``v`` is volume ``v mod N`` of the dataset (``N`` is learnt at the end of the first pass);
    reaching a volume behind the current position restarts the iteration.
    """

    def __init__(self, dataset: Any, prepare: Any, cache: int) -> None:
        self.dataset, self.prepare, self.cache_size = dataset, prepare, cache
        self.cache: OrderedDict[int, tuple[torch.Tensor, torch.Tensor]] = OrderedDict()
        self._iter: Any = None
        self._pos = 0  # index of the volume the iterator yields next
        self.count: int | None = None  # number of volumes, once one pass is complete

    def _restart(self) -> None:
        self._iter, self._pos = iter(self.dataset.images()), 0

    def get(self, visit: int) -> tuple[torch.Tensor, torch.Tensor]:
        key = visit % self.count if self.count else visit
        if key not in self.cache:
            if self._iter is None or self._pos > key:
                self._restart()
            while True:
                try:
                    image = next(self._iter)
                except StopIteration:
                    if self._pos == 0:
                        raise DataError("The pretraining dataset provides no images.") from None
                    self.count = self._pos
                    key = visit % self.count
                    if key in self.cache:
                        break
                    self._restart()
                    continue
                self._pos += 1
                if self._pos - 1 == key:
                    self.cache[key] = self.prepare(image)[:2]
                    break
            while len(self.cache) > self.cache_size:
                self.cache.popitem(last=False)
        self.cache.move_to_end(key)
        return self.cache[key]


def sample_batch(
    stream: VolumeStream, config: PretrainConfig, seed: int, step: int, rank: int, world: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Patches, coordinates, timesteps and noise of one step: a pure function of (seed, step, rank)."""
    xs, cs = [], []
    p = config.patch_size_vox
    for b in range(config.batch_size):
        visit = ((step * config.batch_size + b) // config.patches_per_volume) * world + rank
        vol, coords = stream.get(visit)
        rng = np.random.default_rng([seed, step, b, rank])
        start = [int(rng.integers(0, n - s + 1)) for n, s in zip(vol.shape[1:], p, strict=True)]
        sl = (slice(None), *[slice(a, a + s) for a, s in zip(start, p, strict=True)])
        xs.append(vol[sl])
        cs.append(coords[sl])
    gen = torch.Generator().manual_seed(
        int(np.random.default_rng([seed, step, rank, 7]).integers(2**62))
    )
    t = torch.randint(0, config.diffusion.num_train_timesteps, (config.batch_size,), generator=gen)
    noise = torch.randn((config.batch_size, 1, *p), generator=gen)
    return torch.stack(xs), torch.stack(cs), t, noise


class DDPMPretrainer:
    """Trains :class:`DiffusionUNet3d` to predict the noise of CT patches given their coordinates."""

    def __init__(self, config: PretrainConfig, context: Any) -> None:
        self.config, self.context = config, context

    def fit(self, dataset: Any, out_dir: Path, context: Any) -> dict:
        from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

        c = self.config
        place = setup_distributed(context.device)
        rank, world, device = place.rank, place.world_size, place.device
        provider = build_provider(c.coordinates, context)
        multiple_of = unet_multiple_of(c.unet)
        if any(s % multiple_of for s in c.patch_size_vox):
            raise DataError(
                f"patch_size_vox {c.patch_size_vox} must be divisible by {multiple_of} "
                f"(2 ** (levels - 1) for {len(c.unet.channel_mults)} U-Net levels).",
                remedy="Choose a patch size divisible by it, or fewer channel_mults.",
            )
        stream = VolumeStream(
            dataset, lambda img: prepare_volume(img, c, provider, multiple_of), c.cache_volumes
        )
        coord_channels = int(stream.get(rank)[1].shape[0])
        torch.manual_seed(context.seed)
        model = DiffusionUNet3d(c.unet, coord_channels, c.patch_size_vox).to(device)
        model.activation_checkpointing = c.activation_checkpointing
        ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(c.ema_decay))
        optimiser = torch.optim.Adam(model.parameters(), lr=c.lr)
        scheduler = make_scheduler(c.diffusion)
        ckpt_path = Path(out_dir) / "checkpoints" / "last.pt"
        step = 0
        if c.resume and ckpt_path.exists():
            state = read_ddpm_checkpoint(ckpt_path)
            load_state_dict_strict(model, state["model"], what="U-Net", path=ckpt_path)
            load_state_dict_strict(ema.module, state["ema"], what="U-Net (EMA)", path=ckpt_path)
            ema.n_averaged.fill_(int(state["ema_n_averaged"]))
            optimiser.load_state_dict(state["optimizer"])
            step = int(state["step"])
        train_model: Any = model
        if world > 1:
            from torch.nn.parallel import DistributedDataParallel

            train_model = DistributedDataParallel(
                model,
                device_ids=[torch.device(device).index] if device.startswith("cuda") else None,
            )
        use_bf16 = c.bf16 and device.startswith("cuda")
        alphas = scheduler.alphas_cumprod

        def save(at_step: int) -> None:
            if rank != 0:
                return
            meta = {
                "format": DDPM_FORMAT,
                "version": 1,
                "step": at_step,
                "coord_channels": coord_channels,
                "config": c.model_dump(mode="json"),
                "model": model.state_dict(),
                "ema": ema.module.state_dict(),
                "ema_n_averaged": int(ema.n_averaged.item()),
                "optimizer": optimiser.state_dict(),
            }
            save_checkpoint(meta, ckpt_path)

        start_time, start_step, losses = time.perf_counter(), step, []
        stopped = "max_steps"
        with stop_requests() as guard:
            while step < c.max_steps:
                out_of_time = bool(
                    c.max_wall_time_min
                    and time.perf_counter() - start_time > 60 * c.max_wall_time_min
                )
                stop, out_of_time = guard.agree(device, out_of_time)  # same step on all ranks
                if stop:
                    with guard.saving():
                        save(step)
                    raise Interrupted(
                        f"bpr-ddpm pretraining stopped by {guard.signal_name or 'a signal'} at step "
                        f"{step}; the checkpoint {ckpt_path} holds every step done.",
                        remedy="Run the same command again (resume is on by default) to continue "
                        "from that step.",
                    )
                if out_of_time:
                    stopped = "max_wall_time_min"
                    break
                x, coords, t, noise = sample_batch(stream, c, context.seed, step, rank, world)
                x, coords, noise, t = (v.to(device) for v in (x, coords, noise, t))
                x0 = 2.0 * x - 1.0  # DDPM works on [-1, 1]
                ab = alphas.to(device)[t].view(-1, 1, 1, 1, 1)
                x_t = ab.sqrt() * x0 + (1 - ab).sqrt() * noise
                with torch.autocast("cuda", dtype=torch.bfloat16, enabled=use_bf16):
                    eps = train_model(x_t, coords, t)
                loss = F.mse_loss(eps.float(), noise)
                optimiser.zero_grad(set_to_none=True)
                loss.backward()
                if c.grad_clip:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), c.grad_clip)
                optimiser.step()
                ema.update_parameters(model)
                step += 1
                losses.append(float(loss.detach()))
                if step % c.log_every_steps == 0:
                    context.progress.log(
                        f"step {step}: loss {np.mean(losses[-c.log_every_steps :]):.4f}"
                    )
                if step % c.checkpoint_every_steps == 0:
                    save(step)
        save(step)
        elapsed = time.perf_counter() - start_time
        done = step - start_step
        return {
            "steps": step,
            "steps_this_run": done,
            "stopped_by": stopped if step < c.max_steps else "max_steps",
            "seconds_per_step": round(elapsed / done, 4) if done else None,
            "loss_last_50": round(float(np.mean(losses[-50:])), 5) if losses else None,
            "loss_first_50": round(float(np.mean(losses[:50])), 5) if losses else None,
            "checkpoint": str(ckpt_path),
            "coordinate_channels": coord_channels,
            "parameters": sum(p.numel() for p in model.parameters()),
            "volumes_seen": stream.count,
            "device": device,
            "world_size": world,
            "bf16": use_bf16,
        }


def build_from_checkpoint(path: Path, weights: str = "ema") -> tuple[DiffusionUNet3d, dict]:
    """The U-Net of a ``bpr-ddpm`` checkpoint (strictly loaded) and the checkpoint's config dict."""
    state = read_ddpm_checkpoint(path)
    config = PretrainConfig.model_validate(state["config"])
    model = DiffusionUNet3d(config.unet, int(state["coord_channels"]), config.patch_size_vox)
    key = "ema" if weights == "ema" else "model"
    load_state_dict_strict(model, state[key], what="U-Net", path=path)
    return model, state


def make_pretrainer(config: PretrainConfig, context: Any) -> DDPMPretrainer:
    return DDPMPretrainer(config, context)
