"""Model weights on disk: safe reading, strict loading with a readable key diff, atomic saving.

Reading never runs code from a file. ``.safetensors`` files go through safetensors; everything
else (``.pt``, ``.pth``, ``.ckpt``, ``.bin``) through ``torch.load(weights_only=True)``, and a
file that holds other pickled Python objects (a Lightning ``.ckpt`` carries callbacks,
hyper-parameters, loop state) is read again by a restricted unpickler: tensors, plain containers,
numbers, strings and a short allow-list of harmless types are rebuilt, and every other pickled
class or function becomes an inert :class:`SkippedObject` that records its name and is never
imported, called or instantiated. A state dict must consist of tensors only. A missing, empty,
truncated or placeholder file (Git LFS pointer, HTML login page) is a
:class:`~medfeat.errors.CheckpointError`. Every error names the file, what was expected
(``what``) and where to get it (``remedy``, supplied by the plugin that knows the weights).
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import os
import pickle
import types
import warnings
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


class SkippedObject:
    """Stands for a pickled object of a class or function that is not allow-listed.

    Nothing of the original runs: its module is not imported, and what the pickle would have
    passed to it (constructor arguments, state, items) is only recorded. ``global_name`` is the
    pickled name, e.g. ``pytorch_lightning.callbacks.model_checkpoint.ModelCheckpoint``.
    """

    global_name = "?"

    def __new__(cls, *args: Any, **kwargs: Any) -> SkippedObject:
        obj = object.__new__(cls)
        obj.__dict__.update(args=args, kwargs=kwargs, state=None, items=[])
        return obj

    def __init__(self, *args: Any, **kwargs: Any) -> None:  # nothing runs
        pass

    def __setstate__(self, state: Any) -> None:
        self.__dict__["state"] = state

    def __setitem__(self, key: Any, value: Any) -> None:
        self.__dict__["items"].append((key, value))

    def append(self, value: Any) -> None:
        self.__dict__["items"].append(value)

    def extend(self, values: Any) -> None:
        self.__dict__["items"].extend(values)

    def __repr__(self) -> str:
        return f"<skipped {self.global_name}>"


@functools.cache
def _skipped_class(global_name: str) -> type[SkippedObject]:
    """One inert stand-in class per pickled name (a pickle may use it as a class or a callable)."""
    name = f"Skipped[{global_name}]"
    return type(name, (SkippedObject,), {"global_name": global_name, "__slots__": ()})


@functools.cache
def _allowed_globals() -> dict[str, Any]:
    """Pickled names rebuilt for real: torch's own ``weights_only`` allow-list (tensors, storages,
    dtypes, plain containers) plus numpy scalars and dtypes. Nothing here imports or runs code."""
    import torch

    allowed: dict[str, Any] = {}
    try:  # the list torch itself trusts for weights_only loading
        from torch._weights_only_unpickler import _get_allowed_globals

        allowed.update(_get_allowed_globals())
    except (ImportError, AttributeError):  # a torch without it: the essentials
        import codecs
        from collections import OrderedDict

        allowed.update(
            {
                "collections.OrderedDict": OrderedDict,
                "_codecs.encode": codecs.encode,
                "torch.Size": torch.Size,
                "torch._utils._rebuild_tensor_v2": torch._utils._rebuild_tensor_v2,
                "torch._utils._rebuild_parameter": torch._utils._rebuild_parameter,
            }
        )
        allowed.update(
            {f"torch.{n}": v for n, v in vars(torch).items() if isinstance(v, torch.dtype)}
        )
    try:
        import numpy as np
        from numpy._core.multiarray import scalar
    except ImportError:  # numpy 1.x
        try:
            import numpy as np
            from numpy.core.multiarray import scalar
        except ImportError:
            return allowed
    for module in ("numpy.core.multiarray", "numpy._core.multiarray"):
        allowed[f"{module}.scalar"] = scalar  # numpy scalars: a dtype and raw bytes
    allowed["numpy.dtype"] = np.dtype
    return allowed


#: names skipped by the restricted unpickler during the current read (for error messages).
_SKIPPED: contextvars.ContextVar[list[str] | None] = contextvars.ContextVar(
    "medfeat_skipped_globals", default=None
)


class _PickledObjects(Exception):
    """A read that failed after skipping pickled objects (e.g. tensors pickled with plain
    ``pickle``, whose storages are rebuilt by a nested unrestricted ``torch.load``)."""

    def __init__(self, names: list[str]) -> None:
        super().__init__(", ".join(names))
        self.names = names


class _RestrictedUnpickler(pickle._Unpickler):
    """Resolves a pickled name from :func:`_allowed_globals` only; any other name becomes an
    inert :class:`SkippedObject` class (never imported). Setting the state (``BUILD``) of a
    class, a function or a module is refused: a pickle could otherwise rewrite an allowed
    function's defaults or a class's methods for the whole process."""

    dispatch = dict(pickle._Unpickler.dispatch)

    def load_build(self) -> None:
        target = self.stack[-2]  # the state is on top, the object below it
        if isinstance(target, type | types.ModuleType) or (
            callable(target) and not isinstance(target, SkippedObject)
        ):
            raise pickle.UnpicklingError(f"refused to set the state of {target!r}")
        super().load_build()

    dispatch[pickle.BUILD[0]] = load_build

    def find_class(self, module: str, name: str) -> Any:
        import _compat_pickle  # Python 2 names (protocol 2, as torch.save writes): __builtin__.set

        if (module, name) in _compat_pickle.NAME_MAPPING:
            module, name = _compat_pickle.NAME_MAPPING[(module, name)]
        module = _compat_pickle.IMPORT_MAPPING.get(module, module)
        full = f"{module}.{name}"
        allowed = _allowed_globals().get(full)
        if allowed is not None:
            return allowed
        record = _SKIPPED.get()
        if record is not None and full not in record:
            record.append(full)
        return _skipped_class(full)


def _restricted_load(file: Any, **kwargs: Any) -> Any:
    return _RestrictedUnpickler(file, **kwargs).load()


#: a stand-in for the ``pickle`` module that ``torch.load`` uses for the objects around the tensors.
_RESTRICTED_PICKLE = types.SimpleNamespace(
    __name__="medfeat_restricted_pickle",
    Unpickler=_RestrictedUnpickler,
    load=_restricted_load,
)


def _needs_restricted_reader(path: Path) -> bool:
    """Whether a ``torch.save`` zip file names globals beyond torch's ``weights_only`` list (read
    from its pickle alone, so a large Lightning file is not read twice)."""
    import zipfile

    if not zipfile.is_zipfile(path):
        return False
    try:
        from torch.serialization import get_unsafe_globals_in_checkpoint

        return bool(get_unsafe_globals_in_checkpoint(str(path)))
    except Exception:  # an older torch, a damaged archive: the normal path decides
        return False


def _load(path: Path, map_location: Any) -> Any:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        device = map_location if isinstance(map_location, str) else "cpu"
        return load_file(str(path), device=device)
    import torch

    with warnings.catch_warnings():  # torch warns about pickle protocols; errors say it all
        warnings.simplefilter("ignore")
        if not _needs_restricted_reader(path):
            try:
                return torch.load(path, map_location=map_location, weights_only=True)
            except pickle.UnpicklingError:  # objects beyond tensors: rebuild only harmless ones
                pass
        skipped: list[str] = []
        token = _SKIPPED.set(skipped)
        try:
            return torch.load(
                path,
                map_location=map_location,
                weights_only=False,
                pickle_module=_RESTRICTED_PICKLE,
            )
        except Exception as exc:
            if skipped:
                raise _PickledObjects(skipped) from exc
            raise
        finally:
            _SKIPPED.reset(token)


def skipped_objects(obj: Any, limit: int = 10_000) -> list[str]:
    """Names of the :class:`SkippedObject` stand-ins in ``obj`` (searched through dicts, lists,
    tuples and what the stand-ins recorded; at most ``limit`` containers), without repeats, in
    order of appearance."""
    names: dict[str, None] = {}
    stack, seen = [obj], 0
    while stack and seen < limit:
        item = stack.pop()
        if isinstance(item, SkippedObject):
            names[item.global_name] = None
            seen += 1
            stack.extend(reversed([item.args, item.kwargs, item.state, item.items]))
        elif isinstance(item, Mapping):
            seen += 1
            stack.extend(reversed([*item.keys(), *item.values()]))
        elif isinstance(item, list | tuple):
            seen += 1
            stack.extend(reversed(item))
        elif isinstance(item, type) and issubclass(item, SkippedObject):
            names[item.global_name] = None
    return list(names)


def _first_line(exc: BaseException, limit: int = 160) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0][:limit] if text else ''}"


def _pickled_objects_error(
    p: Path, what: str, names: Sequence[str], remedy: str
) -> CheckpointError:
    shown = ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")
    return CheckpointError(
        f"The {what} checkpoint {p} holds pickled Python objects ({shown}) where tensors in plain "
        "containers (dicts, lists, numbers, strings) were expected; medfeat never runs code from "
        "a file, so it did not rebuild them.",
        remedy=f"{remedy} If you trust the file, re-save its tensors once as a plain state dict "
        "(torch.save(model.state_dict(), 'weights.pt')) and give that file.",
    )


def read_checkpoint(
    path: str | os.PathLike,
    *,
    what: str,
    remedy: str,
    format: str | None = None,
    min_bytes: int = 0,
    map_location: Any = "cpu",
    plain: bool = False,
) -> Any:
    """The object in a local checkpoint file; no code in it ever runs.

    Tensors, plain containers and a few harmless types are rebuilt; any other pickled object
    (a Lightning callback, a hyper-parameter namespace) becomes an inert :class:`SkippedObject`.
    With ``plain`` (implied by ``format``), the file must hold nothing else: medfeat's own files.
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
    except _PickledObjects as exc:
        raise _pickled_objects_error(p, what, exc.names, remedy) from None
    except Exception as exc:  # truncated zip, foreign file, ...
        raise CheckpointError(
            f"The {what} checkpoint {p} ({size} bytes) could not be read ({_first_line(exc)}); "
            "it may be truncated or not a weights file.",
            remedy=f"Download or write it again and check its size. {remedy}",
        ) from None
    if isinstance(obj, SkippedObject) or plain or format is not None:
        names = skipped_objects(obj)
        if names:
            raise _pickled_objects_error(p, what, names, remedy)
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
    if isinstance(obj, SkippedObject):
        return f"a pickled {obj.global_name} object (not rebuilt)"
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
    if isinstance(state, Mapping) and skipped_objects(list(state.values())):
        raise _pickled_objects_error(Path(path), what, skipped_objects(state), remedy)
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
    where = f"The {what} checkpoint {Path(path)}" if path else f"The {what} weights"
    skipped = skipped_objects(list(state.values()))
    if skipped:
        raise CheckpointError(
            f"{where} holds pickled Python objects ({', '.join(skipped[:3])}) where tensors were "
            "expected; medfeat never runs code from a file, so it did not rebuild them.",
            remedy=remedy or "Re-save the weights as a plain state dict of tensors.",
        )
    diff = key_diff(state, expected)
    if diff:
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
