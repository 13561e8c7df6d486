"""Import statements for what the function uses from packages, through their public paths.

An object's ``__module__`` is where it was defined, often a private module: Keras 3 defines
``pad_sequences`` in ``keras.src.utils.sequence_utils``, scikit-learn ``LinearRegression`` in
``sklearn.linear_model._base``. Importing from there ties the image to a package's internals
and, worse, to the wrong package: the notebook imported ``tensorflow.keras``, so the image
needs TensorFlow, not only Keras. So a private path is replaced by the import the notebook
itself wrote for that name, else by the shortest public module that holds the same object.
"""

from __future__ import annotations

import ast
import importlib
import sys
import types
from typing import Any


def private(module: str) -> bool:
    """``keras.src.utils``, ``sklearn.linear_model._base``: a path a package keeps for itself."""
    return any(part.startswith("_") or part == "src" for part in module.split(".")[1:])


def notebook_import(name: str, obj: Any, cells: list[str]) -> tuple[str, str] | None:
    """(statement, module) of the notebook's last import that binds ``name`` to ``obj`` now."""
    found = None
    for source in cells:
        try:
            tree = ast.parse(source)
        except SyntaxError:
            continue
        for node in ast.walk(tree):
            for statement, module, imported in _bindings(node, name):
                if _resolves(module, imported, obj):
                    found = statement, module
    return found


def _bindings(node: ast.AST, name: str) -> list[tuple[str, str, str | None]]:
    """(statement, module, attribute or None for the module itself) of ``node``'s imports of ``name``."""
    found: list[tuple[str, str, str | None]] = []
    if isinstance(node, ast.ImportFrom) and node.module and not node.level:
        for alias in node.names:
            if (alias.asname or alias.name) == name:
                statement = f"from {node.module} import {alias.name}" + (f" as {name}" if alias.asname else "")
                found.append((statement, node.module, alias.name))
    elif isinstance(node, ast.Import):
        for alias in node.names:
            if alias.asname == name:
                found.append((f"import {alias.name} as {name}", alias.name, None))
    return found


def _resolves(module: str, attribute: str | None, obj: Any) -> bool:
    try:
        loaded = importlib.import_module(module)  # imported by the notebook already: no new code runs
        return (loaded if attribute is None else getattr(loaded, attribute)) is obj
    except Exception:  # a statement that no longer works in this kernel is not the path
        return False


def public_module(obj: Any, qualname: str) -> str | None:
    """The shortest public module already imported that holds ``obj`` as ``qualname``."""
    candidates = []
    for module_name, module in list(sys.modules.items()):
        if not isinstance(module, types.ModuleType) or private(module_name) or module_name.startswith("_"):
            continue
        try:  # the module's own attributes only: a lazy module's __getattr__ would import more
            held = vars(module).get(qualname)
        except TypeError:
            continue
        if held is obj:
            candidates.append((module_name.count("."), len(module_name), module_name))
    return min(candidates)[2] if candidates else None
