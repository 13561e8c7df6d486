"""How each argument and result travels as JSON, and how it is restored on the other side.

Shared by the kernel (which records what the notebook passed and got back, and describes
it) and by the server in the image (which restores arguments before the call and encodes
the result). Standard library only at import; numpy and pandas are imported when a value
needs them (the image has them whenever the function used them: they are locked).

A codec is a small JSON dict, ``{"kind": ...}`` plus what the kind needs to restore a value:

    json       scalars, strings, lists, dicts, None: sent as they are
    ndarray    nested lists; ``dtype`` restored before the call
    tensor     nested lists; a ``framework`` (torch or tensorflow) tensor of ``dtype`` restored
               on the CPU
    dataframe  a list of row objects ("records"); ``columns`` and ``dtypes`` restored
    series     {"index": [...], "data": [...], "name": ...} (pandas "split"); ``dtype`` restored
    datetime   an ISO 8601 string
    union      the calls passed several of these (a Series in one, a list in another): each
               ``options`` entry is one, with the JSON ``forms`` it arrives in; the server restores
               the one whose form the request has, so the function gets a type a call gave it
    object     no JSON form: the parameter must be bound (supplied by the server)
"""

from __future__ import annotations

import datetime as _dt
import json
from typing import Any

# The package a codec needs in the image to restore or encode its values.
MODULES = {"ndarray": "numpy", "dataframe": "pandas", "series": "pandas"}
# The JSON form each kind travels in; a json value's depends on the value (json_form).
_FORMS = {"ndarray": "array", "tensor": "array", "dataframe": "records", "series": "split", "datetime": "string"}
_FORM_SCHEMAS: dict[str, dict[str, Any]] = {
    "array": {"type": "array"}, "records": {"type": "array", "items": {"type": "object"}},
    "split": {"type": "object", "required": ["data"]}, "object": {"type": "object"}, "string": {"type": "string"},
    "scalar": {"type": ["number", "integer", "boolean", "null"]}}
_FORM_NAMES = {"array": "a JSON array", "records": "a list of row objects", "split": 'an object with "data"',
               "object": "a JSON object", "string": "a string", "scalar": "a number, true/false or null"}


_KIND_NAMES = {"ndarray": "a numpy array", "tensor": "a tensor", "dataframe": "a pandas DataFrame",
               "series": "a pandas Series", "datetime": "a date or datetime"}
_PLAIN_NAMES = {"array": "a list", "records": "a list of dicts", "split": "a dict", "object": "a dict",
                "string": "a string", "scalar": "a number"}


class AmbiguousCodec(ValueError):
    """Calls passed types that travel in the same JSON form: the server could not tell them apart."""

    def __init__(self, kinds: list[str], form: str) -> None:
        super().__init__(f"both travel as {_FORM_NAMES[form]}")
        self.kinds, self.form = kinds, form

    def named(self, kind: str) -> str:
        """What a person calls a value of ``kind`` in this form: "a numpy array", "a list"."""
        return _KIND_NAMES.get(kind) or _PLAIN_NAMES[self.form]


def json_form(value: Any) -> str:
    """How a JSON value looks, as far as choosing a union's option goes."""
    if isinstance(value, list):
        return "records" if value and all(isinstance(item, dict) for item in value) else "array"
    if isinstance(value, dict):
        return "split" if "data" in value else "object"
    return "string" if isinstance(value, str) else "scalar"


def modules(codec: dict[str, Any]) -> set[str]:
    """The packages the image needs to restore or encode values of ``codec``."""
    if codec.get("kind") == "union":
        return set().union(*(modules(option) for option in codec["options"]))
    if codec.get("kind") == "tensor":
        return {codec["framework"]}
    return {MODULES[codec["kind"]]} if codec.get("kind") in MODULES else set()


def describe(value: Any) -> dict[str, Any]:
    """The codec that carries ``value`` (as the notebook passed or returned it)."""
    module = type(value).__module__.split(".")[0]
    name = type(value).__name__
    if module == "numpy" and name == "ndarray":
        return {"kind": "ndarray", "dtype": str(value.dtype), "ndim": int(value.ndim)}
    if module == "torch" and name in ("Tensor", "Parameter"):
        if value.device.type != "cpu":  # exists only where that device is: refused at capture
            return {"kind": "object", "type": "torch.Tensor", "device": str(value.device)}
        return {"kind": "tensor", "framework": "torch", "dtype": str(value.dtype).removeprefix("torch."),
                "ndim": int(value.dim())}
    if module == "tensorflow" and name in _TF_TENSORS:  # what eager TensorFlow and Keras on it return
        if "GPU" in value.device.upper():
            return {"kind": "object", "type": "tensorflow.Tensor", "device": value.device}
        return {"kind": "tensor", "framework": "tensorflow", "dtype": value.dtype.name, "ndim": value.shape.rank}
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


# tf.Tensor's concrete types: an eager tensor, and a variable (what a model's weights are).
_TF_TENSORS = ("EagerTensor", "ResourceVariable")


def merge(codecs: list[dict[str, Any]], values: list[Any] | None = None) -> dict[str, Any]:
    """One codec for a parameter: the narrowest that accepts what every recorded call passed
    (``values``: their JSON forms, where known, beside ``codecs``).

    Details the calls disagree on widen: dimensions become unknown, dtypes the one that holds
    them all, columns any. Kinds that disagree make a union, each kind an option restored from
    its own JSON form (AmbiguousCodec when two share one); with an object among them, the object."""
    kinds = sorted({codec["kind"] for codec in codecs})
    if not codecs:
        return {"kind": "json"}
    if "object" in kinds:
        return next(c for c in codecs if c["kind"] == "object")
    if len(kinds) > 1:
        return _union(codecs, values if values is not None else [None] * len(codecs))
    first = dict(codecs[0])

    def agreed(key: str) -> Any:
        values = [c.get(key) for c in codecs]
        return values[0] if all(v == values[0] for v in values) else None

    if first["kind"] in ("ndarray", "tensor"):
        first["ndim"] = agreed("ndim")
        held = [c.get("dtype") for c in codecs]
        first["dtype"] = agreed("dtype") or (_common_dtype(held) if first["kind"] == "ndarray"
                                             else _common_tensor_dtype(first["framework"], held))
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


def _union(codecs: list[dict[str, Any]], values: list[Any]) -> dict[str, Any]:
    options: list[dict[str, Any]] = []
    owner: dict[str, str] = {}  # JSON form -> the kind that travels in it
    for kind in sorted({codec["kind"] for codec in codecs}):
        alike = [(c, v) for c, v in zip(codecs, values, strict=True) if c["kind"] == kind]
        option = merge([c for c, _ in alike])
        forms = sorted({json_form(v) for _, v in alike}) if kind == "json" else [_FORMS[kind]]
        for form in forms:
            if form in owner:
                raise AmbiguousCodec([owner[form], kind], form)
            owner[form] = kind
        options.append({**option, "forms": forms})
    return {"kind": "union", "options": options}


def _common_tensor_dtype(framework: str, dtypes: list[str | None]) -> str | None:
    """As torch promotes (int64 and float32: float32, where numpy says float64): a model's float32
    weights must not meet float64 inputs. TensorFlow promotes nothing itself, so its tensors
    follow the same rule: the widest floating type recorded, else what holds every integer."""
    if None in dtypes:
        return None
    if framework == "tensorflow":
        import numpy as np

        try:
            floats = [np.dtype(d) for d in dtypes if np.dtype(d).kind == "f"]
            return str(max(floats, key=lambda d: d.itemsize) if floats else np.result_type(*dtypes))
        except TypeError:  # bfloat16, string: nothing that holds them all
            return None
    import functools

    import torch

    try:
        return str(functools.reduce(torch.promote_types, [getattr(torch, str(d)) for d in dtypes])).removeprefix(
            "torch.")
    except (AttributeError, TypeError):
        return None


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
    """A codec from a type hint (``tf.Tensor``, ``torch.Tensor``, ``pandas.core.frame.DataFrame``),
    for parameters no recorded call shows."""
    leaf = (annotation or "").rsplit(".", 1)[-1]
    framework = "tensorflow" if (annotation or "").startswith(("tf.", "tensorflow.")) else "torch"
    known: dict[str, dict[str, Any]] = {"ndarray": {"kind": "ndarray", "dtype": None, "ndim": None},
            "Tensor": {"kind": "tensor", "framework": framework, "dtype": None, "ndim": None},
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
    if module == "tensorflow" and name in _TF_TENSORS:
        return _numpy_json(value.numpy())
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
    if kind == "union":  # the type a recorded call passed in this JSON form
        form = json_form(value)
        option = next((o for o in codec["options"] if form in o["forms"]), None)
        if option is None:
            wanted = " or ".join(_FORM_NAMES[f] for o in codec["options"] for f in o["forms"])
            raise ValueError(f"expected {wanted} (what the notebook's calls passed), got {_FORM_NAMES[form]}")
        return decode(option, value)
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
    if kind == "tensor":
        try:
            tensor, ndim = _tensor(codec, value)
        except (TypeError, ValueError, RuntimeError, AttributeError) as exc:
            raise ValueError(f"expected an array (nested lists) of {codec.get('dtype') or 'numbers'}: {exc}") from None
        if codec.get("ndim") is not None and ndim != codec["ndim"]:
            raise ValueError(f"expected an array with {codec['ndim']} dimension(s), got {ndim}")
        return tensor
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


def _tensor(codec: dict[str, Any], value: Any) -> tuple[Any, int]:
    """A CPU tensor of the codec's framework and dtype from nested lists, and its dimensions."""
    if codec.get("framework") == "tensorflow":
        import tensorflow as tf

        with tf.device("/CPU:0"):  # as the notebook's calls were: a GPU image moves it in the function
            tensor = tf.constant(value, dtype=codec.get("dtype") or None)
        return tensor, tensor.shape.rank
    import torch

    tensor = torch.tensor(value, dtype=getattr(torch, codec["dtype"]) if codec.get("dtype") else None)
    return tensor, tensor.dim()


def json_schema(codec: dict[str, Any], example: Any = None) -> dict[str, Any]:
    """The JSON Schema of a value carried by ``codec`` (for /openapi.json)."""
    kind = codec.get("kind", "json")
    if kind in ("ndarray", "tensor") and codec.get("ndim") is None:  # arrays of several dimensions
        schema: dict[str, Any] = {"type": "array"}
    elif kind in ("ndarray", "tensor"):
        schema = {"type": "array", "items": {}}
        inner = schema
        for _ in range(max(int(codec.get("ndim") or 1), 1) - 1):
            inner["items"] = {"type": "array", "items": {}}
            inner = inner["items"]
        dtype = codec.get("dtype")  # a tensor's is torch's name: float32, int64, bool, bfloat16
        inner["items"] = _array_item_schema(dtype) if kind == "ndarray" else _dtype_schema(dtype)
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
    elif kind == "union":  # documented as each option; the server restores the one the JSON's form picks
        schema = {"anyOf": [json_schema(option) if option["kind"] != "json"
                            else {"anyOf": [_FORM_SCHEMAS[form] for form in option["forms"]]}
                            for option in codec["options"]]}
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
    if text.startswith(("float", "Float", "bfloat", "half", "double")):
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
