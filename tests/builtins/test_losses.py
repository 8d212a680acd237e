"""The built-in similarities and regularisers, built from the registry."""

import torch


def test_similarities_and_regularisers_from_registry(build):
    x = torch.rand(1, 2, 8, 8, 8)
    for name in ("ssd", "ncc", "local-ncc", "cosine", "nmi"):
        sim = build("similarity", name)
        assert float(sim(x, x)) <= float(sim(x, torch.rand(1, 2, 8, 8, 8))) + 1e-6, name
    disp = torch.zeros(1, 3, 8, 8, 8)
    assert float(build("regulariser", "diffusion", weight=2.0)(disp, (1, 1, 1))) == 0.0
    assert float(build("regulariser", "bending-energy")(disp + 1.5, (1, 1, 1))) == 0.0
