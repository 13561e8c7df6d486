"""Codecs: how arguments and results travel as JSON and come back as the notebook's types (pure logic)."""

from __future__ import annotations

import datetime
import json

import pytest

from nb2container.compare import text_difference
from nb2container.runtime import codecs

np = pytest.importorskip("numpy", reason="the codecs carry numpy and pandas values (the notebooks' extra)")
pd = pytest.importorskip("pandas", reason="the codecs carry numpy and pandas values (the notebooks' extra)")


def round_trip(value: object) -> object:
    codec = codecs.describe(value)
    sent = json.loads(json.dumps(value, default=codecs.to_json))
    return codecs.decode(codec, sent)


def test_arrays_come_back_with_their_dtype_and_dimensions() -> None:
    value = np.arange(6, dtype="float32").reshape(2, 3)
    back = round_trip(value)
    assert isinstance(back, np.ndarray) and back.dtype == np.float32 and back.shape == (2, 3)
    with pytest.raises(ValueError, match="2 dimension"):
        codecs.decode(codecs.describe(value), [1.0, 2.0])
    with pytest.raises(ValueError, match="array"):
        codecs.decode(codecs.describe(value), [["a", "b"]])


def test_dataframes_travel_as_records_and_keep_columns_and_dtypes() -> None:
    frame = pd.DataFrame({"qty": [2, 1], "price": [9.99, 120.0],
                          "ordered": pd.to_datetime(["2024-05-01", "2024-03-15"])})
    sent = json.loads(json.dumps(frame, default=codecs.to_json))
    assert sent[0] == {"qty": 2, "price": 9.99, "ordered": "2024-05-01T00:00:00"}
    back = codecs.decode(codecs.describe(frame), sent)
    pd.testing.assert_frame_equal(back, frame, check_dtype=False)
    assert str(back["ordered"].dtype).startswith("datetime64") and back["qty"].dtype == np.int64
    with pytest.raises(ValueError, match="records"):
        codecs.decode(codecs.describe(frame), {"qty": [1]})


def test_series_and_dates() -> None:
    series = pd.Series([1.5, 2.5], index=["a", "b"], name="value")
    assert json.loads(json.dumps(series, default=codecs.to_json)) == {
        "index": ["a", "b"], "data": [1.5, 2.5], "name": "value"}
    pd.testing.assert_series_equal(round_trip(series), series)  # type: ignore[arg-type]
    day = datetime.date(2024, 5, 25)
    assert round_trip(day) == day and round_trip(datetime.datetime(2024, 5, 25, 8, 30)).hour == 8


def test_objects_without_json_form_are_marked_for_binding() -> None:
    class Model:
        pass

    assert codecs.describe(Model())["kind"] == "object"
    assert codecs.describe({"a": [1, 2.5, None]}) == {"kind": "json"}
    assert codecs.merge([{"kind": "json"}, {"kind": "object", "type": "M"}])["kind"] == "object"


def test_printed_output_is_compared_word_by_word_with_tolerance() -> None:
    assert text_difference("total = 6.750\nmean = 2.2500\n", "total = 6.7500000001\nmean = 2.25", 1e-6, 1e-9) is None
    assert "word 3" in str(text_difference("total = 6.750", "total = 6.9", 1e-6, 1e-9))
    assert "expected 'total'" in str(text_difference("total = 1", "sum = 1", 1e-6, 1e-9))
    assert "words" in str(text_difference("a b", "a b c", 1e-6, 1e-9))


def test_codecs_widen_when_the_calls_disagree() -> None:
    one, two = codecs.describe(np.array([1.0, 2.0])), codecs.describe(np.array([[1], [2]]))
    merged = codecs.merge([one, two])
    assert merged == {"kind": "ndarray", "ndim": None, "dtype": "float64"}
    assert codecs.decode(merged, [[1.0], [2.0]]).shape == (2, 1) and codecs.decode(merged, [1, 2]).dtype == np.float64
    assert codecs.json_schema(merged)["type"] == "array"
    frames = [codecs.describe(pd.DataFrame({"a": [1], "b": [2.0]})), codecs.describe(pd.DataFrame({"a": [3]}))]
    assert codecs.merge(frames) == {"kind": "dataframe", "columns": None, "dtypes": {"a": "int64"}}
    assert codecs.merge([codecs.describe(np.array([1])), codecs.describe(np.array([2]))])["dtype"] == "int64"


@pytest.mark.parametrize(("value", "sent"), [
    (np.array([1.0, 2.0], dtype=np.longdouble), [1.0, 2.0]),
    (np.longdouble(1.5), 1.5),
    (np.array(["2024-05-01T08:30"], dtype="datetime64[s]"), ["2024-05-01T08:30:00"]),
    (np.datetime64("2024-05-01", "D"), "2024-05-01"),
    (np.array([90], dtype="timedelta64[s]"), [90.0]),
    (np.array(["a", "b"]), ["a", "b"]),
    (np.array([1, "x", None], dtype=object), [1, "x", None]),
    ({"nested": [np.arange(2), {"deeper": np.float32(0.5)}]}, {"nested": [[0, 1], {"deeper": 0.5}]}),
    (pd.Series(["x", "y"], dtype="category"), {"index": [0, 1], "data": ["x", "y"], "name": None}),
])
def test_numpy_and_pandas_values_have_a_json_form(value: object, sent: object) -> None:
    assert json.loads(json.dumps(value, default=codecs.to_json)) == sent


@pytest.mark.parametrize("value", [np.array([1 + 2j]), np.complex128(1j), np.bytes_(b"ab"), np.array([b"ab"])])
def test_values_without_a_json_form_say_so_without_recursing(value: object) -> None:
    with pytest.raises(TypeError, match="has no JSON form"):
        json.dumps(value, default=codecs.to_json)


@pytest.mark.parametrize("value", [
    np.array(["2024-05-01T08:30", "2024-12-31T00:00"], dtype="datetime64[s]"),
    np.array([90, 3600], dtype="timedelta64[s]"),
    np.array([1.5, 2.5], dtype=np.longdouble),
    np.array(["low", "high"], dtype=object),
])
def test_numpy_arguments_round_trip_through_their_codec(value: np.ndarray) -> None:
    back = round_trip(value)
    assert isinstance(back, np.ndarray) and back.dtype == value.dtype
    assert back.tolist() == value.tolist()


def sent(value: object) -> object:
    return json.loads(json.dumps(value, default=codecs.to_json))


def test_a_series_in_one_call_and_a_list_in_another_each_come_back_as_passed() -> None:
    """total(pd.Series([1.0, 2.0, 4.0])) and total([1.0, 2.0]): the server restores a Series for
    the Series' JSON and a list for the list's, never a dict the notebook never passed."""
    calls = [pd.Series([1.0, 2.0, 4.0]), [1.0, 2.0]]
    merged = codecs.merge([codecs.describe(v) for v in calls], [sent(v) for v in calls])
    assert merged["kind"] == "union" and [o["kind"] for o in merged["options"]] == ["json", "series"]
    back = codecs.decode(merged, sent(calls[0]))
    assert isinstance(back, pd.Series) and back.sum() == 7.0
    assert codecs.decode(merged, [1.0, 2.0]) == [1.0, 2.0]
    with pytest.raises(ValueError, match='expected a JSON array or an object with "data"'):
        codecs.decode(merged, {"index": [0]})  # an object the notebook never passed
    assert codecs.modules(merged) == {"pandas"}
    schema = codecs.json_schema(merged)
    assert {"type": "array"} in schema["anyOf"][0]["anyOf"] and schema["anyOf"][1]["required"] == ["data"]


def test_a_frame_in_one_call_and_a_dict_in_another() -> None:
    frame, row = pd.DataFrame({"a": [1, 2]}), {"a": 3}
    merged = codecs.merge([codecs.describe(frame), codecs.describe(row)], [sent(frame), sent(row)])
    assert isinstance(codecs.decode(merged, [{"a": 5}]), pd.DataFrame) and codecs.decode(merged, {"a": 4}) == {"a": 4}


def test_types_that_travel_alike_cannot_be_told_apart() -> None:
    array, plain = np.array([1.0, 2.0]), [1.0, 2.0]
    with pytest.raises(codecs.AmbiguousCodec, match="both travel as a JSON array") as refused:
        codecs.merge([codecs.describe(array), codecs.describe(plain)], [sent(array), sent(plain)])
    assert [refused.value.named(kind) for kind in refused.value.kinds] == ["a list", "a numpy array"]
