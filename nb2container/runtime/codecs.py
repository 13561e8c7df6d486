"""How each argument and result travels as JSON, and how it is restored on the other side.

Shared by the kernel (which records what the notebook passed and got back, and describes
it) and by the server in the image (which restores arguments before the call and encodes
the result). Standard library only at import; numpy and pandas are imported when a value
needs them (the image has them whenever the function used them: they are locked).

A codec is a small JSON dict, ``{"kind": ...}`` plus what the kind needs to restore a value:

    json       scalars, strings, lists, dicts, None: sent as they are
    ndarray    nested lists; ``dtype`` restored before the call
    dataframe  a list of row objects ("records"); ``columns`` and ``dtypes`` restored
    series     {"index": [...], "data": [...], "name": ...} (pandas "split"); ``dtype`` restored
    datetime   an ISO 8601 string
    object     no JSON form: the parameter must be bound (supplied by the server)
"""

from __future__ import annotations

import datetime as _dt
import json
from typing import Any

# The package a codec needs in the image to restore or encode its values.
MODULES = {"ndarray": "numpy", "dataframe": "pandas", "series": "pandas"}


def describe(value: Any) -> dict[str, Any]:
    """The codec that carries ``value`` (as the notebook passed or returned it)."""
    module = type(value).__module__.split(".")[0]
    name = type(value).__name__
    if module == "numpy" and name == "ndarray":
        return {"kind": "ndarray", "dtype": str(value.dtype), "ndim": int(value.ndim)}
    if module == "pandas" and name == "DataFrame":
        return {"kind": "dataframe", "columns": [str(c) for c in value.columns],
                "dtypes": {str(c): str(t) for c, t in value.dtypes.items()}}
    if module == "pandas" and name == "Series":
        return {"kind": "series", "dtype": str(value.dtype), "name": _plain(value.name)}
    if isinstance(value, (_dt.datetime, _dt.date)):
        return {"kind": "datetime", "type": "date" if type(value) is _dt.date else "datetime"}
    try:
        json.dumps(value, default=to_json)
    except (TypeError, ValueError):
        return {"kind": "object", "type": f"{type(value).__module__}.{type(value).__qualname__}"}
    return {"kind": "json"}


def merge(codecs: list[dict[str, Any]]) -> dict[str, Any]:
    """One codec for a parameter: the narrowest that accepts what every recorded call passed.

    Details the calls disagree on widen: dimensions become unknown, dtypes the one that holds
    them all, columns any; kinds that disagree fall back to plain JSON (or to an object)."""
    kinds = {codec["kind"] for codec in codecs}
    if not codecs:
        return {"kind": "json"}
    if len(kinds) > 1:
        return next((c for c in codecs if c["kind"] == "object"), {"kind": "json"})
    first = dict(codecs[0])

    def agreed(key: str) -> Any:
        values = [c.get(key) for c in codecs]
        return values[0] if all(v == values[0] for v in values) else None

    if first["kind"] == "ndarray":
        first["ndim"] = agreed("ndim")
        first["dtype"] = agreed("dtype") or _common_dtype([c.get("dtype") for c in codecs])
    elif first["kind"] == "dataframe":
        first["columns"] = agreed("columns")
        dtypes = [c.get("dtypes") or {} for c in codecs]
        first["dtypes"] = {column: dtype for column, dtype in dtypes[0].items()
                           if all(d.get(column) == dtype for d in dtypes)} or None
    elif first["kind"] == "series":
        first["dtype"] = agreed("dtype") or _common_dtype([c.get("dtype") for c in codecs])
        first["name"] = agreed("name")
    elif first["kind"] == "datetime":
        first["type"] = agreed("type") or "datetime"
    return first


def _common_dtype(dtypes: list[str | None]) -> str | None:
    """The dtype that holds values of each of ``dtypes`` (int64 and float64: float64)."""
    if None in dtypes:
        return None
    import numpy as np

    try:
        return str(np.result_type(*dtypes))
    except TypeError:
        return None


def from_annotation(annotation: str | None) -> dict[str, Any] | None:
    """A codec from a type hint, for parameters no recorded call shows."""
    leaf = (annotation or "").rsplit(".", 1)[-1]
    known: dict[str, dict[str, Any]] = {"ndarray": {"kind": "ndarray", "dtype": None, "ndim": None},
            "DataFrame": {"kind": "dataframe", "columns": None, "dtypes": None},
            "Series": {"kind": "series", "dtype": None, "name": None},
            "datetime": {"kind": "datetime", "type": "datetime"},
            "date": {"kind": "datetime", "type": "date"}}
    return known.get(leaf)


def to_json(value: Any) -> Any:
    """``json.dumps(default=...)`` for values JSON has no form for (results and recorded arguments)."""
    module = type(value).__module__.split(".")[0]
    name = type(value).__name__
    if module == "pandas" and name == "DataFrame":  # full float precision, unlike DataFrame.to_json
        return value.to_dict(orient="records")
    if module == "pandas" and name == "Series":
        return {"index": value.index.tolist(), "data": value.tolist(), "name": _plain(value.name)}
    if module == "numpy" and hasattr(value, "dtype"):
        return _numpy_json(value)
    if hasattr(value, "tolist") and callable(value.tolist):
        plain = value.tolist()
        if type(plain) is type(value):
            raise TypeError(f"a value of type {type(value).__qualname__} has no JSON form")
        return plain
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if isinstance(value, (set, frozenset)):
        return sorted(value, key=repr)
    raise TypeError(f"a value of type {type(value).__qualname__} has no JSON form")


def _numpy_json(value: Any) -> Any:
    """A numpy array or scalar as JSON: what its dtype allows, or a TypeError that names it."""
    import numpy as np

    dtype = value.dtype
    if dtype.kind == "f" and dtype.itemsize > 8:  # extended precision: JSON numbers are doubles
        return value.astype(np.float64).tolist()
    if dtype.kind == "M":  # datetime64: ISO 8601, as dates and datetimes travel
        return np.datetime_as_string(value).tolist()
    if dtype.kind == "m":  # timedelta64: seconds
        return (value / np.timedelta64(1, "s")).tolist()
    if dtype.kind in "cSV":
        what = {"c": "complex numbers", "S": "byte strings", "V": "raw (void) records"}[dtype.kind]
        raise TypeError(f"numpy {dtype} ({what}) has no JSON form")
    plain = value.tolist()
    if type(plain) is type(value):  # a scalar type whose tolist() is itself
        raise TypeError(f"numpy {dtype} has no JSON form")
    return plain


def decode(codec: dict[str, Any], value: Any) -> Any:
    """Restore an argument the request sent as JSON; ValueError says what was wrong."""
    kind = codec.get("kind", "json")
    if kind == "ndarray":
        import numpy as np

        try:
            if str(codec.get("dtype")).startswith("timedelta64"):  # sent as seconds (to_json)
                nanoseconds = np.round(np.asarray(value, dtype=np.float64) * 1e9).astype(np.int64)
                array = nanoseconds.astype("timedelta64[ns]").astype(codec["dtype"])
            else:
                array = np.asarray(value, dtype=codec.get("dtype") or None)
        except (TypeError, ValueError, OverflowError) as exc:
            raise ValueError(f"expected an array (nested lists) of {codec.get('dtype') or 'numbers'}: {exc}") from None
        if codec.get("ndim") is not None and array.ndim != codec["ndim"]:
            raise ValueError(f"expected an array with {codec['ndim']} dimension(s), got {array.ndim}")
        return array
    if kind == "dataframe":
        import pandas as pd

        if not isinstance(value, list) or not all(isinstance(row, dict) for row in value):
            raise ValueError("expected a list of row objects (records), e.g. [{\"column\": 1}]")
        frame = pd.DataFrame.from_records(value, columns=codec.get("columns") or None)
        try:
            return frame.astype(codec["dtypes"]) if codec.get("dtypes") else frame
        except (TypeError, ValueError) as exc:
            raise ValueError(f"a column does not fit its type: {exc}") from None
    if kind == "series":
        import pandas as pd

        if isinstance(value, dict) and "data" in value:
            series = pd.Series(value["data"], index=value.get("index"), name=value.get("name"))
        elif isinstance(value, (list, dict)):
            series = pd.Series(value, name=codec.get("name"))
        else:
            raise ValueError("expected {\"index\": [...], \"data\": [...]} or a list of values")
        return series.astype(codec["dtype"]) if codec.get("dtype") else series
    if kind == "datetime":
        if not isinstance(value, str):
            raise ValueError("expected an ISO 8601 date or datetime string")
        parsed = _dt.datetime.fromisoformat(value)
        return parsed.date() if codec.get("type") == "date" else parsed
    return value


def json_schema(codec: dict[str, Any], example: Any = None) -> dict[str, Any]:
    """The JSON Schema of a value carried by ``codec`` (for /openapi.json)."""
    kind = codec.get("kind", "json")
    if kind == "ndarray" and codec.get("ndim") is None:  # the calls passed arrays of several dimensions
        schema: dict[str, Any] = {"type": "array"}
    elif kind == "ndarray":
        schema = {"type": "array", "items": {}}
        inner = schema
        for _ in range(max(int(codec.get("ndim") or 1), 1) - 1):
            inner["items"] = {"type": "array", "items": {}}
            inner = inner["items"]
        inner["items"] = _array_item_schema(codec.get("dtype"))
    elif kind == "dataframe":
        columns = codec.get("dtypes") or {}
        schema = {"type": "array", "items": {"type": "object", "properties": {
            column: _dtype_schema(dtype) for column, dtype in columns.items()}}}
    elif kind == "series":
        schema = {"type": "object", "required": ["data"], "properties": {
            "index": {"type": "array"}, "data": {"type": "array", "items": _dtype_schema(codec.get("dtype"))},
            "name": {}}}
    elif kind == "datetime":
        schema = {"type": "string", "format": "date" if codec.get("type") == "date" else "date-time"}
    else:
        schema = _example_schema(example)
    schema["x-nb2container-codec"] = codec
    return schema


def _array_item_schema(dtype: str | None) -> dict[str, Any]:
    """What one element of an array of ``dtype`` is in JSON (numpy is there: arrays need it)."""
    if dtype is None:
        return {}
    import numpy as np

    kind = np.dtype(dtype).kind
    return {"f": {"type": "number"}, "i": {"type": "integer"}, "u": {"type": "integer"}, "b": {"type": "boolean"},
            "U": {"type": "string"}, "M": {"type": "string"}, "m": {"type": "number"}}.get(kind, {})


def _dtype_schema(dtype: str | None) -> dict[str, Any]:
    text = str(dtype)
    if text.startswith(("int", "uint", "Int", "UInt")):
        return {"type": "integer"}
    if text.startswith(("float", "Float")):
        return {"type": "number"}
    if text.startswith("bool"):
        return {"type": "boolean"}
    if text.startswith("datetime"):
        return {"type": "string", "format": "date-time"}
    return {"type": "string"} if text in ("object", "str", "string") else {}


def _example_schema(example: Any) -> dict[str, Any]:
    if isinstance(example, bool):
        return {"type": "boolean"}
    if isinstance(example, int):
        return {"type": "integer"}
    if isinstance(example, float):
        return {"type": "number"}
    if isinstance(example, str):
        return {"type": "string"}
    if isinstance(example, list):
        return {"type": "array"}
    if isinstance(example, dict):
        return {"type": "object"}
    return {}


def _plain(value: Any) -> Any:
    return value if isinstance(value, (str, int, float, bool, type(None))) else str(value)
