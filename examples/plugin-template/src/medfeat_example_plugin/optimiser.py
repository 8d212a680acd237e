"""A constant displacement that aligns the centres of mass of the first feature channel."""

import numpy as np

from medfeat.api import DisplacementField, RegistrationResult


def _centre_of_mass_world(level, threshold: float) -> np.ndarray:
    weights = level.data[0].detach().cpu().numpy().astype(np.float64)
    weights = np.where(weights > threshold, weights, 0.0)
    idx = np.stack(np.meshgrid(*[np.arange(s) for s in weights.shape], indexing="ij"), axis=-1)
    centre_index = (idx * weights[..., None]).reshape(-1, weights.ndim).sum(0) / weights.sum()
    return level.grid.array_index_to_world(centre_index)[0]


class CentreOfMassTranslation:
    def __init__(self, threshold: float) -> None:
        self.threshold = threshold

    def register(self, fixed, moving, features_fixed, features_moving, **_):
        shift = _centre_of_mass_world(
            features_moving.levels[0], self.threshold
        ) - _centre_of_mass_world(features_fixed.levels[0], self.threshold)
        data = np.broadcast_to(
            shift.reshape(-1, *([1] * fixed.grid.ndim)), (fixed.grid.ndim, *fixed.grid.shape)
        )
        forward = DisplacementField(np.array(data), fixed.grid)
        inverse = DisplacementField(np.array(-data), fixed.grid, mapping="moving_to_fixed")
        return RegistrationResult(
            forward, inverse, {"translation_mm": float(np.linalg.norm(shift))}
        )
