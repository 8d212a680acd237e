"""Parameter names of the Hugging Face ViTs across transformers versions.

Files written by transformers (``save_pretrained``; the Hub's ``facebook/dinov3-*`` and
``facebook/dinov2-with-registers-*`` repositories) keep one naming, the *file naming*, which is
also the module naming of transformers 4.x. transformers 5.x renamed some modules and converts
names when it reads or writes a folder:

========================  =====================================  ====================================
model                     file naming (= transformers 4.x)       transformers 5.x module
========================  =====================================  ====================================
DINOv3ViTModel            ``layer.N.*``                           ``model.layer.N.*``
Dinov2WithRegistersModel  ``encoder.layer.N.attention.attention``  ``encoder.layer.N.attention``
                          ``.{query,key,value}.*`` and            ``.{q,k,v}_proj.*`` and
                          ``encoder.layer.N.attention.output``    ``encoder.layer.N.attention``
                          ``.dense.*``                            ``.o_proj.*``
========================  =====================================  ====================================

Every other name is the same in both. :func:`to_file_names` accepts either naming (and a
``dinov3_vit.``-style base-model prefix); :func:`to_module_names` gives the names of the module
actually built, whichever transformers is installed.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Naming:
    """Regex renames from the file naming to the transformers 5.x module naming."""

    prefixes: tuple[str, ...]  # base-model prefixes of task models' files, stripped on reading
    to_v5: tuple[tuple[str, str], ...]
    to_file: tuple[tuple[str, str], ...]

    def file_name(self, key: str) -> str:
        for prefix in self.prefixes:
            key = key.removeprefix(prefix)
        for pattern, repl in self.to_file:
            key = re.sub(pattern, repl, key)
        return key

    def v5_name(self, key: str) -> str:
        for pattern, repl in self.to_v5:
            key = re.sub(pattern, repl, key)
        return key


DINOV3_NAMING = Naming(
    prefixes=("dinov3_vit.",),
    to_v5=((r"^layer\.(\d+)\.", r"model.layer.\1."),),
    to_file=((r"^model\.layer\.(\d+)\.", r"layer.\1."),),
)

_V2_ATTN = r"^(encoder\.layer\.\d+\.attention\.)"
DINOV2_NAMING = Naming(
    prefixes=("dinov2_with_registers.",),
    to_v5=(
        (_V2_ATTN + r"attention\.query\.", r"\1q_proj."),
        (_V2_ATTN + r"attention\.key\.", r"\1k_proj."),
        (_V2_ATTN + r"attention\.value\.", r"\1v_proj."),
        (_V2_ATTN + r"output\.dense\.", r"\1o_proj."),
    ),
    to_file=(
        (_V2_ATTN + r"q_proj\.", r"\1attention.query."),
        (_V2_ATTN + r"k_proj\.", r"\1attention.key."),
        (_V2_ATTN + r"v_proj\.", r"\1attention.value."),
        (_V2_ATTN + r"o_proj\.", r"\1output.dense."),
    ),
)


def to_file_names(state: Mapping[str, Any], naming: Naming) -> dict[str, Any]:
    """``state`` in the file naming, from either naming."""
    return {naming.file_name(k): v for k, v in state.items()}


def module_is_v5(module_keys: Any, naming: Naming) -> bool:
    """Whether a module's keys follow the transformers 5.x naming (some key differs from its file
    name)."""
    return any(naming.file_name(k) != k for k in module_keys)


def to_module_names(state: Mapping[str, Any], module: Any, naming: Naming) -> dict[str, Any]:
    """``state`` (either naming) renamed to the keys of ``module`` (built by the installed
    transformers)."""
    files = to_file_names(state, naming)
    if not module_is_v5(module.state_dict().keys(), naming):
        return files
    return {naming.v5_name(k): v for k, v in files.items()}
