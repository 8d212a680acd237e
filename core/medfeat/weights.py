"""Model weights on disk: safe reading, strict loading with a readable key diff, atomic saving.

Reading never unpickles code: ``.safetensors`` files go through safetensors, everything else
(``.pt``, ``.pth``, ``.ckpt``, ``.bin``) through ``torch.load(weights_only=True)``, which accepts
tensors in plain containers only. A file that would need full unpickling is refused with a
:class:`~medfeat.errors.CheckpointError`, as is a missing, empty, truncated or placeholder file
(Git LFS pointer, HTML login page). Every error names the file, what was expected (``what``) and
where to get it (``remedy``, supplied by the plugin that knows the weights).
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medfeat.errors import CheckpointError

if TYPE_CHECKING:
    import torch

#: keys under which checkpoint dicts commonly nest their state dict (Lightning: ``state_dict``).
STATE_DICT_KEYS = ("state_dict",)
_EXAMPLES = 3  # keys shown per kind of difference


# ---------------------------------------------------------------------------- reading
def _placeholder(path: Path) -> str | None:
    """What ``path`` is when it is obviously not a weights file (empty, LFS pointer, HTML page)."""
    size = path.stat().st_size
    if size == 0:
        return "an empty file"
    with path.open("rb") as fh:
        head = fh.read(512).lstrip().lower()
    if head.startswith(b"version https://git-lfs"):
        return "a Git LFS pointer, not the weights (the download did not fetch the LFS object)"
    if head.startswith((b"<!doctype", b"<html")) or head[:1] == b"<" and b"access" in head[:200]:
        return "an HTML page (probably a login or access page instead of the weights)"
    return None


def _load(path: Path, map_location: Any) -> Any:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        device = map_location if isinstance(map_location, str) else "cpu"
        return load_file(str(path), device=device)
    import torch

    return torch.load(path, map_location=map_location, weights_only=True)


def _first_line(exc: BaseException, limit: int = 160) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0][:limit] if text else ''}"


def read_checkpoint(
    path: str | os.PathLike,
    *,
    what: str,
    remedy: str,
    format: str | None = None,
    min_bytes: int = 0,
    map_location: Any = "cpu",
) -> Any:
    """The object in a local checkpoint file: tensors in plain containers, never pickled code.

    ``what`` names the expected content in messages ("LDM U-Net"), ``remedy`` says where to get
    the right file. With ``format``, the file must be a dict whose ``"format"`` entry equals it
    (medfeat's own checkpoints carry such a tag). ``min_bytes`` refuses files too small to hold
    the weights. Every failure is a :class:`CheckpointError`.
    """
    p = Path(path).expanduser()
    if not p.is_file():
        kind = "is a folder, not a file" if p.is_dir() else "does not exist"
        raise CheckpointError(f"The {what} checkpoint {p} {kind}.", remedy=remedy)
    placeholder = _placeholder(p)
    size = p.stat().st_size
    if placeholder is None and size < min_bytes:
        placeholder = f"a {size}-byte file, far too small for the {what} weights"
    if placeholder:
        raise CheckpointError(f"The {what} checkpoint {p} is {placeholder}.", remedy=remedy)
    try:
        obj = _load(p, map_location)
    except Exception as exc:  # truncated zip, foreign file, pickled objects, ...
        refused = re.search(r"GLOBAL ([\w.]+)", str(exc))
        if refused:
            raise CheckpointError(
                f"The {what} checkpoint {p} holds pickled Python objects ({refused.group(1)}), "
                "and medfeat never unpickles a checkpoint (that can run code); expected tensors "
                "in plain containers (dicts, lists, numbers, strings).",
                remedy=f"{remedy} If you trust the file, re-save its tensors once as a plain "
                "state dict: torch.save(torch.load(path, weights_only=False)['state_dict'], "
                "'weights.pt').",
            ) from None
        raise CheckpointError(
            f"The {what} checkpoint {p} ({size} bytes) could not be read ({_first_line(exc)}); "
            "it may be truncated or not a weights file.",
            remedy=f"Download or write it again and check its size. {remedy}",
        ) from None
    if format is not None:
        found = obj.get("format") if isinstance(obj, dict) else type(obj).__name__
        if found != format:
            raise CheckpointError(
                f"The {what} checkpoint {p} is of kind {found!r}, expected {format!r}.",
                remedy=remedy,
            )
    return obj


def unwrap_state_dict(obj: Any, keys: Sequence[str] = STATE_DICT_KEYS) -> Any:
    """The dict nested under the first of ``keys`` that holds one, else ``obj`` itself."""
    if isinstance(obj, Mapping):
        for key in keys:
            inner = obj.get(key)
            if isinstance(inner, Mapping):
                return inner
    return obj


def describe_checkpoint(obj: Any) -> str:
    """A short description of a loaded object for error messages."""
    if isinstance(obj, Mapping):
        keys = list(obj)
        head = ", ".join(map(str, keys[:4])) + (", ..." if len(keys) > 4 else "")
        return f"a dict with {len(keys)} keys ({head})"
    return f"a {type(obj).__name__}"


def read_state_dict(
    path: str | os.PathLike,
    *,
    what: str,
    remedy: str,
    nested: Sequence[str] = STATE_DICT_KEYS,
    min_bytes: int = 0,
) -> dict[str, torch.Tensor]:
    """The flat state dict (name -> tensor) of a local file, unwrapped from under ``nested`` keys
    (a Lightning ``.ckpt`` keeps it under ``state_dict``); see :func:`read_checkpoint`."""
    import torch

    obj = read_checkpoint(path, what=what, remedy=remedy, min_bytes=min_bytes)
    state = unwrap_state_dict(obj, nested)
    if not isinstance(state, Mapping) or not all(
        isinstance(v, torch.Tensor) for v in state.values()
    ):
        raise CheckpointError(
            f"The {what} checkpoint {Path(path)} does not hold a state dict of tensors "
            f"(found {describe_checkpoint(obj)}).",
            remedy=remedy,
        )
    return dict(state)


# ---------------------------------------------------------------------------- strict loading
def _shape(value: Any) -> tuple[int, ...] | None:
    if hasattr(value, "shape"):
        return tuple(value.shape)
    if isinstance(value, Sequence) and all(isinstance(n, int) for n in value):
        return tuple(value)
    return None


@dataclass
class KeyDiff:
    """How a state dict differs from what a module expects (keys in the modules' order)."""

    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    wrong_shape: list[str] = field(default_factory=list)  # "key: found (..), expected (..)"

    def __bool__(self) -> bool:
        return bool(self.missing or self.unexpected or self.wrong_shape)

    def describe(self, examples: int = _EXAMPLES) -> str:
        """E.g. ``2 missing (e.g. a.weight, a.bias); 1 with the wrong shape (e.g. ...)``."""
        parts = []
        for label, items in (
            ("missing", self.missing),
            ("unexpected", self.unexpected),
            ("with the wrong shape", self.wrong_shape),
        ):
            if items:
                more = ", ..." if len(items) > examples else ""
                parts.append(f"{len(items)} {label} (e.g. {', '.join(items[:examples])}{more})")
        return "; ".join(parts)


def key_diff(found: Mapping[str, Any], expected: Mapping[str, Any] | torch.nn.Module) -> KeyDiff:
    """Compare the keys and shapes of ``found`` with ``expected`` (a module, a state dict, or a
    mapping of key -> shape)."""
    if hasattr(expected, "state_dict") and not isinstance(expected, Mapping):
        expected = expected.state_dict()
    diff = KeyDiff(
        missing=[str(k) for k in expected if k not in found],
        unexpected=[str(k) for k in found if k not in expected],
    )
    for key, value in expected.items():
        want, got = _shape(value), _shape(found.get(key)) if key in found else None
        if want is not None and got is not None and want != got:
            diff.wrong_shape.append(f"{key}: found {got}, expected {want}")
    return diff


def check_state_dict(
    state: Mapping[str, Any],
    expected: Mapping[str, Any] | torch.nn.Module,
    *,
    what: str,
    path: str | os.PathLike | None = None,
    remedy: str | None = None,
) -> None:
    """Raise a :class:`CheckpointError` listing the differences (first few of each, with counts)
    when ``state`` does not have exactly the keys and shapes of ``expected``."""
    diff = key_diff(state, expected)
    if diff:
        where = f"The {what} checkpoint {Path(path)}" if path else f"The {what} weights"
        raise CheckpointError(
            f"{where} does not match the architecture: {diff.describe()}.",
            remedy=remedy or "Use the weights written for this architecture and configuration.",
        )


def load_state_dict_strict(
    module: torch.nn.Module,
    state: Mapping[str, Any],
    *,
    what: str,
    path: str | os.PathLike | None = None,
    remedy: str | None = None,
) -> None:
    """``module.load_state_dict(state, strict=True)``; a mismatch is a :class:`CheckpointError`
    with a readable key diff (see :func:`check_state_dict`)."""
    check_state_dict(state, module, what=what, path=path, remedy=remedy)
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as exc:  # e.g. a value that is not a tensor
        where = f"The {what} checkpoint {Path(path)}" if path else f"The {what} weights"
        raise CheckpointError(
            f"{where} does not fit the model: {str(exc)[:400]}",
            remedy=remedy or "Use the weights written for this architecture and configuration.",
        ) from None


# ---------------------------------------------------------------------------- saving
def _verify(path: Path) -> None:
    """Read a written file back under the reading rules, without loading the tensor data."""
    if path.suffix == ".safetensors":
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as fh:
            list(fh.keys())
        return
    import torch

    torch.load(path, map_location="cpu", weights_only=True, mmap=True)


def save_checkpoint(obj: Any, path: str | os.PathLike) -> Path:
    """Write ``obj`` (tensors in plain containers; a flat tensor dict for ``.safetensors``)
    atomically: to a temporary sibling, fsynced and read back with :func:`read_checkpoint`'s
    rules before it is renamed onto ``path``. On any failure ``path`` is left as it was and no
    temporary file remains."""
    from medfeat.io.atomic import atomic_path

    path = Path(path)
    with atomic_path(path) as tmp:
        if path.suffix == ".safetensors":
            from safetensors.torch import save_file

            save_file(dict(obj), str(tmp))
        else:
            import torch

            torch.save(obj, tmp)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        try:
            _verify(tmp)
        except Exception as exc:
            raise CheckpointError(
                f"The checkpoint written for {path} could not be read back ({_first_line(exc)}); "
                f"{path} was left as it was.",
                remedy="Save only tensors in plain containers (dicts, lists, numbers, strings), "
                "and check the free disk space.",
            ) from None
    with contextlib.suppress(OSError):  # make the rename itself durable where the platform allows
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    return path
