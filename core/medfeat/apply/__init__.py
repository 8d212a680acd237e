"""Apply saved transforms to new images, label maps and points; compose, invert, Jacobian maps.

Python side of ``medfeat apply`` (see ``docs/apply.md``). Direction words: a chain maps points
``fixed_to_moving`` or ``moving_to_fixed``; images are pulled through it, points are pushed.
"""

from medfeat.apply.api import apply_transforms, map_points
from medfeat.apply.chain import TransformChain, TransformSpec, load_chain
from medfeat.apply.fields import compose_field, jacobian_map
from medfeat.apply.grids import output_grid
from medfeat.apply.images import resample_image, resample_labels
from medfeat.apply.invert import invert_field, invert_part

__all__ = [
    "TransformChain",
    "TransformSpec",
    "apply_transforms",
    "compose_field",
    "invert_field",
    "invert_part",
    "jacobian_map",
    "load_chain",
    "map_points",
    "output_grid",
    "resample_image",
    "resample_labels",
]
