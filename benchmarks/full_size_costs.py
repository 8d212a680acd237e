"""Full-size costs of the feature plugins with RANDOM weights (seconds, peak RSS; never accuracy).

Items, each run in its own process (so the peak resident memory is the item's own):

* ``dinov3-encode``: DINOv3 ViT-L/16 slice encoding of one volume (lung ``case_002`` T00,
  160x128x160 at 2 mm, or a generated 128x256x256 CT when the data is absent): seconds per volume
  and encoded slices per second, at ``--dinov3-patch-spacing-mm`` with at most
  ``--dinov3-max-slices`` encoded slices (the stride grows to fit; the rest is interpolated).
* ``dinov3-cached``: the same volume again through a fresh backbone whose ``feature_cache_dir``
  already holds it (what a second run costs); "not in this tree" where the option does not exist.
* ``leaf-train``: LEAF (LDM-KL-8 U-Net + kl-f8 VAE, 419 M parameters) training steps at 256x256,
  batch 4 (the reference's), with the distillation projector on 768-d teacher tokens (random
  stand-ins for the teacher, computed before training); through the plugin's own trainer, four
  images without flips (so from the second step on the mask latents come from the trainer's
  cache where the tree has one, as in a long run); checkpoint writing is switched off. Seconds
  per step: median over the steps after the first.
* ``leaf-infer``: LEAF single-step inference of one 256x256 image through the head's ``predict``.
* ``bpr-pretrain``: bpr-ddpm pretraining steps through the plugin's pretrainer: the paper-size
  3D U-Net (64 base channels, mults 1-2-4-8), 32x128x128 patches (the reference's), batch 1, on a
  generated CT; seconds per step: median over the steps after the first; checkpoints off.
  ``--bpr-activation-checkpointing`` recomputes activations in the backward pass (where the tree
  has the option); without it a 32x128x128 step needs about 20 GiB of memory.
* ``maisi-extract``: MAISI-DIFT feature extraction (v1-size networks) of lung ``case_002`` T00
  (a generated 160x128x160 volume when the data is absent), through the plugin's backbone.

``--tree DIR`` runs the items on another checkout (e.g. a git worktree of an older commit) by
putting its ``core`` and ``plugins/*/src`` first on ``PYTHONPATH``; each row names the module file
it imported, so the before/after can be checked. One table is printed (item, seconds, peak RSS,
threads, conditions) and written as JSON (``--out``).

    python benchmarks/full_size_costs.py --out out/costs-after.json
    python benchmarks/full_size_costs.py --tree /tmp/medfeat-before --out out/costs-before.json

``--smoke`` runs every item with tiny networks and inputs: a check of the script, never a figure.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve()
ROOT = HERE.parents[1]
ITEMS = (
    "dinov3-encode",
    "dinov3-cached",
    "leaf-train",
    "leaf-infer",
    "bpr-pretrain",
    "maisi-extract",
)


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def tree_pythonpath(tree: Path) -> list[str]:
    return [str(tree / "core")] + sorted(str(p) for p in (tree / "plugins").glob("*/src"))


def tree_revision(tree: Path) -> str:
    def git(*args: str) -> str:
        out = subprocess.run(["git", "-C", str(tree), *args], capture_output=True, text=True)
        return out.stdout.strip()

    commit = git("rev-parse", "--short", "HEAD") or "unknown"
    return commit + (" + uncommitted changes" if git("status", "--porcelain") else "")


# ------------------------------------------------------------------------------------ inputs
def lung_image(args):
    """(image, description): lung case_002 T00 in [0, 1], or None when the data is absent."""
    case = args.data_root / "lung4dct" / "case_002"
    if not (case / "T00.nii.gz").is_file():
        return None, ""
    from medfeat.api import read_image

    image = read_image(case / "T00.nii.gz")
    return image, f"lung case_002 T00 {'x'.join(map(str, image.grid.shape))}"


def generated_ct(shape, spacing=(1.0, 1.0, 1.0), seed=0):
    """A smooth HU-like body (an ellipse of soft tissue with texture) in air."""
    import numpy as np
    import torch

    from medfeat.api import Grid, Image

    gen = torch.Generator().manual_seed(seed)
    coarse = torch.randn((1, 1, *(max(2, n // 8) for n in shape)), generator=gen)
    texture = torch.nn.functional.interpolate(coarse, size=tuple(shape), mode="trilinear")[0, 0]
    k, j, i = np.meshgrid(*[np.linspace(-1, 1, n, dtype=np.float32) for n in shape], indexing="ij")
    body = (j / 0.85) ** 2 + (i / 0.85) ** 2 < 1
    hu = np.where(body, 40.0 + 300.0 * texture.numpy(), -1000.0).astype(np.float32)
    grid = Grid(tuple(shape), tuple(spacing), (0.0, 0.0, 0.0), np.eye(3))
    return Image(hu, grid, {"name": "generated-ct"})


# ------------------------------------------------------------------------------------ items
def _dinov3(args, cached: bool) -> dict:
    import math

    from medfeat_dinov3.backbone import make_dinov3_slices
    from medfeat_dinov3.config import Dinov3SlicesConfig

    from medfeat.api import RunContext

    image, what = (None, "") if args.smoke else lung_image(args)
    modality = "mr"  # the lung volumes are in [0, 1]: percentile normalisation
    if image is None:
        shape = (8, 48, 48) if args.smoke else (128, 256, 256)
        image, what, modality = generated_ct(shape), f"generated CT {shape}", "ct"
    slices = image.grid.shape[0]
    stride = max(1, math.ceil((slices - 1) / max(args.dinov3_max_slices - 1, 1)))
    options = {
        "model": "tiny" if args.smoke else "vit-l16",
        "random_weights": True,
        "modality": modality,
        "patch_spacing_mm": args.dinov3_patch_spacing_mm,
        "slice_stride_vox": stride,
        "batch_slices": args.dinov3_batch_slices,
    }
    row: dict = {}
    cache_dir = None
    if cached:
        if "feature_cache_dir" not in Dinov3SlicesConfig.model_fields:
            return {"note": "not in this tree (no feature_cache_dir option)"}
        cache_dir = tempfile.mkdtemp(prefix="dinov3-cache-")
        options["feature_cache_dir"] = cache_dir
    context = RunContext(device=args.device, seed=0)
    backbone = make_dinov3_slices(Dinov3SlicesConfig(**options), context)
    if cached:
        backbone.extract(image)  # fills the cache (not timed)
    times, encoded = [], 0
    try:
        for _ in range(args.repeats):
            if cached:  # a fresh backbone, as in a new run: hashes its weights, reads the file
                backbone = make_dinov3_slices(Dinov3SlicesConfig(**options), context)
            start = time.perf_counter()
            level = backbone.extract(image).levels[0]
            times.append(time.perf_counter() - start)
            encoded = int(backbone.last_stats["encoded_slices"])
    finally:
        if cache_dir is not None:
            shutil.rmtree(cache_dir, ignore_errors=True)
    tokens = "x".join(map(str, level.data.shape[2:]))
    row["seconds"] = statistics.median(times)
    row["all_seconds"] = times
    row["slices_per_s"] = None if cached else encoded / row["seconds"]
    row["conditions"] = (
        f"{options['model']} random weights; {what}, axial; {tokens} tokens/slice "
        f"({args.dinov3_patch_spacing_mm} mm patches); {encoded} of {slices} slices encoded "
        f"(stride {stride}), batch {args.dinov3_batch_slices}; {args.device}; s per volume"
        + ("; 2nd run from the feature cache" if cached else "")
    )
    if not cached:
        row["conditions"] += f"; {encoded / row['seconds']:.3f} slices/s"
    return row


def item_dinov3_encode(args) -> dict:
    return _dinov3(args, cached=False)


def item_dinov3_cached(args) -> dict:
    return _dinov3(args, cached=True)


class _StepClock:
    """Progress stand-in: records when each training step is reported, and the RSS then."""

    def __init__(self) -> None:
        self.times: list[float] = []
        self.rss: list[float] = []

    def tick(self, *args, **kwargs) -> None:
        self.times.append(time.perf_counter())
        self.rss.append(peak_rss_gib())

    def callback(self, description):
        return lambda step, fraction: self.tick() if step == "training" else None

    def log(self, message, level=0):
        if message.startswith("step "):  # bpr-ddpm: one line per step with log_every_steps 1
            self.tick()

    def warn(self, message):
        pass

    def track(self, items, *args, **kwargs):
        return items

    def status(self, description):
        import contextlib

        return contextlib.nullcontext()


def _step_row(clock: _StepClock, start: float) -> dict:
    steps = [b - a for a, b in zip([start, *clock.times], clock.times, strict=False)]
    later = steps[1:] or steps
    return {
        "seconds": statistics.median(later),
        "all_seconds": steps,
        "peak_rss_gib": clock.rss[-1] if clock.rss else peak_rss_gib(),
    }


def item_leaf_train(args) -> dict:
    import torch
    from medfeat_leaf import train as leaf_train
    from medfeat_leaf.build import build_leaf
    from medfeat_leaf.config import LeafConfig, SyntheticBlobsConfig
    from medfeat_leaf.datasets import SyntheticBlobs

    from medfeat.api import RunContext

    size = 64 if args.smoke else 256
    batch = 4
    training = {
        "image_size_px": size,
        "batch_size": batch,
        "max_steps": args.repeats + 1,
        "hflip": False,
        "checkpoint_every_steps": 10**6,
        "validate_every_steps": 10**6,
        "teacher_image_size_px": None,
        "resume": False,
    }
    config: dict = {"from_scratch": True, "training": training}
    if args.smoke:
        config["architecture"] = {
            "preset": "small",
            "unet_channels": [32, 64],
            "unet_attention_levels": [False, True],
            "unet_num_heads": 2,
        }
        config["distillation"] = {"projector_hidden": 32}
    samples = list(
        SyntheticBlobs(SyntheticBlobsConfig(size_px=size, n_train=batch)).segmentation_samples(
            "train"
        )
    )

    class RandomTeacher:  # 768-d tokens (ViT-B size), a stand-in: the teacher is not timed
        def tokens(self, rgb):
            g = torch.Generator().manual_seed(0)
            return torch.randn(len(rgb), 768, size // 16, size // 16, generator=g)

    leaf_train.save_checkpoint = lambda *a, **k: None  # not an I/O benchmark
    torch.manual_seed(0)
    model = build_leaf(LeafConfig.model_validate(config))
    clock = _StepClock()
    context = RunContext(device=args.device, seed=0, progress=clock)
    with tempfile.TemporaryDirectory() as out:
        trainer = leaf_train.Trainer(model, Path(out), context, RandomTeacher())
        start = time.perf_counter()
        trainer.fit(samples, [])
    row = _step_row(clock, start)
    params = sum(p.numel() for p in model.parameters()) / 1e6
    row["conditions"] = (
        f"{'small (smoke)' if args.smoke else 'ldm-kl-8'} random weights, {params:.1f} M params; "
        f"{size}x{size}, batch {batch}, distillation on 768-d tokens, x0 prediction, no flips, "
        f"float32 {args.device}; s per step (median of {max(1, len(row['all_seconds']) - 1)} "
        f"after the first); RSS at the last step"
    )
    return row


def item_leaf_infer(args) -> dict:
    import numpy as np
    import torch
    from medfeat_leaf.build import build_leaf
    from medfeat_leaf.config import LeafConfig
    from medfeat_leaf.heads import LeafHead

    from medfeat.api import Grid, Image, RunContext

    size = 64 if args.smoke else 256
    config: dict = {"from_scratch": True, "training": {"image_size_px": size}}
    if args.smoke:
        config["architecture"] = {"preset": "small"}
    config = LeafConfig.model_validate(config)
    torch.manual_seed(0)
    context = RunContext(device=args.device, seed=0)
    head = LeafHead(config, context)
    head.model = build_leaf(config).to(args.device).eval()
    rgb = (np.random.default_rng(0).random((3, size, size)) * 255).astype(np.uint8)
    image = Image(rgb, Grid.from_shape((size, size)), {"name": "frame"})
    times = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        head.predict(image)
        times.append(time.perf_counter() - start)
    return {
        "seconds": statistics.median(times),
        "all_seconds": times,
        "conditions": f"{'small (smoke)' if args.smoke else 'ldm-kl-8'} random weights; one "
        f"{size}x{size} image, single step, float32 {args.device}; s per image",
    }


def item_bpr_pretrain(args) -> dict:
    import torch
    from medfeat_bpr_diffusion import pretrain
    from medfeat_bpr_diffusion.config import PretrainConfig

    from medfeat.api import RunContext

    if args.smoke:
        patch, unet = (8, 16, 16), {"base_channels": 8, "channel_mults": [1, 2], "groups": 4}
        image = generated_ct((16, 40, 40), (2.0, 2.0, 2.0))
    else:
        patch, unet = tuple(args.bpr_patch), {}
        image = generated_ct((96, 192, 192), (1.0, 1.0, 2.0))  # 192 x 192 x 192 mm
    extra = {}
    if args.bpr_activation_checkpointing:
        if "activation_checkpointing" not in PretrainConfig.model_fields:
            return {"note": "not in this tree (no activation_checkpointing option)"}
        extra["activation_checkpointing"] = True

    class Volumes:
        def images(self):
            yield image

    config = PretrainConfig.model_validate(
        {
            "unet": unet,
            "patch_size_vox": patch,
            "max_steps": args.repeats + 1,
            "log_every_steps": 1,
            "checkpoint_every_steps": 10**6,
            **extra,
        }
    )
    pretrain.save_checkpoint = lambda *a, **k: None  # not an I/O benchmark
    clock = _StepClock()
    context = RunContext(device=args.device, seed=0, progress=clock)
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        result = pretrain.DDPMPretrainer(config, context).fit(Volumes(), Path(out), context)
    row = _step_row(clock, start)
    row["conditions"] = (
        f"{'tiny (smoke)' if args.smoke else 'paper-size'} U-Net, {result['parameters'] / 1e6:.1f}"
        f" M params, attention {config.unet.attention}; patch {'x'.join(map(str, patch))}, "
        f"batch 1, bbox coordinates, activation checkpointing "
        f"{'on' if extra else 'off'}, float32 {args.device}, torch {torch.__version__}; s per step "
        f"(median after the first; the first includes preprocessing); RSS at the last step"
    )
    return row


def item_maisi_extract(args) -> dict:
    from medfeat_maisi_dift.backbone import make_maisi_dift
    from medfeat_maisi_dift.config import MaisiDiftConfig

    from medfeat.api import RunContext

    image, what = (None, "") if args.smoke else lung_image(args)
    intensity = "unit"
    if image is None:
        shape = (32, 32, 32) if args.smoke else (160, 128, 160)
        image, what, intensity = generated_ct(shape, (2.0, 2.0, 2.0)), f"generated CT {shape}", "hu"
    wanted = {
        "random_weights": True,
        "intensity": intensity,
        "architecture": "tiny" if args.smoke else "v1",
    }
    fields = MaisiDiftConfig.model_fields
    backbone = make_maisi_dift(
        MaisiDiftConfig(**{k: v for k, v in wanted.items() if k in fields}),
        RunContext(device=args.device, seed=0),
    )
    times = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        backbone.extract(image)
        times.append(time.perf_counter() - start)
    return {
        "seconds": statistics.median(times),
        "all_seconds": times,
        "conditions": f"{wanted['architecture']} random weights, plugin defaults otherwise; {what};"
        f" {args.device}; s per volume",
    }


def child(args) -> None:
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    item = args.child
    run = globals()["item_" + item.replace("-", "_")]
    row = {"item": item}
    try:
        row.update(run(args))
    except Exception as exc:  # reported in the table, the other items go on
        row["error"] = f"{type(exc).__name__}: {str(exc)[:300]}"
    row.setdefault("peak_rss_gib", peak_rss_gib())
    row["threads"] = torch.get_num_threads()
    module = {"dinov3": "medfeat_dinov3", "leaf": "medfeat_leaf", "bpr": "medfeat_bpr_diffusion"}
    name = module.get(item.split("-")[0], "medfeat_maisi_dift")
    row["code"] = str(Path(sys.modules[name].__file__).parent) if name in sys.modules else None
    row["core"] = (
        str(Path(sys.modules["medfeat"].__file__).parent) if "medfeat" in sys.modules else None
    )
    print(json.dumps(row), flush=True)


# ------------------------------------------------------------------------------------ parent
def table(rows: list[dict]) -> str:
    lines = ["| item | seconds | peak RSS GiB | threads | conditions |", "|---|---|---|---|---|"]
    for r in rows:
        secs = f"{r['seconds']:.2f}" if "seconds" in r else "-"
        rss = f"{r['peak_rss_gib']:.2f}" if "peak_rss_gib" in r else "-"
        what = r.get("error") or r.get("note") or r.get("conditions", "")
        lines.append(f"| {r['item']} | {secs} | {rss} | {r.get('threads', '-')} | {what} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--items", nargs="+", choices=ITEMS, default=list(ITEMS))
    p.add_argument("--repeats", type=int, default=3, help="timed runs (steps) per item")
    p.add_argument("--tree", type=Path, default=ROOT, help="checkout whose code runs")
    p.add_argument("--out", type=Path, default=None, help="JSON file of the results")
    p.add_argument("--data-root", type=Path, default=ROOT.parent / "shared" / "data")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--dinov3-patch-spacing-mm", type=float, default=8.0)
    p.add_argument("--dinov3-max-slices", type=int, default=8)
    p.add_argument("--dinov3-batch-slices", type=int, default=4)
    p.add_argument("--bpr-patch", type=int, nargs=3, default=[32, 128, 128], help="k j i voxels")
    p.add_argument(
        "--bpr-activation-checkpointing",
        action="store_true",
        help="bpr-pretrain with activation_checkpointing (a 32x128x128 float32 step needs about "
        "20 GiB without it, 11 GiB with it)",
    )
    p.add_argument("--item-timeout-min", type=float, default=60.0)
    p.add_argument("--smoke", action="store_true", help="tiny networks: a check of the script")
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        child(args)
        return 0

    tree = args.tree.resolve()
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(tree_pythonpath(tree)))
    if args.threads:
        env.update(OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))
    passed = [a for a in (argv if argv is not None else sys.argv[1:])]
    conditions = {
        "weights": "RANDOM (speed and memory only; never an accuracy result)",
        "tree": f"{tree} ({tree_revision(tree)})",
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs",
        "load_average_start": os.getloadavg(),
        "repeats": args.repeats,
        "smoke": args.smoke,
        "command": " ".join([Path(sys.argv[0]).name, *passed]),
    }
    rows = []
    for item in args.items:
        cmd = [sys.executable, str(HERE), *passed, "--child", item]
        try:
            proc = subprocess.run(
                cmd, env=env, capture_output=True, text=True, timeout=60 * args.item_timeout_min
            )
            lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
            row = json.loads(lines[-1]) if lines else {"item": item}
            if proc.returncode and "error" not in row:
                tail = (proc.stderr.strip().splitlines() or ["?"])[-1]
                row["error"] = f"exit {proc.returncode}: {tail[:300]}"
        except subprocess.TimeoutExpired:
            row = {"item": item, "error": f"stopped after {args.item_timeout_min} min"}
        rows.append(row)
        print(table([row]).splitlines()[-1], flush=True)
    conditions["load_average_end"] = os.getloadavg()
    print()
    print(table(rows))
    print(json.dumps(conditions))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"conditions": conditions, "rows": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
