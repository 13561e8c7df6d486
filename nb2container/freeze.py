"""Freeze the kernel's environment: the exact versions of the distributions the function needs.

The closure starts at the distributions that provide the modules the generated module
and its artifacts import, and follows their requirements through pipdeptree, asked
about the kernel's interpreter (``--python``), never the CLI's.

Extras are followed when they are in use: an extra of a distribution in the closure joins
it when every requirement of that extra is installed in the kernel and importing the
distribution (in the kernel's interpreter) imports one of them; then the requirements it
imported join (a ``test`` extra of setuptools and pytest, with setuptools imported, brings
setuptools, not pytest). lightgbm's ``scikit-learn`` extra is in use when lightgbm imports
sklearn; joblib's ``test`` extra never is.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass, field, replace
from typing import Any

from packaging.utils import canonicalize_name

from nb2container.errors import FreezeError
from nb2container.model import KernelInterpreter


@dataclass(frozen=True)
class Closure:
    packages: dict[str, str]  # canonical distribution name -> exact installed version
    roots: tuple[str, ...]
    unmapped_modules: tuple[str, ...]
    direct_urls: dict[str, dict[str, Any]] = field(default_factory=dict)  # PEP 610: not from an index
    requires: dict[str, tuple[str, ...]] = field(default_factory=dict)  # package -> what it requires


_DIRECT_URLS = r"""
import json, sys
from importlib import metadata
found = {}
for name in json.loads(sys.argv[1]):
    try:
        text = metadata.distribution(name).read_text("direct_url.json")
    except metadata.PackageNotFoundError:
        continue
    if text:
        found[name] = json.loads(text)
print(json.dumps(found))
"""


_PROVIDERS = r"""
import json, sys
from importlib import metadata
provided = metadata.packages_distributions()
print(json.dumps({module: provided.get(module, []) for module in json.loads(sys.argv[1])}))
"""


def importing_closure(interpreter: KernelInterpreter, modules: tuple[str, ...]) -> Closure:
    """The closure of modules the kernel has not been asked about yet (the notebook's other
    cells' imports, for --verify-notebook): their distributions read in the kernel's interpreter."""
    done = subprocess.run([interpreter.executable, "-c", _PROVIDERS, json.dumps(list(modules))],
                          capture_output=True, text=True, check=False, timeout=120)
    lines = done.stdout.strip().splitlines()
    provided = json.loads(lines[-1]) if done.returncode == 0 and lines else {}
    return closure(replace(interpreter, module_distributions=provided), modules)


def direct_urls(python: str, distributions: list[str]) -> dict[str, dict[str, Any]]:
    """PEP 610 records of the distributions installed from a folder, an archive or VCS."""
    done = subprocess.run([python, "-c", _DIRECT_URLS, json.dumps(distributions)],
                          capture_output=True, text=True, check=False, timeout=120)
    lines = done.stdout.strip().splitlines()
    found = json.loads(lines[-1]) if done.returncode == 0 and lines else {}
    return {canonicalize_name(name): record for name, record in found.items()}


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


_EXTRAS_IN_USE = r"""
import importlib, json, re, sys
from importlib import metadata

def key(name):
    return re.sub(r"[-_.]+", "-", name).lower()

installed = {key(d.metadata["Name"]) for d in metadata.distributions()}
tops = {}
for module, dists in metadata.packages_distributions().items():
    for dist in dists:
        tops.setdefault(key(dist), []).append(module)
used = {}
for dist in json.loads(sys.argv[1]):
    extras = {}
    for requirement in metadata.requires(dist) or []:
        marker = re.search(r'extra\s*==\s*"([^"]+)"', requirement)
        if marker:
            extras.setdefault(marker.group(1), []).append(key(re.match(r"[A-Za-z0-9._-]+", requirement).group()))
    candidates = {name: reqs for name, reqs in extras.items() if all(r in installed for r in reqs)}
    if not candidates:
        continue
    for module in tops.get(key(dist), []):
        try:
            importlib.import_module(module)
        except Exception:  # a package that fails to import here uses none of its extras: judged below
            pass
    for reqs in candidates.values():  # only what importing brought: setuptools imported is not pytest
        imported = [r for r in reqs if any(top in sys.modules for top in tops.get(r, []))]
        if imported:
            used.setdefault(dist, []).extend(imported)
print(json.dumps(used))
"""


def extras_in_use(python: str, distributions: list[str]) -> dict[str, list[str]]:
    """Per distribution, the requirements of its extras that are in use (see the module's doc)."""
    done = subprocess.run([python, "-c", _EXTRAS_IN_USE, json.dumps(distributions)],
                          capture_output=True, text=True, check=False, timeout=300)
    if done.returncode != 0:
        return {}  # an interpreter that cannot even run this: the plain closure stands
    lines = done.stdout.strip().splitlines()
    return json.loads(lines[-1]) if lines else {}


def closure(interpreter: KernelInterpreter, modules: tuple[str, ...]) -> Closure:
    graph = installed_graph(interpreter.executable)
    roots: list[str] = []
    unmapped: list[str] = []
    for module in modules:
        dists = interpreter.module_distributions.get(module) or []
        if not dists:
            unmapped.append(module)
        roots.extend(canonicalize_name(d) for d in dists)
    packages = _close(graph, roots)
    asked: set[str] = set()
    while set(packages) - asked:  # extras in use bring distributions whose extras may be in use
        new = sorted(set(packages) - asked)
        asked.update(new)
        extra = [canonicalize_name(r) for reqs in extras_in_use(interpreter.executable, new).values()
                 for r in reqs]
        packages = _close(graph, [*packages, *extra])
    return Closure(dict(sorted(packages.items())), tuple(sorted(set(roots))), tuple(unmapped),
                   direct_urls(interpreter.executable, sorted(packages)),
                   {name: tuple(sorted(set(graph[name][1]) & set(packages))) for name in sorted(packages)})


def _close(graph: dict[str, tuple[str, list[str]]], start: list[str]) -> dict[str, str]:
    packages: dict[str, str] = {}
    todo = sorted(set(start))
    while todo:
        name = todo.pop()
        if name in packages or name not in graph:
            continue
        version, requires = graph[name]
        packages[name] = version
        todo.extend(requires)
    return packages
