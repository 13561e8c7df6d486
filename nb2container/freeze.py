"""Freeze the kernel's environment: the exact versions of the distributions the function needs.

The closure starts at the distributions that provide the modules the generated module
and its artifacts import, and follows their requirements through pipdeptree, asked
about the kernel's interpreter (``--python``), never the CLI's.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass

from packaging.utils import canonicalize_name

from nb2container.errors import FreezeError
from nb2container.model import KernelInterpreter


@dataclass(frozen=True)
class Closure:
    packages: dict[str, str]  # canonical distribution name -> exact installed version
    roots: tuple[str, ...]
    unmapped_modules: tuple[str, ...]


def installed_graph(python: str) -> dict[str, tuple[str, list[str]]]:
    """canonical name -> (installed version, canonical names it requires), from pipdeptree."""
    command = [sys.executable, "-m", "pipdeptree", "--python", python, "--json", "--warn", "silence"]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise FreezeError(
            f"pipdeptree could not read the packages of the kernel's interpreter {python}: "
            f"{done.stderr.strip()[-500:]}. Check that this interpreter still exists and runs."
        )
    graph: dict[str, tuple[str, list[str]]] = {}
    for entry in json.loads(done.stdout):
        package = entry["package"]
        graph[canonicalize_name(package["key"])] = (
            package["installed_version"],
            [canonicalize_name(dep["key"]) for dep in entry["dependencies"]],
        )
    return graph


def closure(interpreter: KernelInterpreter, modules: tuple[str, ...]) -> Closure:
    graph = installed_graph(interpreter.executable)
    roots: list[str] = []
    unmapped: list[str] = []
    for module in modules:
        dists = interpreter.module_distributions.get(module) or []
        if not dists:
            unmapped.append(module)
        roots.extend(canonicalize_name(d) for d in dists)
    packages: dict[str, str] = {}
    todo = sorted(set(roots))
    while todo:
        name = todo.pop()
        if name in packages or name not in graph:
            continue
        version, requires = graph[name]
        packages[name] = version
        todo.extend(requires)
    return Closure(dict(sorted(packages.items())), tuple(sorted(set(roots))), tuple(unmapped))
