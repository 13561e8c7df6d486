"""Compare the container's JSON answer with what the notebook showed (pure logic).

The notebook stores text/plain; ``parse_display_text`` reads it back into a value
(numbers, strings, lists, dicts, numpy scalar and array reprs) without evaluating code.
"""

from __future__ import annotations

import ast
import math
from typing import Any

_WRAPPERS = {"float", "int", "str", "bool", "array", "tuple", "list", "dict"}


class Unparseable(ValueError):
    """The stored text is not a value nb2container can read back."""


def parse_display_text(text: str) -> Any:
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError:
        raise Unparseable(text) from None
    return _value(tree.body)


def _value(node: ast.AST) -> Any:
    if isinstance(node, ast.Constant) and node.value is not Ellipsis:
        return node.value
    if isinstance(node, (ast.List, ast.Tuple, ast.Set)):
        return [_value(element) for element in node.elts]
    if isinstance(node, ast.Dict):
        return {_value(k): _value(v) for k, v in zip(node.keys, node.values, strict=True) if k}
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        operand = _value(node.operand)
        if isinstance(operand, (int, float)):
            return -operand if isinstance(node.op, ast.USub) else operand
    if isinstance(node, ast.Name) and node.id in ("nan", "inf"):
        return float(node.id)
    if isinstance(node, ast.Attribute) and node.attr in ("nan", "inf"):
        return float(node.attr)
    if isinstance(node, ast.Call) and node.args and _is_wrapper(node.func):
        return _value(node.args[0])  # np.float64(1.5), array([1, 2]), ...
    raise Unparseable(ast.unparse(node))


def _is_wrapper(func: ast.AST) -> bool:
    name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
    return name in _WRAPPERS or name.startswith(("float", "int", "uint", "complex", "bool", "str"))


def difference(expected: Any, actual: Any, rel_tol: float, abs_tol: float, path: str = "") -> str | None:
    """None when ``actual`` matches ``expected``; else where and how they first differ."""
    where = path or "the result"
    if isinstance(expected, bool) or isinstance(actual, bool):
        return None if expected is actual else f"{where}: expected {expected!r}, got {actual!r}"
    if isinstance(expected, (int, float)) and isinstance(actual, (int, float)):
        if math.isnan(expected) and math.isnan(actual):
            return None
        if math.isclose(expected, actual, rel_tol=rel_tol, abs_tol=abs_tol):
            return None
        return f"{where}: expected {expected!r}, got {actual!r} (beyond rel_tol={rel_tol}, abs_tol={abs_tol})"
    if isinstance(expected, (list, tuple)) and isinstance(actual, (list, tuple)):
        if len(expected) != len(actual):
            return f"{where}: expected {len(expected)} items, got {len(actual)}"
        for i, (e, a) in enumerate(zip(expected, actual, strict=True)):
            found = difference(e, a, rel_tol, abs_tol, f"{path}[{i}]")
            if found:
                return found
        return None
    if isinstance(expected, dict) and isinstance(actual, dict):
        keys_e, keys_a = {str(k): v for k, v in expected.items()}, actual
        if set(keys_e) != set(keys_a):
            return f"{where}: expected keys {sorted(keys_e)}, got {sorted(keys_a)}"
        for key in sorted(keys_e):
            found = difference(keys_e[key], keys_a[key], rel_tol, abs_tol, f"{path}[{key!r}]")
            if found:
                return found
        return None
    if expected == actual and type(expected) is type(actual):
        return None
    return f"{where}: expected {expected!r}, got {actual!r}"


def text_difference(expected: str, actual: str, rel_tol: float, abs_tol: float) -> str | None:
    """Printed output compared word by word: numbers within tolerance, everything else exactly."""
    want, got = expected.split(), actual.split()
    for index, (a, b) in enumerate(zip(want, got, strict=False)):
        if a == b:
            continue
        try:
            x, y = float(a.rstrip(",;:")), float(b.rstrip(",;:"))
        except ValueError:
            return f"word {index + 1}: expected {a!r}, printed {b!r}"
        if not math.isclose(x, y, rel_tol=rel_tol, abs_tol=abs_tol):
            return f"word {index + 1}: expected {a}, printed {b}"
    if len(want) != len(got):
        return f"expected {len(want)} words, printed {len(got)}: {actual.strip()[:200]!r}"
    return None
