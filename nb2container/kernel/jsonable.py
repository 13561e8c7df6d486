"""Turn notebook values into JSON values (numpy and pandas included) without importing them."""

from __future__ import annotations

import json
from typing import Any


def to_jsonable(value: Any) -> Any:
    """The JSON form of a value as the server will send it; raises TypeError when it has none."""
    return json.loads(json.dumps(value, default=_default, allow_nan=True))


def _default(obj: Any) -> Any:
    if hasattr(obj, "tolist") and callable(obj.tolist):  # numpy arrays and scalars, pandas Series
        return obj.tolist()
    if hasattr(obj, "to_dict") and callable(obj.to_dict):  # pandas DataFrame
        return obj.to_dict(orient="list")
    if hasattr(obj, "isoformat"):
        return obj.isoformat()
    if isinstance(obj, (set, frozenset)):
        return sorted(obj, key=repr)
    raise TypeError(f"a value of type {type(obj).__module__}.{type(obj).__qualname__} has no JSON form")
