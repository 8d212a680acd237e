"""Multi-process runs under ``torchrun``: set-up, rank, collectives, teardown.

Every helper also works in a single process (no ``torchrun``, or a process group that was never
set up): ranks are (0, 1), collectives return their input and barriers return at once. The process
group uses NCCL for CUDA devices and Gloo otherwise.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class DistributedInfo:
    """This process's place in the run and the device it computes on."""

    rank: int
    world_size: int
    local_rank: int
    device: str

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def env_rank() -> tuple[int, int]:
    """(rank, world size) from torchrun's ``RANK``/``WORLD_SIZE``, else (0, 1); imports no torch."""
    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))


def _active() -> bool:
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def backend_for(device: str) -> str:
    """``nccl`` for CUDA devices, ``gloo`` otherwise."""
    return "nccl" if str(device).startswith("cuda") else "gloo"


def setup_distributed(device: str) -> DistributedInfo:
    """Join the process group of a ``torchrun`` run (once per process) and pick this rank's
    device: ``cuda:LOCAL_RANK`` when ``device`` is CUDA. Outside torchrun: rank 0 of 1 on
    ``device``."""
    rank, world = env_rank()
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if world <= 1:
        return DistributedInfo(0, 1, 0, device)
    import torch
    import torch.distributed as dist

    if str(device).startswith("cuda"):
        torch.cuda.set_device(local)
        device = f"cuda:{local}"
    if not dist.is_initialized():
        dist.init_process_group(backend_for(device))
    return DistributedInfo(dist.get_rank(), dist.get_world_size(), local, device)


def teardown_distributed() -> None:
    """Leave the process group, if one was set up (a no-op otherwise)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def rank_and_world() -> tuple[int, int]:
    """(rank, world size) of the set-up process group, else from the environment."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return env_rank()


def is_main_process() -> bool:
    """Whether this is rank 0 (the process that writes summaries and talks to the terminal)."""
    return rank_and_world()[0] == 0


def barrier() -> None:
    """Wait for every process of a distributed run (no-op in a single process)."""
    if _active():
        import torch.distributed as dist

        dist.barrier()


def all_reduce(
    tensor: torch.Tensor, op: Literal["sum", "mean", "max", "min"] = "sum"
) -> torch.Tensor:
    """``tensor`` reduced over all processes, in place and returned (unchanged in a single
    process). A collective: every rank must call it at the same point."""
    if not _active():
        return tensor
    import torch.distributed as dist

    ops = {"sum": dist.ReduceOp.SUM, "mean": dist.ReduceOp.SUM}
    ops |= {"max": dist.ReduceOp.MAX, "min": dist.ReduceOp.MIN}
    dist.all_reduce(tensor, op=ops[op])
    if op == "mean":
        tensor /= dist.get_world_size()
    return tensor


def agree_any(flags: tuple[bool, ...], device: str = "cpu") -> tuple[bool, ...]:
    """Each flag OR-ed over the processes (a collective: every rank must call it at the same
    step); the flags themselves in a single process."""
    if not _active():
        return tuple(bool(f) for f in flags)
    import torch

    t = torch.tensor([float(f) for f in flags], device=device)
    return tuple(bool(v) for v in all_reduce(t, "max").tolist())
