"""Training loop: AdamW, warm-up then constant LR, EMA, clipping, bf16, atomic resumable checkpoints.

Every random draw of step ``k`` (batch order, flips, timesteps, noise, dropout) derives from
``(seed, k)``, so a run interrupted and resumed from its last checkpoint reproduces the
uninterrupted run exactly. Multi-GPU: launch with ``torchrun``; each rank takes its share of
every global batch (DistributedDataParallel).
"""

from __future__ import annotations

import time
from pathlib import Path

import torch
from torch import nn

from medfeat.api import (
    CheckpointError,
    Interrupted,
    load_state_dict_strict,
    read_checkpoint,
    save_checkpoint,
    setup_distributed,
    stop_requests,
)
from medfeat_leaf.backbone import teacher_tokens_batched
from medfeat_leaf.metrics import mean_dice_iou
from medfeat_leaf.model import LeafModel
from medfeat_leaf.tensors import image_tensor, mask_tensor, to_input_grid

CHECKPOINT = Path("checkpoints") / "last.pt"
FINAL = "leaf.pt"


def _step_seed(seed: int, step: int) -> int:
    return (seed * 1_000_003 + step * 7_919 + 17) % (2**62)


class _Batches:
    """Global batch ``k`` = positions [k*B, (k+1)*B) of an endless stream of seeded epochs."""

    def __init__(self, n: int, batch: int, seed: int) -> None:
        self.n, self.batch, self.seed = n, batch, seed
        self._perms: dict[int, torch.Tensor] = {}

    def _perm(self, epoch: int) -> torch.Tensor:
        if epoch not in self._perms:
            g = torch.Generator().manual_seed(_step_seed(self.seed, -1 - epoch))
            self._perms = {epoch: torch.randperm(self.n, generator=g)}
        return self._perms[epoch]

    def indices(self, step: int) -> torch.Tensor:
        pos = range(step * self.batch, (step + 1) * self.batch)
        return torch.stack([self._perm(p // self.n)[p % self.n] for p in pos])


def evaluate(
    model: LeafModel, samples, size_px: int, device: str, seed: int = 0
) -> dict[str, float]:
    """Mean Dice/IoU of single-step predictions on the samples' own grids."""
    pairs = []
    g = torch.Generator().manual_seed(seed)
    was_training = model.training
    model.eval()
    for s in samples:
        x = image_tensor(s.image, size_px)[None].to(device) * 2 - 1
        pred = model.predict_mask(x, g)[0].cpu()
        pairs.append((to_input_grid(pred, s.image).numpy(), s.labels.numpy() > 0))
    model.train(was_training)
    return mean_dice_iou(pairs)


class Trainer:
    """Fits a :class:`LeafModel` on segmentation samples; optional teacher for distillation."""

    def __init__(self, model: LeafModel, out_dir: Path, context, teacher=None) -> None:
        self.model, self.out_dir, self.context, self.teacher = (
            model,
            Path(out_dir),
            context,
            teacher,
        )
        self.cfg = model.config.training
        #: mask latents by (sample index, horizontal flip, vertical flip); see _mask_latents
        self._latents: dict[tuple[int, bool, bool], torch.Tensor] = {}
        self.cache_mask_latents = True
        place = setup_distributed(context.device)
        self.rank, self.world, self.device = place.rank, place.world_size, place.device

    # ----------------------------------------------------------------- data
    def _tensors(self, samples) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        size = self.cfg.image_size_px
        images = torch.stack([image_tensor(s.image, size) for s in samples])
        masks = torch.stack([mask_tensor(s.labels, size) for s in samples])
        tokens = None
        if self.teacher is not None:
            grid = self.model.token_grid(size)
            tsize = self.cfg.teacher_image_size_px or size
            per = self.cfg.teacher_batch_images
            chunks = [samples[i : i + per] for i in range(0, len(samples), per)]
            tokens = torch.cat(
                [
                    teacher_tokens_batched(
                        self.teacher,
                        torch.stack([image_tensor(s.image, tsize) for s in chunk]),
                        grid,
                        per,
                    )
                    for chunk in self.context.progress.track(chunks, "Teacher tokens")
                ]
            ).reshape(len(samples), *grid, -1)
        return images, masks, tokens

    def _mask_latents(self, keys: list[tuple[int, bool, bool]], masks: torch.Tensor):
        """z^y of the batch's (flipped) masks, each encoded once per training run: the codec is
        frozen and deterministic, so a (sample, flips) pair always has the same latent. Each is
        encoded alone, so its value does not depend on the batch it first came in."""
        for key, mask in zip(keys, masks, strict=True):
            if key not in self._latents:
                self._latents[key] = self.model.encode_masks(mask[None])
        return torch.cat([self._latents[k] for k in keys])

    # ----------------------------------------------------------------- state
    def _state(self, step, opt, sched, ema, history) -> dict:
        return {
            "step": step,
            "trainable": self.model.trainable_modules().state_dict(),
            "optimizer": opt.state_dict(),
            "scheduler": sched.state_dict(),
            "ema": ema.state_dict(),
            "history": history,
        }

    def fit(self, train, validation) -> dict:
        from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

        cfg, model = self.cfg, self.model
        images, masks, tokens = self._tensors(train)
        if tokens is not None and model.projector is None:
            model.add_projector(tokens.shape[-1])
        model.to(self.device).train()
        trainable = model.trainable_modules()
        params = [p for p in trainable.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        warm = cfg.warmup_steps
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda s: min(1.0, (s + 1) / warm) if warm else 1.0
        )
        ema = AveragedModel(
            trainable, multi_avg_fn=get_ema_multi_avg_fn(cfg.ema_decay), use_buffers=True
        )
        step, history = 0, []
        ckpt = self.out_dir / CHECKPOINT
        if cfg.resume and ckpt.is_file():
            step, history = self._resume(ckpt, trainable, opt, sched, ema)
            self.context.progress.log(f"LEAF: resuming from step {step} ({ckpt})")
        net: nn.Module = model
        if self.world > 1:
            net = nn.parallel.DistributedDataParallel(
                model, device_ids=[self.device] if self.device.startswith("cuda") else None
            )
        batches = _Batches(len(images), cfg.batch_size * self.world, self.context.seed)
        autocast = self.device.startswith("cuda") and cfg.bf16
        start, losses = time.monotonic(), []
        report = self.context.progress.callback("LEAF training")
        with stop_requests() as guard:
            while step < cfg.max_steps:
                out_of_time = (
                    cfg.max_minutes is not None and time.monotonic() - start > cfg.max_minutes * 60
                )
                stop, out_of_time = guard.agree(self.device, out_of_time)  # same step on all ranks
                if stop:
                    with guard.saving():
                        if self.rank == 0:
                            save_checkpoint(self._state(step, opt, sched, ema, history), ckpt)
                    raise Interrupted(
                        f"LEAF training stopped by {guard.signal_name or 'a signal'} at step {step}; "
                        f"the checkpoint {ckpt} holds every step done.",
                        remedy="Run the same command again (training.resume is on by default) to "
                        "continue from that step.",
                    )
                if out_of_time:
                    self.context.progress.log(f"LEAF: wall-clock bound reached at step {step}")
                    break
                seed = _step_seed(self.context.seed, step)
                torch.manual_seed(seed)  # dropout
                g = torch.Generator().manual_seed(seed)
                idx = batches.indices(step)[
                    self.rank * cfg.batch_size : (self.rank + 1) * cfg.batch_size
                ]
                x, m = images[idx] * 2 - 1, masks[idx]
                tok = tokens[idx] if tokens is not None else None
                keys = [(int(i), False, False) for i in idx]
                if cfg.hflip:
                    flips = torch.rand(len(idx), 2, generator=g) < 0.5
                    for i, (fh, fv) in enumerate(flips.tolist()):
                        keys[i] = (keys[i][0], fh, fv)
                        dims = [d for d, f in ((-1, fh), (-2, fv)) if f]
                        if dims:
                            x[i], m[i] = x[i].flip(dims), m[i].flip(dims)
                            if tok is not None:
                                tok[i] = tok[i].flip([d - 1 for d in dims])  # [h, w, D]
                x, m = x.to(self.device), m.to(self.device)
                tok = tok.flatten(1, 2).to(self.device) if tok is not None else None
                with torch.autocast("cuda", dtype=torch.bfloat16, enabled=autocast):
                    z_y = self._mask_latents(keys, m) if self.cache_mask_latents else None
                    out = net(x, m, g, tok, mask_latents=z_y)
                opt.zero_grad(set_to_none=True)
                out["total"].backward()
                torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
                opt.step()
                sched.step()
                ema.update_parameters(trainable)
                step += 1
                losses.append({k: float(v.detach()) for k, v in out.items()})
                if report:  # one step name, so the bar and the time left stay meaningful
                    done = step / cfg.max_steps
                    if cfg.max_minutes:  # a wall-clock bound may end the run first
                        done = max(done, (time.monotonic() - start) / (cfg.max_minutes * 60))
                    report("training", min(done, 1.0))
                if step % 50 == 0 and self.rank == 0:  # loss curve in medfeat.log (and with -v)
                    self.context.progress.log(
                        f"LEAF step {step}: loss {losses[-1]['total']:.4f}", level=1
                    )
                if step % cfg.validate_every_steps == 0 and validation and self.rank == 0:
                    history.append({"step": step, **self._validate(ema, validation)})
                    self.context.progress.log(f"LEAF step {step}: {history[-1]}")
                if step % cfg.checkpoint_every_steps == 0 and self.rank == 0:
                    save_checkpoint(self._state(step, opt, sched, ema, history), ckpt)
        if report:
            report("done", 1.0)
        if self.rank == 0:
            save_checkpoint(self._state(step, opt, sched, ema, history), ckpt)
        final = self._final_weights(ema, trainable)
        if self.rank == 0:
            save_checkpoint(
                {
                    "config": model.config.model_dump(mode="json"),
                    "teacher_dim": None if tokens is None else int(tokens.shape[-1]),
                    "weights": final,
                    "step": step,
                    **self._codec_state(),
                },
                self.out_dir / FINAL,
            )
        metrics = {"steps": step, "train_seconds": time.monotonic() - start, "history": history}
        if losses:
            tail = losses[-min(50, len(losses)) :]
            metrics["final_loss"] = {k: sum(d[k] for d in tail) / len(tail) for k in tail[0]}
        self._load_weights(final)  # the model in memory is the one written to leaf.pt
        model.eval()
        if validation and self.rank == 0:
            metrics["validation"] = evaluate(model, validation, cfg.image_size_px, self.device)
        return metrics

    def _resume(self, ckpt: Path, trainable, opt, sched, ema) -> tuple[int, list]:
        """Load the resumable state of ``ckpt`` (written by :meth:`fit`) into the live objects."""
        remedy = f"Delete {ckpt} to start afresh, or set training.resume: false."
        what = "LEAF training (resumable state, checkpoints/last.pt)"
        state = read_checkpoint(
            ckpt, what=what, remedy=remedy, map_location=self.device, plain=True
        )
        try:
            load_state_dict_strict(
                trainable, state["trainable"], what=what, path=ckpt, remedy=remedy
            )
            opt.load_state_dict(state["optimizer"])
            sched.load_state_dict(state["scheduler"])
            ema.load_state_dict(state["ema"])
            return int(state["step"]), list(state["history"])
        except (KeyError, TypeError, ValueError, RuntimeError) as exc:
            raise CheckpointError(
                f"The {what} {ckpt} was not written by this LEAF configuration's training "
                f"({type(exc).__name__}: {str(exc)[:200]}).",
                remedy=remedy,
            ) from None

    def _codec_state(self) -> dict:
        """The frozen mask codec travels with the weights (a VAE is needed to decode)."""
        state = self.model.mask_codec.state_dict()
        return {"mask_codec": {k: v.detach().cpu() for k, v in state.items()}} if state else {}

    def _final_weights(self, ema, trainable) -> dict:
        src = ema.module if self.model.config.use_ema else trainable
        return {k: v.detach().cpu().clone() for k, v in src.state_dict().items()}

    def _load_weights(self, weights: dict) -> None:
        self.model.trainable_modules().load_state_dict(weights)

    def _validate(self, ema, validation) -> dict:
        trainable = self.model.trainable_modules()
        backup = {k: v.detach().clone() for k, v in trainable.state_dict().items()}
        src = ema.module if self.model.config.use_ema else trainable
        trainable.load_state_dict(src.state_dict())
        try:
            return evaluate(self.model, validation, self.cfg.image_size_px, self.device)
        finally:
            trainable.load_state_dict(backup)
