"""Compare the container's JSON answer with what the notebook showed (pure logic).

The notebook stores text/plain; ``parse_display_text`` reads it back into a value without
evaluating code: numbers, strings, lists, dicts, numpy scalar and array reprs, and pandas
Series and DataFrame tables (into the JSON the codecs send: split Series, record rows).
Numbers that a table or an array printed rounded carry the precision they were shown
with, and are compared within it.

Standard library only: the golden tests exported into build folders import it as is.
"""

from __future__ import annotations

import ast
import math
import re
from collections.abc import Iterator
from typing import Any

_WRAPPERS = {"float", "int", "str", "bool", "array", "tuple", "list", "dict"}


class Unparseable(ValueError):
    """The stored text is not a value nb2container can read back."""


class Shown(float):
    """A number as a table or an array printed it: only as precise as its ``decimals``."""

    decimals: int
    scientific: bool  # 1.23e-05: numpy gives each such element its own exponent, so its own precision

    def __new__(cls, text: str) -> Shown:
        number = super().__new__(cls, text)
        mantissa = text.lower().split("e")[0]
        exponent = int(text.lower().split("e")[1]) if "e" in text.lower() else 0
        number.decimals = (len(mantissa.split(".")[1]) if "." in mantissa else 0) - exponent
        number.scientific = "e" in text.lower()
        return number

    def __reduce__(self) -> tuple[Any, ...]:  # copies (dataclasses.asdict) keep the precision
        return _shown_with, (repr(float(self)), self.decimals, self.scientific)


def _shown_with(text: str, decimals: int, scientific: bool = False) -> Shown:
    number = Shown(text)
    number.decimals, number.scientific = decimals, scientific
    return number


_SERIES_FOOTER = re.compile(r"^(?:Name: (?P<name>.*), )?(?:Length: \d+, )?dtype: (?P<dtype>\S+)$")
_NUMBER = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$")


def parse_display_text(text: str) -> Any:
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError:
        return _parse_table(text)
    try:
        return _value(tree.body, source=text.strip())
    except Unparseable:
        return _parse_table(text)


def _parse_table(text: str) -> Any:
    """A pandas Series or DataFrame as printed, into the JSON its codec sends."""
    lines = [line for line in text.rstrip().splitlines() if line.strip()]
    if not lines or any(line.strip() in ("...", "..") or " ... " in line for line in lines):
        raise Unparseable(text)  # truncated: the printed table does not hold every value
    footer = _SERIES_FOOTER.match(lines[-1].strip())
    if footer:
        index, data = [], []
        for line in lines[:-1]:
            parts = line.rsplit(None, 1)
            if len(parts) != 2:
                raise Unparseable(text)
            index.append(_cell(parts[0].strip()))
            data.append(_cell(parts[1]))
        name = footer.group("name")
        return {"index": index, "data": data, "name": _cell(name) if name is not None else None}
    return _parse_frame(lines, text)


def _parse_frame(lines: list[str], text: str) -> list[dict[str, Any]]:
    header = [(m.group(), m.start(), m.end()) for m in re.finditer(r"\S+", lines[0])]
    rows = lines[1:]
    if rows and len(rows[0].split()) == 1 and not _NUMBER.match(rows[0].split()[0]) and len(rows) > 1:
        rows = rows[1:]  # the index's name, on a line of its own
    if not header or not rows:
        raise Unparseable(text)
    index_width = max(len(row) - len(row.lstrip()) + len(row.split()[0]) for row in rows)
    # Tokens over the index (its columns' name) are not columns; values end where their header ends.
    columns = [(name, end) for name, start, end in header if start >= index_width]
    records = []
    for row in rows:
        record, start = {}, index_width
        for name, end in columns:
            cell = row[start:end].strip()
            if not cell:
                raise Unparseable(text)
            record[name] = _cell(cell)
            start = end
        if row[start:].strip():
            raise Unparseable(text)
        records.append(record)
    return records


def _cell(token: str) -> Any:
    if _NUMBER.match(token):
        return int(token) if re.fullmatch(r"[-+]?\d+", token) else Shown(token)
    if token in ("NaN", "nan", "<NA>", "NaT", "None"):
        return None if token in ("<NA>", "NaT", "None") else float("nan")
    return {"True": True, "False": False}.get(token, token)


def _value(node: ast.AST, rounded: bool = False, source: str = "") -> Any:
    """A literal's value; ``rounded``: inside a numpy array repr, which prints floats rounded
    (each then keeps the digits ``source`` shows it with: 1.00000004e-01 is precise to 1e-9)."""
    if isinstance(node, ast.Constant) and node.value is not Ellipsis:
        if rounded and type(node.value) is float:
            return Shown(ast.get_source_segment(source, node) or repr(node.value))
        return node.value
    if isinstance(node, (ast.List, ast.Tuple, ast.Set)):
        return [_value(element, rounded, source) for element in node.elts]
    if isinstance(node, ast.Dict):
        return {_value(k, source=source): _value(v, rounded, source)
                for k, v in zip(node.keys, node.values, strict=True) if k}
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        operand = _value(node.operand, rounded, source)
        if isinstance(operand, Shown) and isinstance(node.op, ast.USub):
            return _negated(operand)
        if isinstance(operand, (int, float)):
            return -operand if isinstance(node.op, ast.USub) else operand
    if isinstance(node, ast.Name) and node.id in ("nan", "inf"):
        return float(node.id)
    if isinstance(node, ast.Attribute) and node.attr in ("nan", "inf"):
        return float(node.attr)
    if isinstance(node, ast.Call) and node.args and _is_wrapper(node.func):
        is_array = (node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")) == "array"
        value = _value(node.args[0], rounded or is_array, source)  # np.float64(1.5), array([1, 2]), ...
        narrow = any(k.arg == "dtype" and "float64" not in ast.unparse(k.value) for k in node.keywords)
        fixed = [n for n in _shown_numbers(value) if not n.scientific]
        if is_array and fixed and not narrow:
            # In fixed notation numpy drops the zeros that end a float64 element printed with fewer
            # digits (1. beside 2.5): it is exact at the array's precision. Not so for float32 and
            # other narrow dtypes (each element its shortest form), nor in scientific notation.
            top = max(n.decimals for n in fixed)
            for number in fixed:
                number.decimals = top
        return value
    raise Unparseable(ast.unparse(node))


def _shown_numbers(value: Any) -> Iterator[Shown]:
    if isinstance(value, Shown):
        yield value
    elif isinstance(value, list):
        for item in value:
            yield from _shown_numbers(item)


def _negated(number: Shown) -> Shown:
    return _shown_with(repr(-float(number)), number.decimals, number.scientific)


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
        if isinstance(expected, Shown):  # printed rounded: equal within what was shown
            abs_tol = max(abs_tol, 0.5 * 10.0 ** -expected.decimals)
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
