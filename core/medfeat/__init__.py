"""medfeat: compose learned and classical image features for registration, correspondence and segmentation.

The package root stays import-light: ``import medfeat`` pulls in neither torch nor any model code.
"""

__version__ = "0.1.0"

import pluggy as _pluggy

#: Marker for plugin hook implementations: ``@medfeat.hookimpl``.
hookimpl = _pluggy.HookimplMarker("medfeat")
