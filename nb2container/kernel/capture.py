"""Capture the serving function and everything it needs from a live namespace.

Runs inside the kernel. Walks the function's global names (symtable, so names used in
comprehensions and lambdas count), recursively through the helpers and classes the
notebook defines; imports become import statements with their aliases, small literals
become constants, everything else becomes a pickled artifact. The source of notebook
definitions is found in the cells as they were executed (``In``), last definition wins.
"""

from __future__ import annotations

import ast
import builtins
import inspect
import json
import platform
import symtable
import sys
import types
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from nb2container.kernel import pickles
from nb2container.kernel.recorder import ORIGINAL_ATTR

_LITERAL_MAX_CHARS = 10_000


class Refusal(Exception):
    """What cannot travel into the image; the message names the culprit and what to do."""

    def __init__(self, kind: str, message: str, **details: Any) -> None:
        super().__init__(message)
        self.kind, self.details = kind, details


@dataclass
class _Closure:
    ns: dict[str, Any]
    definitions_by_name: dict[str, tuple[int, str]]
    imports: dict[str, str] = field(default_factory=dict)
    constants: dict[str, str] = field(default_factory=dict)
    objects: dict[str, Any] = field(default_factory=dict)
    definitions: dict[str, tuple[int, str]] = field(default_factory=dict)
    modules: set[str] = field(default_factory=set)
    missing: dict[str, str] = field(default_factory=dict)
    seen: set[str] = field(default_factory=set)

    def visit(self, name: str, used_by: str) -> None:
        if name in self.seen:
            return
        self.seen.add(name)
        if name not in self.ns:
            if not hasattr(builtins, name):
                self.missing[name] = used_by
            return
        obj = self.ns[name]
        obj = getattr(obj, ORIGINAL_ATTR, obj)
        if isinstance(obj, types.ModuleType):
            self._import_module(name, obj)
        elif _defined_in_notebook(obj) and name in self.definitions_by_name:
            self.definitions[name] = self.definitions_by_name[name]
            for child in global_names(self.definitions[name][1]):
                self.visit(child, used_by=name)
        elif _importable(obj) and not _defined_in_notebook(obj):
            self._import_object(name, obj)
        elif _is_literal(obj):
            self.constants[name] = repr(obj)
        else:
            self.objects[name] = obj

    def _import_module(self, name: str, module: types.ModuleType) -> None:
        real = module.__name__
        self.imports[name] = f"import {real}" if real == name else f"import {real} as {name}"
        if "." in real and real.rsplit(".", 1)[1] == name:
            parent, leaf = real.rsplit(".", 1)
            self.imports[name] = f"from {parent} import {leaf}"
        self.modules.add(real.split(".", 1)[0])

    def _import_object(self, name: str, obj: Any) -> None:
        module, qualname = obj.__module__, obj.__qualname__
        alias = "" if qualname == name else f" as {name}"
        self.imports[name] = f"from {module} import {qualname}{alias}"
        self.modules.add(module.split(".", 1)[0])


def global_names(source: str) -> list[str]:
    """Names that a top-level definition reads from the module namespace, in first-seen order."""
    found: dict[str, None] = {}

    def walk(table: symtable.SymbolTable) -> None:
        for symbol in table.get_symbols():
            if not symbol.is_referenced():
                continue
            top = table.get_type() == "module"
            if (top and not symbol.is_assigned() and not symbol.is_imported()) or (
                not top and symbol.is_global()
            ):
                found.setdefault(symbol.get_name(), None)
        for child in table.get_children():
            walk(child)

    walk(symtable.symtable(source, "<cell>", "exec"))
    return list(found)


def definitions_in_cells(cells: list[str]) -> dict[str, tuple[int, str]]:
    """Top-level ``def`` and ``class`` statements of executed cells: name -> (order, source)."""
    found: dict[str, tuple[int, str]] = {}
    for index, source in enumerate(cells):
        try:
            tree = ast.parse(source)
        except SyntaxError:
            continue
        lines = source.splitlines()
        for node in tree.body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                first = min([node.lineno] + [d.lineno for d in node.decorator_list])
                segment = "\n".join(lines[first - 1 : node.end_lineno])
                found[node.name] = (index, segment)
    return found


def notebook_functions(ns: dict[str, Any]) -> list[str]:
    """Functions the notebook defines (candidates to serve), sorted."""
    return sorted(
        name
        for name, obj in ns.items()
        if not name.startswith("_")
        and inspect.isfunction(getattr(obj, ORIGINAL_ATTR, obj))
        and _defined_in_notebook(getattr(obj, ORIGINAL_ATTR, obj))
    )


def capture(
    ns: dict[str, Any],
    function: str,
    artifacts_dir: str,
    cells: list[str] | None = None,
    max_artifact_bytes: int = 2 * 1024**3,
) -> dict[str, Any]:
    """Capture ``function`` from ``ns``; writes artifacts into ``artifacts_dir``.

    Returns the JSON-ready description the host side turns into a ServingSpec.
    """
    cells = list(cells if cells is not None else ns.get("In", []))
    if function not in ns:
        raise Refusal(
            "function_not_found",
            f"The notebook defines no function named `{function}`.",
            candidates=notebook_functions(ns),
        )
    fn = getattr(ns[function], ORIGINAL_ATTR, ns[function])
    if not inspect.isfunction(fn):
        raise Refusal(
            "not_a_function",
            f"`{function}` is a {type(fn).__qualname__}, not a function defined with `def`; "
            "serve a function that takes the request's arguments.",
            candidates=notebook_functions(ns),
        )
    if inspect.isgeneratorfunction(fn) or inspect.isasyncgenfunction(fn):
        raise Refusal(
            "generator",
            f"`{function}` is a generator function (it uses `yield`); an HTTP endpoint needs one "
            "answer per request. Return a list instead of yielding values.",
        )
    definitions = definitions_in_cells(cells)
    if function not in definitions:
        definitions[function] = (len(cells), inspect.getsource(fn))
    closure = _Closure(ns, definitions)
    closure.seen.add(function)
    closure.definitions[function] = definitions[function]
    for name in global_names(definitions[function][1]):
        closure.visit(name, used_by=function)
    if closure.missing:
        name, user = next(iter(closure.missing.items()))
        raise Refusal(
            "undefined_name",
            f"`{user}` uses the name `{name}`, which no cell of the notebook defines (and it is "
            "not a builtin). Define or import it in a cell above, run the notebook top to bottom, "
            "and build again.",
            names=sorted(closure.missing),
        )
    artifacts = _write_artifacts(closure, Path(artifacts_dir), max_artifact_bytes)
    for artifact in artifacts:
        closure.modules.update(artifact.pop("modules"))
    closure.modules -= set(sys.stdlib_module_names) | {"__main__"}
    return {
        "function": function,
        "signature": str(inspect.signature(fn)),
        "parameters": _parameters(fn),
        "is_async": inspect.iscoroutinefunction(fn),
        "imports": sorted(set(closure.imports.values())),
        "constants": sorted(closure.constants.items()),
        "definitions": [src for _, src in sorted(closure.definitions.values())],
        "artifacts": artifacts,
        "modules": sorted(closure.modules),
        "environment": describe_interpreter(sorted(closure.modules)),
    }


def describe_interpreter(modules: list[str]) -> dict[str, Any]:
    """The kernel's interpreter, and which installed distributions provide ``modules``."""
    provided = metadata.packages_distributions()
    return {
        "python_version": platform.python_version(),
        "implementation": sys.implementation.name,
        "executable": sys.executable,
        "machine": platform.machine(),
        "module_distributions": {m: sorted(set(provided.get(m, []))) for m in modules},
    }


def _write_artifacts(closure: _Closure, folder: Path, max_bytes: int) -> list[dict[str, Any]]:
    folder.mkdir(parents=True, exist_ok=True)
    artifacts = []
    for name, obj in sorted(closure.objects.items()):
        kind = f"{type(obj).__module__}.{type(obj).__qualname__}"
        try:
            data, fmt = pickles.dump(obj)
        except Exception as exc:
            raise Refusal(
                "unserialisable",
                f"The function reads the global `{name}` (a {kind}), which cannot be saved into "
                f"the image ({exc}). Open connections, files, locks and generators cannot travel: "
                f"create `{name}` inside the function, or pass what it holds as an argument.",
                variable=name,
            ) from None
        if len(data) > max_bytes:
            raise Refusal(
                "artifact_too_large",
                f"The global `{name}` (a {kind}) serialises to {len(data):,} bytes, over the limit "
                f"of {max_bytes:,}. Shrink it, or raise the limit if the image may be this large.",
                variable=name,
                size_bytes=len(data),
            )
        (folder / f"{name}.pkl").write_bytes(data)
        artifacts.append(
            {"name": name, "file": f"{name}.pkl", "type": kind, "format": fmt,
             "size_bytes": len(data), "modules": sorted(pickles.modules_in_pickle(data))}
        )
    return artifacts


def _parameters(fn: Any) -> list[dict[str, Any]]:
    params = []
    for p in inspect.signature(fn).parameters.values():
        has_default = p.default is not inspect.Parameter.empty
        params.append(
            {
                "name": p.name,
                "kind": p.kind.name,
                "has_default": has_default,
                "default": repr(p.default) if has_default else None,
                "annotation": None if p.annotation is inspect.Parameter.empty else
                (p.annotation if isinstance(p.annotation, str) else
                 getattr(p.annotation, "__name__", repr(p.annotation))),
            }
        )
    return params


def _defined_in_notebook(obj: Any) -> bool:
    return getattr(obj, "__module__", None) == "__main__"


def _importable(obj: Any) -> bool:
    """A function or class that ``from module import qualname`` gives back as the same object."""
    if not (inspect.isclass(obj) or inspect.isroutine(obj)):
        return False
    module = sys.modules.get(getattr(obj, "__module__", None) or "")
    qualname = getattr(obj, "__qualname__", "")
    return module is not None and "." not in qualname and getattr(module, qualname, None) is obj


def _is_literal(obj: Any) -> bool:
    if isinstance(obj, (types.FunctionType, type)):
        return False
    text = repr(obj)
    if len(text) > _LITERAL_MAX_CHARS:
        return False
    try:
        return type(obj) in (int, float, str, bool, bytes, type(None), list, tuple, dict, set) and (
            ast.literal_eval(text) == obj
        )
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return False


def capture_to_file(ns: dict[str, Any], function: str, out_dir: str) -> None:
    """Entry point the host runs in the kernel: writes ``capture.json`` (or the refusal)."""
    out = Path(out_dir)
    recorder = ns.get("__nb2container_recorder__")
    try:
        result: dict[str, Any] = capture(ns, function, str(out / "artifacts"))
        result["calls"] = recorder.as_dicts() if recorder is not None else []
        result["calls_total"] = recorder.total if recorder is not None else 0
    except Refusal as refusal:
        result = {"refusal": {"kind": refusal.kind, "message": str(refusal), **refusal.details}}
    (out / "capture.json").write_text(json.dumps(result, indent=1, default=repr))
