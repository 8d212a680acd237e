"""What a run records beside its outputs so it can be understood and repeated."""

from __future__ import annotations

import functools
import json
import os
import platform
import socket
import subprocess
import sys
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, distribution, version
from pathlib import Path
from typing import Any

from medfeat.geometry import Image

_LIBRARIES = (
    "medfeat",
    "torch",
    "monai",
    "numpy",
    "scipy",
    "SimpleITK",
    "nibabel",
    "pydantic",
    "pluggy",
)


def library_versions(plugins: dict[str, str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for name in _LIBRARIES:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "not installed"
    return {**out, **{f"plugin:{k}": v for k, v in plugins.items()}}


def describe_input(path: Path) -> dict[str, Any]:
    """Path and checksum of an input file or DICOM folder (within a run, the checksum computed when
    the file was read is reused: see :func:`medfeat.io.checksum.remembering_checksums`)."""
    from medfeat.io.checksum import sha256_file

    return {"path": str(Path(path).resolve()), "sha256": sha256_file(path)}


def describe_image(image: Image) -> dict[str, Any]:
    return {"name": image.name, "sha256": image.meta.get("sha256"), "grid": image.grid.to_dict()}


@functools.cache
def checkout_of(dist_name: str) -> dict[str, Any] | None:
    """Where distribution ``dist_name`` was installed from, when that is a local folder (an
    editable or path install, PEP 610 ``direct_url.json``): the folder, its git commit and whether
    the checkout had uncommitted changes (``dirty``). ``None`` for an install from an index."""
    try:
        raw = distribution(dist_name).read_text("direct_url.json")
    except PackageNotFoundError:
        return None
    if not raw:
        return None
    try:
        url = json.loads(raw).get("url", "")
    except ValueError:
        return None
    if not url.startswith("file://"):
        return None
    folder = Path(url.removeprefix("file://"))
    out: dict[str, Any] = {"path": str(folder), "commit": None, "dirty": None}
    commit = _git(folder, "rev-parse", "HEAD")
    if commit is not None:
        status = _git(folder, "status", "--porcelain", "--untracked-files=no")
        out.update(commit=commit, dirty=bool(status) if status is not None else None)
    return out


def _git(folder: Path, *args: str) -> str | None:
    """Output of a read-only git command in ``folder`` (``None`` without git or a checkout)."""
    try:
        proc = subprocess.run(
            ["git", "--no-optional-locks", "-C", str(folder), *args],
            capture_output=True,
            text=True,
            timeout=20,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return proc.stdout.strip() if proc.returncode == 0 else None


def code_versions(plugins: dict[str, str]) -> dict[str, dict[str, Any]]:
    """Version, and for checkouts the git commit and dirty flag, of medfeat and each plugin."""
    out: dict[str, dict[str, Any]] = {}
    for name in ("medfeat", *sorted(plugins)):
        try:
            entry: dict[str, Any] = {"version": version(name)}
        except PackageNotFoundError:
            entry = {"version": plugins.get(name, "not installed")}
        checkout = checkout_of(name)
        if checkout is not None:
            entry["checkout"] = checkout
        out[name] = entry
    return out


def host_record() -> dict[str, Any]:
    """The machine a run (or a case) ran on: host name, CPU model, cores and threads used."""
    threads: dict[str, Any] = {
        k: os.environ[k] for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS") if k in os.environ
    }
    if "torch" in sys.modules:
        threads["torch"] = sys.modules["torch"].get_num_threads()
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = os.cpu_count()
    return {
        "hostname": socket.gethostname(),
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpus_usable": usable,
        "threads": threads,
        "pid": os.getpid(),
    }


@functools.lru_cache(maxsize=1)
def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def output_checksums(folder: str | os.PathLike, skip: tuple[str, ...] = ()) -> dict[str, Any]:
    """``{relative path: {sha256, bytes}}`` of every file under ``folder`` (except ``skip``)."""
    from medfeat.io.checksum import sha256_file

    root = Path(folder)
    out: dict[str, Any] = {}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).as_posix()
        if p.is_file() and rel not in skip:
            out[rel] = {"sha256": sha256_file(p), "bytes": p.stat().st_size}
    return out


def base_record(
    config: dict,
    seed: int,
    device: str,
    plugins: dict[str, str],
    out_dir: str | os.PathLike | None = None,
) -> dict[str, Any]:
    """What every run records: time, command line, configuration (with the output folder
    actually used), seed, device, versions and code checkouts, and the host."""
    if out_dir is not None:
        out_dir = str(Path(out_dir).resolve())
        config = {**config, "output": {**config.get("output", {}), "dir": out_dir}}
    return {
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": sys.argv,
        "working_directory": os.getcwd(),
        "out_dir": out_dir,
        "config": config,
        "seed": seed,
        "device": device,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "host": host_record(),
        "versions": library_versions(plugins),
        "code": code_versions(plugins),
    }
