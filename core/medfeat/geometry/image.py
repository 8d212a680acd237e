"""An image is an array plus the grid that places it in physical space."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from medfeat.errors import DataError, GeometryError
from medfeat.geometry.grid import Grid

#: Meta key of a derived image's identity (cache key); never a file checksum.
CONTENT_KEY = "content_key"

#: Meta keys that identify an image's source: its file's bytes (``sha256``, ...) or its content
#: (:data:`CONTENT_KEY`). An image derived from it (resampled, smoothed, cropped) is not that
#: file, so :func:`derived_meta` leaves them out.
IDENTITY_KEYS = frozenset({"sha256", "sha1", "md5", "checksum", "checksums", CONTENT_KEY})


def derived_meta(meta: dict) -> dict:
    """``meta`` for an image derived from the one it describes: without :data:`IDENTITY_KEYS`,
    so the copy claims neither the source file's checksum nor its cache identity."""
    return {k: v for k, v in meta.items() if str(k).lower() not in IDENTITY_KEYS}


@dataclass
class Image:
    """Voxel data in numpy order with its :class:`Grid`.

    ``data`` has shape ``grid.shape`` (scalar image) or ``(C, *grid.shape)`` (multi-channel). It may be
    a numpy array or a torch tensor; no component ever receives the data without its grid.
    ``meta`` keeps provenance such as the source path and modality.
    """

    data: Any
    grid: Grid
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        spatial = tuple(self.data.shape[-self.grid.ndim :])
        if spatial != self.grid.shape or self.data.ndim not in (self.grid.ndim, self.grid.ndim + 1):
            raise GeometryError(
                f"Image data of shape {tuple(self.data.shape)} does not fit its grid of shape {self.grid.shape}."
            )

    @property
    def num_channels(self) -> int:
        return 1 if self.data.ndim == self.grid.ndim else int(self.data.shape[0])

    @property
    def name(self) -> str:
        return str(self.meta.get("path", self.meta.get("name", "<in-memory image>")))

    def with_data(self, data: Any, **meta: Any) -> Image:
        """Same grid, new voxel data (e.g. after intensity normalisation). The new image is not
        the source file, so it keeps no file checksum or content key (:func:`derived_meta`)
        unless ``meta`` gives one."""
        return Image(data, self.grid, {**derived_meta(self.meta), **meta})

    def numpy(self) -> np.ndarray:
        data = self.data
        if hasattr(data, "detach"):
            data = data.detach().cpu().numpy()
        return np.asarray(data)

    def tensor(self, device: Any = None, dtype: Any = None):
        """The data as a torch tensor (imports torch lazily)."""
        import torch

        data = (
            self.data
            if isinstance(self.data, torch.Tensor)
            else torch.from_numpy(np.ascontiguousarray(self.numpy()))
        )
        dtype = dtype or (torch.float32 if data.is_floating_point() else None)
        return data.to(device=device, dtype=dtype)

    def check_finite(self) -> Image:
        """Raise :class:`DataError` when the image holds NaN or Inf values."""
        arr = self.numpy()
        if np.issubdtype(arr.dtype, np.floating):
            bad = ~np.isfinite(arr)
            if bad.any():
                raise DataError(
                    f"{self.name} contains {int(bad.sum())} NaN/Inf voxels "
                    f"({100.0 * bad.mean():.3g} % of the image).",
                    remedy="Fix the file, or mask/replace those voxels (e.g. with the background value) before running.",
                )
        return self
