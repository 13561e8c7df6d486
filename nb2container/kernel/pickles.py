"""Serialise data globals and read which modules a pickle stream needs, without loading it.

Each data global gets the format that fits it: plain pickle for plain data, joblib for
estimators and numpy-heavy objects (arrays stored raw, memory-mappable), cloudpickle for
objects involving classes, functions or lambdas defined in the notebook (saved by value,
so they load without the notebook).
"""

from __future__ import annotations

import hashlib
import pickle
import pickletools
import re
import types
from pathlib import Path
from typing import Any

from nb2container.kernel import ORIGINAL_ATTR

_STRING_OPS = {"SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE", "STRING", "BINSTRING",
               "SHORT_BINSTRING"}


def modules_in_pickle(data: bytes) -> set[str]:
    """Top-level modules the stream imports when loaded (GLOBAL and STACK_GLOBAL opcodes).

    Strings are tracked through the memo so that STACK_GLOBAL's operands are known even
    when they are fetched back with BINGET.
    """
    modules: set[str] = set()
    memo: dict[int, str | None] = {}
    strings: list[str | None] = []
    last: str | None = None
    for opcode, arg, _ in pickletools.genops(data):
        name = opcode.name
        if name == "GLOBAL":
            modules.add(str(arg).split(" ", 1)[0])
        elif name == "STACK_GLOBAL" and len(strings) >= 2 and strings[-2]:
            modules.add(str(strings[-2]))
        if name in _STRING_OPS:
            last = str(arg)
            strings.append(last)
        elif name == "MEMOIZE":
            memo[len(memo)] = last
        elif name in ("PUT", "BINPUT", "LONG_BINPUT"):
            memo[int(str(arg))] = last
        elif name in ("GET", "BINGET", "LONG_BINGET"):
            last = memo.get(int(str(arg)))
            strings.append(last)
        else:
            last = None
    return {module.split(".", 1)[0] for module in modules}


def dump(obj: Any) -> tuple[bytes, str]:
    """Pickle ``obj``; by value (cloudpickle) when it involves code defined in the notebook.

    Returns the bytes and the format used. Raises TypeError (or pickle.PicklingError)
    when the object cannot be serialised at all.
    """
    try:
        data = pickle.dumps(obj, protocol=5)
        if "__main__" not in modules_in_pickle(data):
            return data, "pickle"
    except (TypeError, AttributeError, pickle.PicklingError):
        pass
    import io

    import cloudpickle  # only needed for notebook-defined classes, functions and lambdas

    class Unwrapping(cloudpickle.CloudPickler):
        """Saves a function the recorder wrapped as the notebook's own function, and notebook
        code the same way in every kernel session (see ``_stable_function``)."""

        stable: dict[int, types.FunctionType] = {}  # noqa: RUF012 - replaced per pickler below

        def reducer_override(self, value: Any) -> Any:
            if isinstance(value, types.FunctionType) and ORIGINAL_ATTR in value.__dict__:
                value = value.__dict__[ORIGINAL_ATTR]
            if isinstance(value, types.FunctionType) and value.__module__ == "__main__":
                if id(value) not in self.stable:
                    self.stable[id(value)] = _stable_function(value)
                value = self.stable[id(value)]
            if isinstance(value, type) and value.__module__ == "__main__":
                _track_deterministically(cloudpickle, value)
            return super().reducer_override(value)

    buffer = io.BytesIO()
    pickler = Unwrapping(buffer, protocol=5)
    pickler.stable = {}
    pickler.dump(obj)
    return buffer.getvalue(), "cloudpickle"


def write(obj: Any, data: bytes, fmt: str, folder: Path, name: str) -> tuple[str, str, int]:
    """Write ``obj`` (already serialised as ``data`` in ``fmt``) into ``folder``.

    Numpy-heavy objects go through joblib when the kernel has it; returns (file, format, size).
    """
    if fmt == "pickle" and "numpy" in modules_in_pickle(data):
        try:
            import joblib
        except ImportError:
            joblib = None
        if joblib is not None:
            path = folder / f"{name}.joblib"
            joblib.dump(obj, path)
            return path.name, "joblib", path.stat().st_size
    path = folder / f"{name}.pkl"
    path.write_bytes(data)
    return path.name, fmt, len(data)


class UnreadableData(Exception):
    """A data file that looks like a pickle, whose modules could not be read."""


# What reading a foreign pickle or joblib file can raise: a truncated or corrupt stream, a
# class whose module this kernel lacks, a joblib file written by another version.
_UNREADABLE = (OSError, EOFError, ValueError, pickle.UnpicklingError, ImportError, AttributeError, KeyError,
               IndexError, TypeError)


def modules_in_file(path: Path) -> set[str]:
    """Modules a pickle or joblib data file needs when loaded; empty for any other file.

    A plain pickle is scanned without loading. A joblib file interleaves raw array bytes
    with its pickle stream, so it is loaded with joblib and its object re-pickled for the
    scan: the function loads this same file when called, so this runs nothing new. A file
    that looks like either and cannot be read raises ``UnreadableData``: the packages it
    needs would silently leave the lock.
    """
    data = path.read_bytes()
    is_pickle = data[:1] == b"\x80" or path.suffix in (".pkl", ".pickle")
    try:
        if path.suffix == ".joblib" or (is_pickle and b"NumpyArrayWrapper" in data):
            import joblib

            return modules_in_pickle(dump(joblib.load(path))[0]) | {"joblib"}
        return modules_in_pickle(data) if is_pickle else set()
    except _UNREADABLE as exc:
        raise UnreadableData(f"{type(exc).__name__}: {exc}") from None


def _track_deterministically(cloudpickle: Any, cls: type) -> None:
    """Give a notebook class a tracker id derived from its name and code, not a random uuid4.

    cloudpickle marks each class it saves by value with a random id (cloudpipe/cloudpickle#510),
    so two captures of the same notebook would differ byte for byte. Registering the id first
    makes them identical; within a process the id still maps one class to one object.
    """
    registry = getattr(getattr(cloudpickle, "cloudpickle", None), "_DYNAMIC_CLASS_TRACKER_BY_CLASS", None)
    by_id = getattr(getattr(cloudpickle, "cloudpickle", None), "_DYNAMIC_CLASS_TRACKER_BY_ID", None)
    if registry is None or by_id is None or cls in registry:
        return  # another cloudpickle: keep its own ids
    digest = hashlib.sha256(cls.__qualname__.encode())
    for name, member in sorted(vars(cls).items()):
        code = getattr(member, "__code__", None)
        digest.update(name.encode() + (code.co_code + repr(code.co_consts).encode() if code else b""))
    tracker_id = digest.hexdigest()[:32]
    registry[cls] = tracker_id
    by_id.setdefault(tracker_id, cls)


_KERNEL_FILE = re.compile(r"^.*/ipykernel_\d+/")


def _stable_function(fn: types.FunctionType) -> types.FunctionType:
    """``fn`` with its cell's file name free of the kernel's process id.

    ipykernel compiles each cell as /tmp/ipykernel_<pid>/<hash of the cell>.py; cloudpickle
    saves that name with the code, so every session would pickle differently.
    """
    code = _stable_code(fn.__code__)
    if code is fn.__code__:
        return fn
    copy = types.FunctionType(code, fn.__globals__, fn.__name__, fn.__defaults__, fn.__closure__)
    copy.__kwdefaults__, copy.__annotations__ = fn.__kwdefaults__, fn.__annotations__
    copy.__qualname__, copy.__module__, copy.__doc__ = fn.__qualname__, fn.__module__, fn.__doc__
    copy.__dict__.update(fn.__dict__)
    return copy


def _stable_code(code: types.CodeType) -> types.CodeType:
    consts = tuple(_stable_code(c) if isinstance(c, types.CodeType) else c for c in code.co_consts)
    filename = _KERNEL_FILE.sub("<notebook cell>/", code.co_filename)
    if filename == code.co_filename and all(a is b for a, b in zip(consts, code.co_consts, strict=True)):
        return code
    return code.replace(co_filename=filename, co_consts=consts)
