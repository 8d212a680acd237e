"""The cohort manifest (``cohort.json``): every case's state (done, failed, pending) with its
reason, rewritten atomically each time a case finishes."""

from __future__ import annotations

import time
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

DONE, FAILED, PENDING = "done", "failed", "pending"


class Manifest:
    """Case states of one run; :meth:`write` saves them to ``path`` atomically."""

    def __init__(self, path: Path, fingerprint: str, case_ids: list[str], meta: dict[str, Any]):
        self.path = Path(path)
        self.fingerprint = fingerprint
        self.meta = meta
        self.state = "running"
        self.cases: dict[str, dict[str, Any]] = {
            c: {"status": PENDING, "reason": "not started"} for c in case_ids
        }
        self._started = time.time()

    def set(self, case_id: str, status: str, reason: str, **extra: Any) -> None:
        self.cases[case_id] = {"status": status, "reason": reason, **extra}

    def ids(self, status: str) -> list[str]:
        return [c for c, e in self.cases.items() if e["status"] == status]

    def counts(self) -> dict[str, int]:
        counts = Counter(e["status"] for e in self.cases.values())
        return {s: counts.get(s, 0) for s in (DONE, FAILED, PENDING)}

    def to_dict(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "updated": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "elapsed_s": round(time.time() - self._started, 3),
            "fingerprint": self.fingerprint,
            "counts": self.counts(),
            **self.meta,
            "cases": self.cases,
        }

    def write(self) -> None:
        from medfeat.io.atomic import atomic_write_json

        atomic_write_json(self.path, self.to_dict())
