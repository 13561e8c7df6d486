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
import hashlib
import inspect
import json
import os
import platform
import symtable
import sys
import types
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from nb2container.kernel import ORIGINAL_ATTR, RECORDER_NAME, files, imports, interface, pickles
from nb2container.kernel.refusal import Refusal
from nb2container.kernel.request import CaptureRequest
from nb2container.runtime import codecs

_LITERAL_MAX_CHARS = 10_000


# What IPython itself puts in a kernel's namespace: code using these cannot run outside one.
IPYTHON_NAMES = frozenset({"get_ipython", "display", "In", "Out", "_ih", "_oh", "_dh", "exit", "quit"})
# Magics whose code runs as ordinary code in the notebook's namespace.
_CODE_MAGICS = frozenset({"time", "capture", "prun"})


@dataclass
class _Closure:
    ns: dict[str, Any]
    definitions_by_name: dict[str, tuple[tuple[int, int], str]]
    imports: dict[str, str] = field(default_factory=dict)
    constants: dict[str, str] = field(default_factory=dict)
    objects: dict[str, Any] = field(default_factory=dict)
    definitions: dict[str, tuple[tuple[int, int], str]] = field(default_factory=dict)
    modules: set[str] = field(default_factory=set)
    missing: dict[str, str] = field(default_factory=dict)
    seen: set[str] = field(default_factory=set)
    readers: dict[str, str] = field(default_factory=dict)  # global -> the definition that reads it
    cells: list[str] = field(default_factory=list)  # the executed cells: the import statements they wrote

    def visit(self, name: str, used_by: str) -> None:
        if name in self.seen:
            return
        self.seen.add(name)
        self.readers[name] = used_by
        if name in IPYTHON_NAMES and name not in self.definitions_by_name:
            raise Refusal(
                "ipython_syntax",
                f"`{used_by}` uses `{name}`, which exists only inside IPython: a `%magic` or "
                "`!shell` line in its body becomes a call to `get_ipython()`. Replace it with plain "
                "Python (subprocess.run for shell commands, print for display), then build again.",
                name=name, used_by=used_by,
            )
        if name not in self.ns:
            if not hasattr(builtins, name):
                self.missing[name] = used_by
            return
        obj = self.ns[name]
        obj = getattr(obj, ORIGINAL_ATTR, obj)
        builtin = getattr(builtins, name, None)
        if builtin is not None and getattr(obj, "__wrapped__", None) is builtin:
            return  # IPython's stand-in for a builtin (its `open`): the image has the real one
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
        if imports.private(real) and self._import_as_the_notebook_did(name, module):
            return
        self.imports[name] = f"import {real}" if real == name else f"import {real} as {name}"
        if "." in real and real.rsplit(".", 1)[1] == name:
            parent, leaf = real.rsplit(".", 1)
            self.imports[name] = f"from {parent} import {leaf}"
        self.modules.add(real.split(".", 1)[0])

    def _import_object(self, name: str, obj: Any) -> None:
        module, qualname = obj.__module__, obj.__qualname__
        if imports.private(module):
            if self._import_as_the_notebook_did(name, obj):
                return
            module = imports.public_module(obj, qualname) or module
        alias = "" if qualname == name else f" as {name}"
        self.imports[name] = f"from {module} import {qualname}{alias}"
        self.modules.add(module.split(".", 1)[0])

    def _import_as_the_notebook_did(self, name: str, obj: Any) -> bool:
        found = imports.notebook_import(name, obj, self.cells)
        if found:
            self.imports[name] = found[0]
            self.modules.add(found[1].split(".", 1)[0])
        return found is not None


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


def definitions_in_cells(cells: list[str]) -> dict[str, tuple[tuple[int, int], str]]:
    """Top-level ``def`` and ``class`` statements of executed cells: name -> (order, source).

    Cells are IPython's transformed input (``In``); the body of a code-running cell magic
    (``%%time``, ``%%capture``) is searched too. Order is (cell, line); the last definition wins.
    """
    found: dict[str, tuple[tuple[int, int], str]] = {}
    for index, source in enumerate(cells):
        for line, segment, name, _ in _definitions_in(source):
            found[name] = ((index, line), segment)
    return found


def functions_in_cells(cells: list[str]) -> dict[str, int]:
    """The functions the notebook defines (the candidates to serve): name -> 0-based index of the
    cell that defines it last, in definition order (a redefinition moves it last).

    The one definition of "the notebook's functions": the CLI reads it from the saved cells
    before running them, the kernel from the cells it ran (``In``)."""
    found: dict[str, int] = {}
    for index, source in enumerate(cells):
        for _, _, name, is_function in _definitions_in(source):
            found.pop(name, None)
            if is_function:
                found[name] = index
    return found


def _definitions_in(source: str) -> list[tuple[int, str, str, bool]]:
    """(first line, source, name, whether it is a function) of each top-level definition."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return []
    lines = source.splitlines()
    found = []
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            first = min([node.lineno] + [d.lineno for d in node.decorator_list])
            found.append((first, "\n".join(lines[first - 1 : node.end_lineno]), node.name,
                          not isinstance(node, ast.ClassDef)))
        body = cell_magic_body(node)
        if body is not None:
            found.extend((node.lineno, segment, name, is_function)
                         for _, segment, name, is_function in _definitions_in(body))
    return found


def cell_magic_body(node: ast.stmt) -> str | None:
    """The code a magic runs in the notebook's namespace, as Python, or None.

    ``%%time``/``%%capture`` cells become ``get_ipython().run_cell_magic('time', line, body)``
    and ``%time stmt`` becomes ``get_ipython().run_line_magic('time', 'stmt')``.
    """
    call = node.value if isinstance(node, ast.Expr) else None
    if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute)
            and call.func.attr in ("run_cell_magic", "run_line_magic")
            and all(isinstance(a, ast.Constant) for a in call.args)):
        return None
    values = [a.value for a in call.args]  # type: ignore[attr-defined]
    magic, body = values[0], values[-1]
    if magic not in _CODE_MAGICS or not isinstance(body, str) or len(values) < 2:
        return None
    try:
        from IPython.core.inputtransformer2 import TransformerManager
    except ImportError:
        return body
    return str(TransformerManager().transform_cell(body))


def definition_time_names(source: str) -> set[str]:
    """Names a definition evaluates when it runs: decorators, defaults, annotations, bases, class bodies."""
    names: set[str] = set()

    def loads(node: ast.AST | None) -> None:
        if node is not None:
            names.update(n.id for n in ast.walk(node) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load))

    def visit(node: ast.stmt) -> None:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            args = node.args
            every = args.posonlyargs + args.args + args.kwonlyargs + [a for a in (args.vararg, args.kwarg) if a]
            for part in [*node.decorator_list, *args.defaults, *args.kw_defaults, node.returns,
                         *(a.annotation for a in every)]:
                loads(part)
        elif isinstance(node, ast.ClassDef):
            for part in [*node.decorator_list, *node.bases, *(k.value for k in node.keywords)]:
                loads(part)
            for statement in node.body:
                visit(statement)
        else:
            loads(node)

    for statement in ast.parse(source).body:
        visit(statement)
    return names


def notebook_functions(ns: dict[str, Any], cells: list[str]) -> list[str]:
    """The notebook's functions (``functions_in_cells``) that the namespace holds, sorted."""
    return sorted(name for name in functions_in_cells(cells)
                  if name in ns and inspect.isfunction(getattr(ns[name], ORIGINAL_ATTR, ns[name])))


def capture(
    ns: dict[str, Any],
    function: str,
    artifacts_dir: str,
    cells: list[str] | None = None,
    max_artifact_bytes: int = 2 * 1024**3,
    observed_files: list[dict[str, Any]] | None = None,
    files_dir: str | None = None,
    calls: list[dict[str, Any]] | None = None,
    objects: dict[int, Any] | None = None,
    bind: list[str] | None = None,
    no_bind: bool = False,
) -> dict[str, Any]:
    """Capture ``function`` from ``ns``; writes artifacts into ``artifacts_dir``.

    ``observed_files`` are the files the recorded calls opened (``FileWatch``); they and the
    files the code names are copied under ``files_dir`` (default: beside the artifacts).
    ``calls`` (recorded, as dicts) decide the HTTP interface (``interface.infer``) and get
    their request bodies; ``objects`` holds the arguments they passed that have no JSON form.

    Returns the JSON-ready description the host side turns into a ServingSpec.
    """
    cells = list(cells if cells is not None else ns.get("In", []))
    if function not in ns:
        raise Refusal(
            "function_not_found",
            f"The notebook defines no function named `{function}`.",
            candidates=notebook_functions(ns, cells),
        )
    fn = getattr(ns[function], ORIGINAL_ATTR, ns[function])
    if not inspect.isfunction(fn):
        raise Refusal(
            "not_a_function",
            f"`{function}` is a {type(fn).__qualname__}, not a function defined with `def`; "
            "serve a function that takes the request's arguments.",
            candidates=notebook_functions(ns, cells),
        )
    if inspect.isgeneratorfunction(fn) or inspect.isasyncgenfunction(fn):
        raise Refusal(
            "generator",
            f"`{function}` is a generator function (it uses `yield`); an HTTP endpoint needs one "
            "answer per request. Return a list instead of yielding values.",
        )
    definitions = definitions_in_cells(cells)
    if function not in definitions:
        definitions[function] = ((len(cells), 0), inspect.getsource(fn))
    closure = _Closure(ns, definitions, cells=cells)
    closure.seen.add(function)
    closure.definitions[function] = definitions[function]
    for name in global_names(definitions[function][1]):
        closure.visit(name, used_by=function)
    _refuse_unsendable(function, calls or [])
    contract = interface.infer(fn, calls or [], objects or {}, ns, bind, no_bind)
    # The server restores arguments and encodes results with these, even when the function
    # itself never names them (a DataFrame argument whose methods it calls).
    closure.modules |= set().union(*(codecs.modules(c) for c in [*contract.params.values(), contract.result]))
    for global_name, obj in contract.bound_objects.items():
        if global_name in ns:
            closure.visit(global_name, used_by=function)
        else:  # passed as an expression, held by no global: ship it under a name of its own
            closure.objects[global_name] = obj
            closure.readers[global_name] = function
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
    sources = [src for _, src in sorted(closure.definitions.values())]
    data_files, warnings = files.collect(
        observed_files or [],
        files.named_files(sources, {n: ast.literal_eval(v) for n, v in closure.constants.items()}),
        Path(files_dir) if files_dir else Path(artifacts_dir).parent / "files",
        max_artifact_bytes,
    )
    for shipped in [*artifacts, *data_files]:  # pickled objects need their classes' packages
        closure.modules.update(shipped.pop("modules"))
    closure.modules -= set(sys.stdlib_module_names) | {"__main__"}
    evaluated = set().union(*(definition_time_names(src) for src in sources))
    for artifact in artifacts:
        artifact["at_definition"] = artifact["name"] in evaluated
    return {
        "function": function,
        "signature": str(inspect.signature(fn)),
        "parameters": _parameters(fn),
        "is_async": inspect.iscoroutinefunction(fn),
        "imports": sorted(set(closure.imports.values())),
        "constants": sorted(closure.constants.items()),
        "definitions": sources,
        "artifacts": artifacts,
        "files": data_files,
        "warnings": [*warnings, *contract.notes],
        "interface": contract.as_dict(),
        "globals_read": sorted(
            {*closure.imports, *closure.constants, *closure.objects, *closure.definitions} - {function}
        ),
        "modules": sorted(closure.modules),
        "environment": describe_interpreter(sorted(closure.modules)),
    }


def _refuse_unsendable(function: str, calls: list[dict[str, Any]]) -> None:
    """A value JSON cannot carry, passed to or returned by a recorded call: the image could not
    take it in a request or send it back, so say so now, naming it and the call's cell."""
    for call in calls:
        if call.get("no_json"):
            raise Refusal(
                "no_json_form",
                f"In the call {call['shown']} at In [{call['execution_count']}], {call['no_json']}. The image "
                "could neither receive it in a request nor send it back. Convert it inside "
                f"`{function}` (for example float() for extended precision, .real and .imag for complex "
                "numbers, .isoformat() or str() for dates and bytes), then build again.",
                cell=call["execution_count"],
            )


# importlib.metadata.packages_distributions() reads every installed distribution (0.2 s and
# more): kept for the environment it was read in, so a rebuild after an edit does not read it again.
_provided: tuple[str, Mapping[str, list[str]]] = ("", {})


def describe_interpreter(modules: list[str]) -> dict[str, Any]:
    """The kernel's interpreter, and which installed distributions provide ``modules``."""
    global _provided
    environment = environment_fingerprint()
    if _provided[0] != environment:
        _provided = (environment, metadata.packages_distributions())
    provided = _provided[1]
    return {
        "python_version": platform.python_version(),
        "implementation": sys.implementation.name,
        "executable": sys.executable,
        "machine": platform.machine(),
        "module_distributions": {m: sorted(set(provided.get(m, []))) for m in modules},
        "gpu_used": gpus_used(),
        "environment": environment,
    }


def environment_fingerprint() -> str:
    """What changes when a package is installed, upgraded or removed in this kernel's environment:
    the entries of each site-packages folder on sys.path and when each last changed (pip writes a
    new dist-info folder for every install). A rebuild with the same fingerprint reuses the freeze."""
    digest = hashlib.sha256()
    for folder in dict.fromkeys(sys.path):
        if not folder.endswith(("site-packages", "dist-packages")):
            continue  # the standard library does not change; the notebook's folder always does
        try:
            with os.scandir(folder) as listing:
                entries = sorted((entry.name, entry.stat(follow_symlinks=False).st_mtime_ns) for entry in listing)
        except OSError:  # gone, or not a folder
            continue
        digest.update(json.dumps([folder, entries]).encode())
    return digest.hexdigest()


def gpus_used() -> list[str]:
    """The frameworks through which this kernel ran something on a GPU (asked only of those it
    imported): a CPU image may then not leave their GPU runtime out."""
    used = []
    checks = {
        "torch": lambda m: m.cuda.is_initialized(),
        "tensorflow": lambda m: bool(m.config.list_logical_devices("GPU")),
        "jax": lambda m: any(device.platform == "gpu" for device in m.devices()),
        "cupy": lambda m: True,  # CuPy runs only on a GPU
    }
    for name, check in checks.items():
        module = sys.modules.get(name)
        try:
            if module is not None and check(module):
                used.append(name)
        except Exception:  # a framework in a state we cannot ask about: assume the GPU, keep its runtime
            used.append(name)
    return used


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
                f"`{closure.readers[name]}` reads the global `{name}` (a {kind}), which cannot be saved into "
                f"the image ({exc}). Open connections, files, locks and generators cannot travel: "
                f"create `{name}` inside the function, or pass what it holds as an argument.",
                variable=name, type=kind,
            ) from None
        if len(data) > max_bytes:
            raise Refusal(
                "artifact_too_large",
                f"The global `{name}` (a {kind}, read by `{closure.readers[name]}`) serialises to "
                f"{len(data):,} bytes, over the limit "
                f"of {max_bytes:,}. Shrink it, or raise the limit (--max-artifact-mb) if the image "
                "may be this large.",
                variable=name,
                size_bytes=len(data),
            )
        modules = pickles.modules_in_pickle(data)
        file, fmt, size = pickles.write(obj, data, fmt, folder, name)
        if fmt == "joblib":
            modules.add("joblib")
        artifacts.append({"name": name, "file": file, "type": kind, "format": fmt,
                          "size_bytes": size, "modules": sorted(modules)})
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


def capture_to_file(ns: dict[str, Any], request: CaptureRequest,
                    earlier_calls: list[dict[str, Any]] | None = None) -> None:
    """Entry point the host runs in the kernel: writes ``capture.json`` (or the refusal).

    The request's ``examples`` are request bodies (--example) called here, in the notebook's own
    state, so that the container's answers can be checked against the notebook's.
    ``earlier_calls`` are calls made before recording began (the magic reads them from the
    kernel's history).
    """
    function, out = request.function, Path(request.out_dir)
    recorder = ns.get(RECORDER_NAME)
    try:
        failed = [e for e in (recorder.errors if recorder is not None else []) if e.startswith(f"`{function}`")]
        if failed:
            raise Refusal(
                "recorder_error",
                f"nb2container could not record the call of {failed[0]}. This is a fault in nb2container, not in "
                "your notebook (its cells ran fine): please report it to nb2container's maintainers with "
                "this message.")
        calls = [*(earlier_calls or []), *(recorder.as_dicts(function) if recorder is not None else [])]
        if function in ns and recorder is not None:
            calls += [_example_call(recorder, function, body) for body in request.examples]
        result: dict[str, Any] = capture(
            ns, function, str(out / "artifacts"), max_artifact_bytes=request.max_artifact_bytes,
            observed_files=recorder.files.as_dicts() if recorder is not None else [],
            files_dir=str(out / "files"), calls=calls,
            objects=recorder.objects if recorder is not None else {}, bind=list(request.bind),
            no_bind=request.no_bind,
        )
        result["calls"] = calls
        result["calls_total"] = len(earlier_calls or []) + (recorder.totals.get(function, 0) if recorder else 0)
    except Refusal as refusal:
        result = {"refusal": {"kind": refusal.kind, "message": str(refusal), **refusal.details}}
    (out / "capture.json").write_text(json.dumps(result, indent=1, default=repr))


def _example_call(recorder: Any, function: str, body: Any) -> dict[str, Any]:
    try:
        return dict(recorder.call_example(function, body))
    except Exception as exc:
        raise Refusal(
            "bad_example",
            f"The example {json.dumps(body)} fails when `{function}` runs it in the notebook: "
            f"{type(exc).__name__}: {exc}. Give an example the function accepts.",
        ) from None
