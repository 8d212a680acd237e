"""A minimal medfeat plugin.

The module stays light: it imports only medfeat.api (hook marker, config base) and pydantic.
Numerical code is imported inside the factory, when the component is built.
"""

from pydantic import Field

from medfeat.api import ConfigModel, hookimpl


class CentreOfMassConfig(ConfigModel):
    threshold: float = Field(
        0.0, description="Only voxels above this feature value count towards the centre."
    )


def make_centre_of_mass(config: CentreOfMassConfig, context):
    from medfeat_example_plugin.optimiser import CentreOfMassTranslation

    return CentreOfMassTranslation(config.threshold)


@hookimpl
def medfeat_register_optimisers(register):
    register(
        "centre-of-mass",
        make_centre_of_mass,
        config=CentreOfMassConfig,
        summary="Translate the moving image so that the feature centres of mass coincide.",
    )
