"""Time one bpr-ddpm training step (forward, backward, Adam, EMA) of the full-size U-Net.

Random weights and random data; a speed/memory figure, never an accuracy result.

    python plugins/bpr-diffusion/benchmarks/step_time.py --device cuda --patch 32 128 128 --bf16
    python plugins/bpr-diffusion/benchmarks/step_time.py --device cpu --patch 8 32 32 --steps 2
"""

from __future__ import annotations

import argparse
import json
import time

import torch
import torch.nn.functional as F
from medfeat_bpr_diffusion.config import UNetConfig
from medfeat_bpr_diffusion.networks import DiffusionUNet3d
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--patch", type=int, nargs=3, default=[32, 128, 128], help="numpy k j i")
    p.add_argument("--coord-channels", type=int, default=3)
    p.add_argument("--bf16", action="store_true")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=2)
    args = p.parse_args()
    dev = torch.device(args.device)
    torch.manual_seed(0)
    model = DiffusionUNet3d(UNetConfig(), args.coord_channels, args.patch).to(dev)
    ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(0.999))
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    x = torch.randn(1, 1, *args.patch, device=dev)
    c = torch.rand(1, args.coord_channels, *args.patch, device=dev)
    noise = torch.randn_like(x)
    t = torch.tensor([500], device=dev)

    def step() -> None:
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=args.bf16):
            eps = model(x, c, t)
        loss = F.mse_loss(eps.float(), noise)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        ema.update_parameters(model)

    for _ in range(args.warmup):
        step()
    if dev.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    for _ in range(args.steps):
        step()
    if dev.type == "cuda":
        torch.cuda.synchronize()
    result = {
        "device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu",
        "patch_vox": args.patch,
        "bf16": args.bf16,
        "parameters": sum(q.numel() for q in model.parameters()),
        "attention": model.attention,
        "seconds_per_step": round((time.perf_counter() - start) / args.steps, 4),
    }
    if dev.type == "cuda":
        result["peak_memory_gib"] = round(torch.cuda.max_memory_allocated(dev) / 2**30, 2)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
