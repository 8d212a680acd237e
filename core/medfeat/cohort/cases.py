"""The cases of a cohort: their ids and input files, listed before anything runs.

A dataset adapter that can list its cases cheaply and load one by id implements
``list_cases() -> list[tuple[str, list[Path]]]`` and ``load_case(case_id) -> RegistrationCase``;
a worker then loads its own case. Otherwise the cases are read once in this process to list
them (each one dropped after) and read again, one at a time, when they run.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medfeat.errors import ConfigError, InputFileError

_SAFE_ID = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.+=@-]*$")


@dataclass(frozen=True)
class CaseRef:
    """A case's id (its output folder's name) and its input files."""

    id: str
    inputs: tuple[Path, ...] = ()


@dataclass
class CaseList:
    """The cases of a run, in dataset order. ``indexed``: workers load a case by id; otherwise
    ``stream()`` yields the loaded cases again, in the same order."""

    refs: list[CaseRef]
    indexed: bool
    stream: Callable[[], Iterator[Any]] | None = field(default=None, repr=False)


def _check_ids(refs: list[CaseRef], where: str) -> None:
    seen: set[str] = set()
    for ref in refs:
        if not isinstance(ref.id, str) or not _SAFE_ID.match(ref.id) or ref.id == "..":
            raise InputFileError(
                f"{where}: case id {ref.id!r} cannot name an output folder.",
                remedy="Case ids may use letters, digits and _ . + = @ - (no slashes or spaces); "
                "rename the case (e.g. the case_id column of a pairs CSV).",
            )
        if ref.id in seen:
            raise InputFileError(
                f"{where}: two cases are called {ref.id!r}; each case needs its own output folder.",
                remedy="Give every case a distinct id (e.g. the case_id column of a pairs CSV).",
            )
        seen.add(ref.id)


def list_cases(kind: str, dataset: Any, dataset_name: str) -> CaseList:
    """The cases of ``dataset`` for a pipeline of ``kind`` (registration and correspondence:
    registration cases; segmentation inference: the ``test`` samples)."""
    where = f"dataset {dataset_name!r}"
    if kind == "segmentation":
        if not callable(getattr(dataset, "segmentation_samples", None)):
            raise ConfigError(
                f"dataset {dataset_name!r} provides no segmentation samples.",
                key_path="data.name",
                remedy="Use a dataset adapter for images with label maps "
                "(`medfeat components dataset`).",
            )

        def stream() -> Iterator[Any]:
            yield from dataset.segmentation_samples("test")

    else:
        if callable(getattr(dataset, "list_cases", None)) and callable(
            getattr(dataset, "load_case", None)
        ):
            refs = [
                CaseRef(str(i), tuple(Path(p) for p in inputs))
                for i, inputs in dataset.list_cases()
            ]
            _check_ids(refs, where)
            return CaseList(refs, indexed=True)
        if not callable(getattr(dataset, "registration_cases", None)):
            raise ConfigError(
                f"dataset {dataset_name!r} provides no registration cases.",
                key_path="data.name",
                remedy="Use a dataset adapter of image pairs (`medfeat components dataset`).",
            )

        def stream() -> Iterator[Any]:
            yield from dataset.registration_cases()

    refs = [CaseRef(c.id, tuple(Path(p) for p in c.inputs)) for c in stream()]
    _check_ids(refs, where)
    return CaseList(refs, indexed=False, stream=stream)
