"""Evaluation metrics in physical units: landmark error, label overlap, field regularity."""

from medfeat.metrics.jacobian import folding_pct, jacobian_determinant_mm, sdlogj
from medfeat.metrics.overlap import EmptyLabelWarning, dice_per_label, hd95_mm, mean_dice
from medfeat.metrics.tre import tre

__all__ = [
    "EmptyLabelWarning",
    "dice_per_label",
    "folding_pct",
    "hd95_mm",
    "jacobian_determinant_mm",
    "mean_dice",
    "sdlogj",
    "tre",
]
