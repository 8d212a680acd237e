"""CPU benchmark: bounded bpr-ddpm pretraining on the shared real CT, then the same FPN probe on three
feature sources (pretrained bpr-diffusion, the same network randomly initialised, MIND-SSC).

Everything runs through YAML pipelines and the CLI (``medfeat run``). Split of the labelled abdomen
CT (``example_ct_sm`` + ``example_seg``, 30 slices of 3 mm): probe trained on numpy slices 0-14, Dice
measured on slices 15-29. Pretraining uses no labels; its volumes are the abdomen CT
(``example_ct.nii.gz``, which contains the labelled slices) and the lung4dct T00 phases.

    python plugins/bpr-diffusion/benchmarks/probe_benchmark.py --out out/bpr-bench \
        --pretrain-minutes 20 --probe-steps 2000 --probe-minutes 8 --threads 2

A CPU-sized model and schedule: the paper's 67.8 Dice needs full-size pretraining on GPUs.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[3]
DATA = REPO.parent / "shared" / "data"
LABELS = {1: "spleen", 2: "kidney R", 3: "kidney L", 5: "liver", 6: "stomach", 7: "pancreas",
          20: "colon", 52: "aorta", 63: "IVC"}  # fmt: skip
UNET = {"base_channels": 8, "channel_mults": [1, 2, 4], "num_res_blocks": 1,
        "attention_heads": 2, "attention_head_channels": 8}  # fmt: skip
PATCH = [16, 32, 32]
PREPROCESS = {"spacing_mm": [3.0, 3.0, 3.0]}


def pretrain_yaml(minutes: float) -> dict:
    paths = [str(DATA / "abdomen-ct" / "example_ct.nii.gz")]
    paths += sorted(str(p) for p in (DATA / "lung4dct").glob("case_*/T00.nii.gz"))
    return {
        "kind": "pretraining",
        "requires": ["medfeat-bpr-diffusion"],
        "seed": 0,
        "data": {"name": "ct-volumes", "paths": paths, "unit_range_hu": [-1000.0, 150.0]},
        "pretrainer": {
            "name": "bpr-ddpm",
            "preprocess": PREPROCESS,
            "coordinates": {"name": "bbox-normalised"},
            "unet": UNET,
            "patch_size_vox": PATCH,
            "lr": 3e-4,
            "max_steps": 1_000_000,
            "max_wall_time_min": minutes,
            "checkpoint_every_steps": 100,
            "patches_per_volume": 8,
            "log_every_steps": 50,
        },
    }


SPLIT = {"train_slices": [0, 15], "test_slices": [15, 30]}


def probe_yaml(backbone: dict, mode: str, steps: int, minutes: float, ckpt: str | None) -> dict:
    doc = {
        "kind": "segmentation",
        "mode": mode,
        "requires": ["medfeat-bpr-diffusion"],
        "seed": 0,
        "data": {
            "name": "labelled-volume-zsplit",
            "image": str(DATA / "abdomen-ct" / "example_ct_sm.nii.gz"),
            "labels": str(DATA / "abdomen-ct" / "example_seg.nii.gz"),
            **SPLIT,
        },
        "backbone": backbone,
        "head": {
            "name": "fpn-probe",
            "label_ids": list(LABELS),
            "hidden_channels": 32,
            "lr": 3e-3,
            "steps": steps,
            "max_wall_time_min": minutes,
            "batch_size": 4,
            "crop_size_vox": PATCH,
        },
    }
    if ckpt:
        doc["checkpoint"] = ckpt
    return doc


def run(doc: dict, path: Path, out: Path) -> dict:
    from medfeat.cli.main import main

    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    code = main(["run", str(path), "--out", str(out), "--device", "cpu"])
    if code != 0:
        raise SystemExit(f"{path} failed with exit code {code}")
    return json.loads((out / "metrics.json").read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("/tmp/bpr-bench"))
    parser.add_argument("--pretrain-minutes", type=float, default=12.0)
    parser.add_argument("--probe-steps", type=int, default=400)
    parser.add_argument("--probe-minutes", type=float, default=2.5)
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads (2 on an idle 2-core box)"
    )
    parser.add_argument("--smoke", action="store_true", help="seconds-long check of the script")
    args = parser.parse_args()
    if args.smoke:
        args.pretrain_minutes, args.probe_steps = 0.1, 3
        SPLIT.update(train_slices=[0, 4], test_slices=[26, 30])
    if not DATA.is_dir():
        raise SystemExit(f"real data not available at {DATA}")
    import torch

    torch.set_num_threads(args.threads)
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    results: dict = {
        "conditions": {
            "threads": args.threads,
            "device": "cpu",
            "cpu_count": os.cpu_count(),
            "load_average_at_start": os.getloadavg(),
        }
    }
    pre = run(pretrain_yaml(args.pretrain_minutes), out / "pretrain.yaml", out / "pretrain")
    results["pretraining"] = pre
    diffusion = {
        "name": "bpr-diffusion",
        "timesteps": [10, 30, 60],
        "feature_levels": [0, 1, 2],
        "patch_size_vox": PATCH,
        "overlap": 0.5,
    }
    sources = {
        "bpr-diffusion (pretrained)": {**diffusion, "checkpoint": pre["checkpoint"]},
        "bpr-diffusion (random init)": {
            **diffusion, "random_init": True, "unet": UNET, "preprocess": PREPROCESS
        },
        "mind-ssc": {"name": "mind-ssc", "radius_mm": 3.0, "dilation_mm": 6.0},  # 1 and 2 voxels
    }  # fmt: skip
    results["probes"] = {}
    for i, (label, backbone) in enumerate(sources.items()):
        tag = f"probe{i}"
        fit = run(probe_yaml(backbone, "train", args.probe_steps, args.probe_minutes, None),
                  out / f"{tag}-train.yaml", out / f"{tag}-train")  # fmt: skip
        inf = run(probe_yaml(backbone, "infer", 1, None, fit["checkpoint"]),
                  out / f"{tag}-infer.yaml", out / f"{tag}-infer")  # fmt: skip
        dice = next(iter(inf["cases"].values()))["dice"]
        results["probes"][label] = {"train": fit, "test_dice": dice}
        print(f"{label}: test Dice {dice}", flush=True)
    results["total_minutes"] = round((time.time() - t0) / 60, 2)
    results["conditions"]["load_average_at_end"] = os.getloadavg()
    (out / "results.json").write_text(json.dumps(results, indent=2))
    (out / "results.md").write_text(table(results))
    print(table(results))


def table(results: dict) -> str:
    import numpy as np

    def dice(name: str, label: int) -> float:  # null (label absent from both maps) -> NaN
        value = results["probes"][name]["test_dice"].get(str(label))
        return float("nan") if value is None else value

    names = list(results["probes"])
    lines = ["| organ (label) | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    for k, organ in LABELS.items():
        vals = [dice(n, k) for n in names]
        lines.append(f"| {organ} ({k}) | " + " | ".join(f"{100 * v:.1f}" for v in vals) + " |")
    means = [np.nanmean([dice(n, k) for k in LABELS]) for n in names]
    lines.append("| **mean** | " + " | ".join(f"**{100 * m:.1f}**" for m in means) + " |")
    steps = [str(results["probes"][n]["train"]["steps"]) for n in names]
    lines.append("| probe steps | " + " | ".join(steps) + " |")
    pre = results["pretraining"]
    lines.append("")
    lines.append(
        f"Pretraining: {pre['steps']} steps ({pre['stopped_by']}), {pre['seconds_per_step']} s/step, "
        f"loss {pre['loss_first_50']} (first 50) -> {pre['loss_last_50']} (last 50); "
        f"total benchmark {results.get('total_minutes')} min."
    )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
