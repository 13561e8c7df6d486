"""The codebase's own shape (pure logic): no import circle in the package, and the image's fixed
layout (user, paths, grace period) written in one place, runtime/layout.py."""

from __future__ import annotations

import ast
from pathlib import Path

from nb2container.runtime.layout import IMAGE

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "nb2container"


def module_name(path: Path) -> str:
    name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
    return name.removesuffix(".__init__")


def test_the_package_has_no_import_circle() -> None:
    modules = {module_name(path): path for path in PACKAGE.rglob("*.py")}
    imports: dict[str, set[str]] = {}
    for name, path in modules.items():
        found = set()
        for node in ast.parse(path.read_text()).body:  # what runs at import; lazy imports in functions do not
            if isinstance(node, ast.ImportFrom) and node.module in modules:
                found |= {node.module} | {f"{node.module}.{a.name}" for a in node.names} & set(modules)
            elif isinstance(node, ast.Import):
                found |= {a.name for a in node.names} & set(modules)
        imports[name] = found - {name, "nb2container"}

    def circle_from(start: str) -> list[str] | None:
        stack, seen = [(start, [start])], set()
        while stack:
            name, path = stack.pop()
            for imported in imports.get(name, ()):
                if imported == start:
                    return [*path, start]
                if imported not in seen:
                    seen.add(imported)
                    stack.append((imported, [*path, imported]))
        return None

    circles = [circle for name in imports if (circle := circle_from(name))]
    assert circles == []


def literals(path: Path) -> list[str]:
    """The string constants of a module, its docstrings left out."""
    tree = ast.parse(path.read_text())
    documented = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, (ast.Module, ast.FunctionDef, ast.ClassDef, ast.AsyncFunctionDef))
                  and node.body and isinstance(node.body[0], ast.Expr)
                  and isinstance(node.body[0].value, ast.Constant)}
    return [node.value for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in documented]


def test_the_image_layout_is_written_once() -> None:
    facts = [str(IMAGE.uid), IMAGE.venv, IMAGE.server_libs, IMAGE.workdir, f"{IMAGE.app}/"]
    found = []
    for path in PACKAGE.rglob("*.py"):
        if path.name == "layout.py":
            continue
        found += [(path.name, fact) for text in literals(path) for fact in facts if fact in text]
    for path in (ROOT / "templates").rglob("*.j2"):
        code = [line for line in path.read_text().splitlines() if not line.lstrip().startswith("#")]
        if path.name.endswith(".md.j2"):
            continue  # prose for people, which names the paths through `layout` anyway
        found += [(path.name, fact) for line in code for fact in facts if fact in line]
    assert found == []
