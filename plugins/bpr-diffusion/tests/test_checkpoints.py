"""Official weight files: APE checkpoints load strictly in their formats; wrong files are refused."""

from __future__ import annotations

import pytest
import torch
from medfeat_bpr_diffusion.checkpoints import load_ape
from medfeat_bpr_diffusion.networks import APEArchitecture, APENetwork

from medfeat.errors import CheckpointError


def _lightning_checkpoint(net: APENetwork) -> dict:
    """What APE's Lightning training writes: the network under `nn.`, the scale beside it."""
    state = {(k if k == "scale" else f"nn.{k}"): v for k, v in net.state_dict().items()}
    return {"state_dict": state, "epoch": 3, "global_step": 1200, "pytorch-lightning_version": "2"}


@pytest.mark.parametrize("form", ["lightning", "plain"])
def test_full_size_checkpoint_loads_strictly_and_reproduces_the_network(tmp_path, form):
    torch.manual_seed(0)
    net = APENetwork()
    for p in net.parameters():  # no layer-scale near zero: every block must matter
        p.data.normal_(0, 0.05)
    obj = _lightning_checkpoint(net) if form == "lightning" else net.state_dict()
    torch.save(obj, tmp_path / "ape.ckpt")
    loaded = load_ape(tmp_path / "ape.ckpt")
    x = torch.rand(1, 1, 32, 32, 64)
    with torch.no_grad():
        out = loaded(x)
        assert out.shape == (1, 3, 8, 8, 16)
        assert torch.equal(out, net.eval()(x))
    unscaled = out / net.scale.detach()[None]  # sigmoid output, times the learned scale
    assert ((unscaled >= 0) & (unscaled <= 1)).all()


def test_mismatched_or_foreign_checkpoints_are_refused_with_what_differs(tmp_path):
    net = APENetwork(APEArchitecture(widths=(8, 16, 32, 64), depths=((1, 1),) * 3, bottom_depth=1))
    torch.save(_lightning_checkpoint(net), tmp_path / "small.ckpt")
    with pytest.raises(CheckpointError, match="missing.*wrong shape"):
        load_ape(tmp_path / "small.ckpt")
    with pytest.raises(CheckpointError, match="github.com/mishgon/ape"):
        load_ape(tmp_path / "absent.ckpt")
    torch.save({"encoder.weight": torch.zeros(1)}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not an APE checkpoint"):
        load_ape(tmp_path / "other.pt")
    (tmp_path / "cut.ckpt").write_bytes((tmp_path / "small.ckpt").read_bytes()[:200])
    with pytest.raises(CheckpointError, match="truncated"):
        load_ape(tmp_path / "cut.ckpt")
