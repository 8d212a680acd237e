"""Speed/memory of the full-size LEAF model (LDM-KL-8 U-Net + kl-f8 VAE, RANDOM weights) at 256².

Times one training step (batch 4, bf16 autocast on CUDA, distillation projector on 16x16 tokens
against random 768-d teacher tokens) and single-step inference (batch 1). Random weights: these
are timings, never accuracy figures.

    python plugins/leaf/benchmarks/full_size_timing.py --device cuda --out leaf-timing.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--device", default="cuda")
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch default)")
    p.add_argument("--skip-train", action="store_true")
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args()

    import torch
    from medfeat_leaf.build import build_leaf
    from medfeat_leaf.config import LeafConfig

    if args.threads:
        torch.set_num_threads(args.threads)
    cuda = args.device.startswith("cuda")

    def sync():
        if cuda:
            torch.cuda.synchronize()

    torch.manual_seed(0)
    model = build_leaf(LeafConfig(from_scratch=True, training={"image_size_px": args.size}))
    model.add_projector(768)
    model.to(args.device)
    n_params = sum(p.numel() for p in model.parameters())
    n_train = sum(p.numel() for p in model.trainable_modules().parameters() if p.requires_grad)
    result = {"device": args.device, "size_px": args.size, "params_total": n_params,
              "params_trainable": n_train, "torch": torch.__version__}  # fmt: skip
    if cuda:
        result["gpu"] = torch.cuda.get_device_name()
    g = torch.Generator().manual_seed(0)
    grid = model.token_grid(args.size)
    if not args.skip_train:
        params = [p for p in model.trainable_modules().parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=4e-5)
        x = torch.rand(args.batch, 3, args.size, args.size, device=args.device) * 2 - 1
        m = (torch.rand(args.batch, 1, args.size, args.size, device=args.device) > 0.5).float()
        tok = torch.randn(args.batch, grid[0] * grid[1], 768, device=args.device)
        times = []
        for i in range(args.repeats + 1):
            sync()
            t0 = time.perf_counter()
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=cuda):
                loss = model.loss(x, m, g, tok)["total"]
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            sync()
            if i:
                times.append(time.perf_counter() - t0)
        result["train_step_s"] = {"batch": args.batch, "median": sorted(times)[len(times) // 2]}
        if cuda:
            result["train_peak_mem_gib"] = torch.cuda.max_memory_allocated() / 2**30
            torch.cuda.reset_peak_memory_stats()
    model.eval()
    x = torch.rand(1, 3, args.size, args.size, device=args.device) * 2 - 1
    times = []
    for i in range(args.repeats + 1):
        sync()
        t0 = time.perf_counter()
        with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16, enabled=cuda):
            model.predict_mask(x, g)
        sync()
        if i:
            times.append(time.perf_counter() - t0)
    result["inference_s"] = {"batch": 1, "median": sorted(times)[len(times) // 2]}
    if cuda:
        result["inference_peak_mem_gib"] = torch.cuda.max_memory_allocated() / 2**30
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
