"""A minimal medfeat plugin: registration only.

This entry module stays light: it imports medfeat.api and the plugin's config models (pydantic).
Numerical code (numpy, torch) is imported inside the factory, when the component is built.
"""

from medfeat.api import hookimpl
from medfeat_example_plugin.config import CentreOfMassConfig


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
