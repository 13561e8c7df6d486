"""The served contract: what each argument of ``/predict`` may be. Derived once, at render time,
from every call the notebook made (and the type hints); ``/openapi.json`` documents it and the
server enforces it before the function runs, so the two cannot disagree.

A schema is a small subset of JSON Schema: ``type`` (one or several), ``items``, ``properties``,
``minimum``/``maximum``. Beyond what it says, numbers must be finite and integers fit 64 bits
unless a recorded call passed such a value (the ``x-nb2container-*`` flags), and a request may
nest at most ``MAX_DEPTH`` levels. Standard library only: it runs in the image beside the server.
"""

from __future__ import annotations

import json
import math
import sys
from typing import Any

MAX_DEPTH = 32
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
NON_FINITE = "x-nb2container-non-finite"  # a recorded call passed NaN or an infinity
BIG_INTEGERS = "x-nb2container-big-integers"  # a recorded call passed an integer beyond 64 bits
_HINTS = {"int": "integer", "float": "number", "str": "string", "bool": "boolean", "list": "array", "dict": "object"}


SCALAR_BODY_LIMIT = 64 * 1024  # a call of numbers, booleans and nulls: far more than it needs
BODY_LIMIT_FLOOR = 1024 * 1024  # strings, arrays, objects: at least this
BODY_LIMIT_ROOM = 16  # ... or this many times the largest body the notebook's calls made
_FIXED_SIZE = {"number", "integer", "boolean", "null"}


def body_limit(schema: dict[str, Any], recorded_sizes: list[int]) -> int:
    """The default largest body of ``/predict`` (NB2C_MAX_BODY_BYTES overrides it): a contract of
    numbers needs little; one with strings, arrays or frames gets room in proportion to the
    largest body the notebook's calls made, at least BODY_LIMIT_FLOOR."""
    def fixed(property_schema: dict[str, Any]) -> bool:
        types = property_schema.get("type")
        types = [types] if isinstance(types, str) else types or []
        return bool(types) and set(types) <= _FIXED_SIZE

    if not schema.get("additionalProperties") and all(map(fixed, schema.get("properties", {}).values())):
        return SCALAR_BODY_LIMIT
    return max(BODY_LIMIT_FLOOR, BODY_LIMIT_ROOM * max(recorded_sizes, default=0))


class ContractError(ValueError):
    """A value the contract does not accept; the message names where in the argument."""


def json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, (list, tuple)) else "object"


def _leaves(values: list[Any]) -> list[Any]:
    found, stack = [], list(values)
    while stack:
        value = stack.pop()
        if isinstance(value, (list, tuple)):
            stack.extend(value)
        elif isinstance(value, dict):
            stack.extend(value.values())
        else:
            found.append(value)
    return found


def flags(values: list[Any]) -> dict[str, bool]:
    """What the recorded values allow beyond the defaults: non-finite numbers, big integers."""
    leaves = _leaves(values)
    found = {}
    if any(isinstance(v, float) and not math.isfinite(v) for v in leaves):
        found[NON_FINITE] = True
    if any(isinstance(v, int) and not isinstance(v, bool) and not INT64_MIN <= v <= INT64_MAX for v in leaves):
        found[BIG_INTEGERS] = True
    return found


def of_values(values: list[Any]) -> dict[str, Any]:
    """The narrowest schema that accepts every value the notebook passed."""
    types = {json_type(v) for v in values}
    if {"integer", "number"} <= types:
        types.discard("integer")  # JSON Schema's number includes the integers
    ordered = sorted(types)
    schema: dict[str, Any] = {"type": ordered[0] if len(ordered) == 1 else ordered}
    if "array" in types:
        items = [item for v in values if isinstance(v, list) for item in v]
        if items:
            schema["items"] = of_values(items)
    if "object" in types:
        objects = [v for v in values if isinstance(v, dict)]
        keys = sorted({key for obj in objects for key in obj})
        schema["properties"] = {key: of_values([obj[key] for obj in objects if key in obj]) for key in keys}
    return with_bounds(schema)


def with_bounds(schema: dict[str, Any]) -> dict[str, Any]:
    """Integers within 64 bits and numbers within a double's range, stated where the schema says so."""
    types = schema.get("type")
    types = [types] if isinstance(types, str) else (types or [])
    if "number" in types:
        schema["minimum"], schema["maximum"] = -sys.float_info.max, sys.float_info.max
    elif "integer" in types:
        schema["minimum"], schema["maximum"] = INT64_MIN, INT64_MAX
    return schema


def from_hint(annotation: str | None) -> str | None:
    """The JSON type a parameter's type hint asks for, when it names a plain JSON type."""
    return _HINTS.get(annotation or "")


def depth(value: Any) -> int:
    """How deep ``value`` nests (a scalar is 0), without recursion."""
    deepest, stack = 0, [(value, 0)]
    while stack:
        value, level = stack.pop()
        deepest = max(deepest, level)
        if isinstance(value, list):
            stack.extend((item, level + 1) for item in value)
        elif isinstance(value, dict):
            stack.extend((item, level + 1) for item in value.values())
    return deepest


def check(schema: dict[str, Any], value: Any, name: str) -> Any:
    """``value`` as the function gets it, or ContractError naming ``name`` (and the place inside
    it). As in JSON Schema, 3.0 is an integer: it reaches the function as 3."""
    return _check(schema, value, f"`{name}`", bool(schema.get(NON_FINITE)), bool(schema.get(BIG_INTEGERS)))


def _check(schema: dict[str, Any], value: Any, where: str, non_finite: bool, big: bool) -> Any:
    wanted = schema.get("type")
    wanted = [wanted] if isinstance(wanted, str) else wanted
    kind = json_type(value)
    if (wanted and kind == "number" and "integer" in wanted and "number" not in wanted
            and math.isfinite(value) and value.is_integer()):
        value, kind = int(value), "integer"
    if wanted and kind not in wanted and not (kind == "integer" and "number" in wanted):
        raise ContractError(f"{where} must be {' or '.join(_a(t) for t in wanted)} (what the notebook's calls "
                            f"and type hints say; see /openapi.json); got {_a(kind)}: {_short(value)}")
    if isinstance(value, float) and not math.isfinite(value) and not non_finite:
        raise ContractError(f"{where} must be a finite number; got {value} (no call in the notebook passed one)")
    if isinstance(value, int) and not isinstance(value, bool):
        if not big and not INT64_MIN <= value <= INT64_MAX:
            raise ContractError(f"{where} is an integer of {len(str(abs(value)))} digits, beyond 64 bits")
        low, high = schema.get("minimum"), schema.get("maximum")
        if (low is not None and value < low) or (high is not None and value > high):
            raise ContractError(f"{where} is out of range ({_short(value)})")
    if isinstance(value, (list, tuple)):
        items = schema.get("items", {})
        return [_check(items, item, f"{where}[{index}]", non_finite, big) for index, item in enumerate(value)]
    if isinstance(value, dict):
        properties = schema.get("properties", {})
        return {key: _check(properties.get(key, {}), item, f"{where}.{key}", non_finite, big)
                for key, item in value.items()}
    return value


def _a(kind: str) -> str:
    return {"integer": "an integer", "array": "an array", "object": "an object", "null": "null"}.get(kind, f"a {kind}")


def _short(value: Any) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 60 else text[:59] + "…"
