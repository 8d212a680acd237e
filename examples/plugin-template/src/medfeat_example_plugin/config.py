"""The options of the example plugin's YAML sections (one ConfigModel per component)."""

from pydantic import Field

from medfeat.api import ConfigModel


class CentreOfMassConfig(ConfigModel):
    """``optimiser: {name: centre-of-mass, ...}``."""

    threshold: float = Field(
        0.0, description="Only voxels whose first feature channel exceeds this value count."
    )
