"""Engine tests run on CPU with few threads and a fixed torch seed."""

import pytest
import torch


@pytest.fixture(autouse=True)
def _seed_and_threads():
    torch.manual_seed(0)
    torch.set_num_threads(min(2, torch.get_num_threads()))
    yield


def _blob_phantom(shape=(32, 32, 32), centres=None, sigma=3.0) -> torch.Tensor:
    """Sum of Gaussian blobs, ``[1, 1, *shape]``."""
    grid = torch.stack(
        torch.meshgrid(*[torch.arange(n, dtype=torch.float32) for n in shape], indexing="ij")
    )
    if centres is None:
        centres = [(10, 12, 9), (20, 18, 22), (14, 24, 16), (22, 9, 13), (16, 16, 24)]
    img = torch.zeros(shape)
    for i, c in enumerate(centres):
        d2 = sum((grid[a] - c[a]) ** 2 for a in range(3))
        img += (1.0 + 0.3 * i) * torch.exp(-d2 / (2 * sigma**2))
    return img[None, None]


@pytest.fixture
def blob_phantom():
    """Factory of smooth synthetic blob volumes ``[1, 1, *shape]``."""
    return _blob_phantom
