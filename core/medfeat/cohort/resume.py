"""What makes a finished case reusable: the configuration it ran with and the checksums of its
inputs and outputs, recorded in its ``provenance.json``."""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

#: options that do not change a case's results (where outputs go, how a rerun is treated)
_IGNORED = (("output", "dir"), ("output", "overwrite"), ("output", "report"), ("data", "cases"))


def config_fingerprint(config: dict[str, Any]) -> str:
    """SHA-256 of the resolved configuration without the options that cannot change a case's
    results (output folder, overwrite, report, the selection of cases)."""
    config = copy.deepcopy(config)
    for section, key in _IGNORED:
        if isinstance(config.get(section), dict):
            config[section].pop(key, None)
    text = json.dumps(config, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def input_checksums(paths: Iterable[Path]) -> dict[str, str]:
    """``{absolute path: sha256}`` of a case's input files (folders: all their files)."""
    from medfeat.io.checksum import sha256_file

    return {str(Path(p).resolve()): sha256_file(p) for p in paths}


def why_rerun(
    case_dir: Path, fingerprint: str, inputs: Iterable[Path], verify_outputs: bool = True
) -> str | None:
    """``None`` when ``case_dir`` holds the complete outputs of the same configuration on the
    same inputs; otherwise why the case must run again."""
    from medfeat.io.checksum import sha256_file

    record_path = case_dir / "provenance.json"
    if not record_path.is_file():
        return "no finished outputs"
    try:
        record = json.loads(record_path.read_text())
    except (OSError, ValueError):
        return "its provenance.json is unreadable"
    if record.get("fingerprint") != fingerprint:
        return "the configuration changed"
    before = record.get("input_checksums") or {}
    try:
        now = input_checksums(inputs)
    except OSError as exc:
        return f"an input cannot be read ({exc})"
    if before != now:
        changed = sorted(set(before.items()) ^ set(now.items()))
        return f"input {Path(changed[0][0]).name} changed" if changed else "its inputs changed"
    for rel, info in (record.get("outputs") or {}).items():
        out = case_dir / rel
        if not out.is_file() or out.stat().st_size != info.get("bytes"):
            return f"output {rel} is missing or incomplete"
        if verify_outputs and sha256_file(out) != info.get("sha256"):
            return f"output {rel} changed"
    if not (case_dir / "metrics.json").is_file():
        return "output metrics.json is missing"
    return None
