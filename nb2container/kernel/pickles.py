"""Serialise data globals and read which modules a pickle stream needs, without loading it."""

from __future__ import annotations

import pickle
import pickletools
from typing import Any

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
    import cloudpickle  # only needed for notebook-defined classes, functions and lambdas

    return cloudpickle.dumps(obj, protocol=5), "cloudpickle"
