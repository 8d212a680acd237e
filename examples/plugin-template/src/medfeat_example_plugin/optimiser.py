"""A deformable optimiser: the constant displacement that aligns the feature centres of mass."""

import numpy as np

from medfeat.api import DisplacementField, FeatureLevel, Image, RegistrationResult


def centre_of_mass_mm(level: FeatureLevel, threshold: float) -> np.ndarray:
    """World (mm) centre of mass of the level's first channel, over voxels above ``threshold``."""
    weights = level.data[0].detach().cpu().numpy().astype(np.float64)
    weights = np.where(weights > threshold, weights, 0.0)
    idx = np.stack(np.meshgrid(*[np.arange(s) for s in weights.shape], indexing="ij"), axis=-1)
    centre_index = (idx * weights[..., None]).reshape(-1, weights.ndim).sum(0) / weights.sum()
    return level.grid.array_index_to_world(centre_index)[0]


class CentreOfMassTranslation:
    """Moves the fixed image's feature centre of mass onto the moving image's."""

    def __init__(self, threshold: float) -> None:
        self.threshold = threshold

    def register(self, fixed: Image, moving: Image, features_fixed, features_moving, **_):
        shift_mm = centre_of_mass_mm(features_moving.levels[0], self.threshold)
        shift_mm = shift_mm - centre_of_mass_mm(features_fixed.levels[0], self.threshold)
        grid = fixed.grid
        data = np.broadcast_to(shift_mm.reshape(-1, *([1] * grid.ndim)), (grid.ndim, *grid.shape))
        forward = DisplacementField(np.array(data), grid)
        inverse = DisplacementField(np.array(-data), grid, mapping="moving_to_fixed")
        return RegistrationResult(
            forward, inverse, {"translation_mm": float(np.linalg.norm(shift_mm))}
        )
