"""Serialise data globals and read which modules a pickle stream needs, without loading it.

Each data global gets the format that fits it: plain pickle for plain data, joblib for
estimators and numpy-heavy objects (arrays stored raw, memory-mappable), cloudpickle for
objects involving classes, functions or lambdas defined in the notebook (saved by value,
so they load without the notebook).
"""

from __future__ import annotations

import pickle
import pickletools
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
        """Saves a function the recorder wrapped as the notebook's own function."""

        def reducer_override(self, value: Any) -> Any:
            if isinstance(value, types.FunctionType) and ORIGINAL_ATTR in value.__dict__:
                value = value.__dict__[ORIGINAL_ATTR]
            return super().reducer_override(value)

    buffer = io.BytesIO()
    Unwrapping(buffer, protocol=5).dump(obj)
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


def modules_in_file(path: Path) -> set[str]:
    """Modules a pickle or joblib data file needs when loaded; empty for any other file.

    A plain pickle is scanned without loading. A joblib file interleaves raw array bytes
    with its pickle stream, so it is loaded with joblib and its object re-pickled for the
    scan: the function loads this same file when called, so this runs nothing new.
    """
    data = path.read_bytes()
    is_pickle = data[:1] == b"\x80" or path.suffix in (".pkl", ".pickle")
    if path.suffix == ".joblib" or (is_pickle and b"NumpyArrayWrapper" in data):
        try:
            import joblib

            return modules_in_pickle(dump(joblib.load(path))[0]) | {"joblib"}
        except Exception:
            return set()
    if is_pickle:
        try:
            return modules_in_pickle(data)
        except Exception:
            return set()
    return set()
