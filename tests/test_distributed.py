"""medfeat.distributed: single-process behaviour, and a real two-process Gloo group on the CPU."""

from __future__ import annotations

import socket

import pytest
import torch

from medfeat.context import process_rank
from medfeat.distributed import (
    DistributedInfo,
    agree_any,
    all_reduce,
    backend_for,
    barrier,
    is_main_process,
    rank_and_world,
    setup_distributed,
    teardown_distributed,
)

TORCHRUN_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


@pytest.fixture
def no_torchrun(monkeypatch):
    for name in TORCHRUN_VARS:
        monkeypatch.delenv(name, raising=False)


def test_single_process_is_rank_0_of_1_and_collectives_return_their_input(no_torchrun):
    assert setup_distributed("cpu") == DistributedInfo(0, 1, 0, "cpu")
    assert setup_distributed("cuda:3").device == "cuda:3"  # no torchrun: the device as given
    assert not torch.distributed.is_initialized()
    assert rank_and_world() == process_rank() == (0, 1) and is_main_process()
    t = torch.tensor([1.0, 2.0])
    assert all_reduce(t, "max") is t and t.tolist() == [1.0, 2.0]
    assert agree_any((True, False, 0, 1)) == (True, False, False, True)
    barrier()
    teardown_distributed()  # nothing to leave


def test_rank_comes_from_torchrun_variables(monkeypatch):
    monkeypatch.setenv("RANK", "2")
    monkeypatch.setenv("WORLD_SIZE", "4")
    assert process_rank() == rank_and_world() == (2, 4)
    assert not is_main_process()


def test_backend_follows_the_device():
    assert backend_for("cuda") == backend_for("cuda:1") == "nccl"
    assert backend_for("cpu") == "gloo"


def _worker(rank: int, world: int, port: int, results) -> None:
    import os

    os.environ.update(
        RANK=str(rank),
        WORLD_SIZE=str(world),
        LOCAL_RANK=str(rank),
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
    )
    info = setup_distributed("cpu")
    assert setup_distributed("cpu") == info  # a second call joins nothing new
    flags = agree_any((rank == 1, False))
    total = all_reduce(torch.tensor([float(rank + 1)]), "sum").item()
    mean = all_reduce(torch.tensor([float(rank)]), "mean").item()
    low = all_reduce(torch.tensor([float(rank)]), "min").item()
    barrier()
    results.put((rank, info, is_main_process(), flags, total, mean, low))
    teardown_distributed()


@pytest.mark.slow
def test_two_processes_on_gloo_agree():
    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ctx = mp.get_context("spawn")
    results = ctx.Queue()
    mp.start_processes(_worker, args=(2, port, results), nprocs=2, start_method="spawn")
    got = sorted(results.get(timeout=60) for _ in range(2))
    for rank, info, main, flags, total, mean, low in got:
        assert info == DistributedInfo(rank, 2, rank, "cpu")
        assert main == (rank == 0)
        assert flags == (True, False)  # rank 1's flag reaches rank 0
        assert (total, mean, low) == (3.0, 0.5, 0.0)
