"""What a finished output folder holds: metrics, provenance, case folders, and the run's inputs.

The output folder keeps the run's outputs but not its inputs (fixed and moving images, reference
landmarks and labels); :meth:`RunFolder.cases` reads them again through the dataset component
recorded in ``provenance.json`` and checks that they are the ones the run used (checksums, grids).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medfeat.errors import InputFileError

#: Sub-folders of an output folder that are not cases.
NOT_CASES = {"report", "checkpoints", "logs", "__pycache__"}


def read_json(path: Path) -> Any:
    """The JSON of ``path``, or None when it is absent or unreadable."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


@dataclass
class RunFolder:
    """A finished output folder of ``medfeat run`` or ``medfeat bench``."""

    path: Path
    provenance: dict[str, Any] | None
    metrics: dict[str, Any] | None
    notes: list[str] = field(default_factory=list)

    @classmethod
    def open(cls, path: str | Path) -> RunFolder:
        path = Path(path)
        if not path.is_dir():
            raise InputFileError(
                f"{path} is not a folder.",
                remedy="Give the output folder of a finished run (the --out of `medfeat run`).",
            )
        provenance, metrics = read_json(path / "provenance.json"), read_json(path / "metrics.json")
        if provenance is None and metrics is None:
            raise InputFileError(
                f"{path} holds neither provenance.json nor metrics.json: it is not the output "
                "folder of a finished run.",
                remedy="Give the --out folder of a `medfeat run` or `medfeat bench` that finished.",
            )
        folder = cls(path, provenance, metrics)
        if provenance is None:
            folder.notes.append("provenance.json is missing: inputs and settings are unknown.")
        if metrics is None:
            folder.notes.append("metrics.json is missing (the run may not have finished).")
        return folder

    # ------------------------------------------------------------------------------ settings
    @property
    def config(self) -> dict[str, Any]:
        return (self.provenance or {}).get("config") or {}

    @property
    def kind(self) -> str:
        """registration, correspondence, segmentation or pretraining (guessed from files if needed)."""
        if self.config.get("kind"):
            return str(self.config["kind"])
        mode = (self.metrics or {}).get("mode")
        if mode == "pretrain":
            return "pretraining"
        if mode in ("train", "infer"):
            return "segmentation"
        for case in self.case_dirs().values():
            if (case / "field_fixed_to_moving.nii.gz").exists():
                return "registration"
            if (case / "matches_in_moving_world_lps_mm.csv").exists():
                return "correspondence"
            if (case / "labels.nii.gz").exists():
                return "segmentation"
        return "unknown"

    @property
    def mode(self) -> str | None:
        return self.config.get("mode") or (self.metrics or {}).get("mode")

    @property
    def is_result(self) -> bool:
        return bool((self.metrics or {}).get("is_result", True)) and bool(
            (self.provenance or {}).get("is_result", True)
        )

    @property
    def random_weights(self) -> list[str]:
        return list((self.metrics or {}).get("random_weights") or [])

    # ------------------------------------------------------------------------------ cases
    def case_dirs(self) -> dict[str, Path]:
        """Case id -> its folder, for the cases in metrics.json and any case folder on disk."""
        ids = list(((self.metrics or {}).get("cases") or {}).keys())
        dirs = {i: self.path / i for i in ids}
        for d in sorted(self.path.iterdir()):
            is_case = d.is_dir() and d.name not in NOT_CASES and (d / "metrics.json").exists()
            if is_case and d.name not in dirs:
                dirs[d.name] = d
        return dirs

    def case_metrics(self, case_id: str) -> dict[str, Any] | None:
        m = ((self.metrics or {}).get("cases") or {}).get(case_id)
        if m is None:
            m = read_json(self.path / case_id / "metrics.json")
        return m

    def case_record(self, case_id: str) -> dict[str, Any]:
        return ((self.provenance or {}).get("cases") or {}).get(case_id) or {}

    def failures(self) -> list[tuple[str, str]]:
        """``(case, reason)`` of the cases the run recorded as failed."""
        out: list[tuple[str, str]] = []
        raw = (self.metrics or {}).get("failures") or (self.metrics or {}).get("failed") or {}
        if isinstance(raw, dict):
            out += [(str(k), _reason(v)) for k, v in raw.items()]
        elif isinstance(raw, list):
            for item in raw:
                if isinstance(item, dict):
                    out.append((str(item.get("case", item.get("id", "?"))), _reason(item)))
                else:
                    out.append((str(item), ""))
        for case, m in ((self.metrics or {}).get("cases") or {}).items():
            if isinstance(m, dict) and m.get("error") and case not in dict(out):
                out.append((case, _reason(m["error"])))
        return out

    # ------------------------------------------------------------------------------ inputs
    def dataset(self) -> tuple[Any | None, str | None]:
        """The run's dataset component rebuilt from provenance, or ``(None, why not)``."""
        data = dict(self.config.get("data") or {})
        name = data.pop("name", None)
        if not name:
            return None, "provenance.json does not record the dataset"
        try:
            from medfeat.context import RunContext
            from medfeat.plugins import get_registry
            from medfeat.progress import Progress

            component = get_registry().get("dataset", name)
            context = RunContext(progress=Progress(enabled=False, verbosity=-1))
            return component.build(data, context), None
        except (
            Exception
        ) as exc:  # a missing plugin, a moved file: the report goes on without inputs
            return None, f"the dataset {name!r} could not be opened again ({_reason(exc)})"

    def input_items(self) -> tuple[Iterator[Any], str | None]:
        """The run's cases (registration, correspondence) or test samples (segmentation), read again.

        Returns ``(iterator, None)`` or ``(empty iterator, why the inputs are unavailable)``.
        """
        dataset, why = self.dataset()
        if dataset is None:
            return iter(()), why
        try:
            if self.kind == "segmentation":
                return iter(dataset.segmentation_samples("test")), None
            return iter(dataset.registration_cases()), None
        except Exception as exc:
            return iter(()), f"the dataset's cases could not be read again ({_reason(exc)})"

    def input_changes(self, case_id: str, item: Any) -> list[str]:
        """Ways the inputs read now differ from those the run recorded (checksums, grids)."""
        record = self.case_record(case_id)
        problems = []
        for role in ("fixed", "moving"):
            image, rec = getattr(item, role, None), record.get(role)
            if image is None or not rec:
                continue
            now, then = image.meta.get("sha256"), rec.get("sha256")
            if now and then and now != then:
                problems.append(
                    f"the {role} image {rec.get('name')} changed since the run (checksum)"
                )
            if rec.get("grid") and image.grid.to_dict() != rec["grid"]:
                import numpy as np

                a, b = image.grid.to_dict(), rec["grid"]
                same = all(np.allclose(a[k], b[k], atol=1e-4) for k in a if k in b)
                if not same:
                    problems.append(f"the {role} image's grid differs from the run's record")
        return problems


def _reason(value: Any) -> str:
    if isinstance(value, BaseException):
        return getattr(value, "message", None) or str(value) or type(value).__name__
    if isinstance(value, dict):
        return str(value.get("error") or value.get("reason") or value.get("message") or value)
    return str(value)
