from __future__ import annotations

import math

import pytest

from nb2container.compare import Unparseable, difference, parse_display_text


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("245500.0", 245500.0),
        ("np.float64(0.11)", 0.11),
        ("np.int64(-3)", -3),
        ("array([1., 2., 3.])", [1.0, 2.0, 3.0]),
        ("array([[1, 2], [3, 4]])", [[1, 2], [3, 4]]),
        ("{'a': 1, 'b': [1, 2]}", {"a": 1, "b": [1, 2]}),
        ("(1, 'x')", [1, "x"]),
        ("'hello'", "hello"),
        ("True", True),
        ("None", None),
        ("array([1.5, nan])", [1.5, math.nan]),
    ],
)
def test_parse_display_text(text: str, value: object) -> None:
    assert difference(value, parse_display_text(text), 1e-9, 0) is None


@pytest.mark.parametrize("text", ["RandomForestRegressor(n_estimators=10)", "<object at 0x7f>",
                                  "array([1, 2, ..., 9])"])
def test_unparseable_text_is_refused(text: str) -> None:
    with pytest.raises(Unparseable):
        parse_display_text(text)


def test_floats_within_tolerance_match() -> None:
    assert difference(1.0, 1.0 + 1e-9, rel_tol=1e-6, abs_tol=0) is None


def test_float_beyond_tolerance_is_reported() -> None:
    found = difference(245500.0, 245600.0, rel_tol=1e-6, abs_tol=0)
    assert found is not None and "245500.0" in found and "245600.0" in found


def test_nested_difference_names_the_path() -> None:
    found = difference({"a": [1, 2, 3]}, {"a": [1, 2, 4]}, 1e-9, 0)
    assert found is not None and found.startswith("['a'][2]")


def test_changed_dict_key_and_string_and_bool() -> None:
    assert difference({"a": 1}, {"b": 1}, 1e-9, 0) is not None
    assert difference("yes", "no", 1e-9, 0) is not None
    assert difference(True, 1, 1e-9, 0) is not None
    assert difference([1, 2], [1, 2, 3], 1e-9, 0) is not None


# Each kind of value: equal passes, a changed one fails, saying where.
def _frame_and_json() -> tuple[str, object]:
    import json

    pd = pytest.importorskip("pandas", reason="a DataFrame's display (the notebooks' extra)")

    from nb2container.runtime.codecs import to_json

    frame = pd.DataFrame({"region": ["north", "south"], "revenue": [120.123456789, 95.5], "n": [1, 2]})
    return repr(frame), json.loads(json.dumps(frame, default=to_json))


def test_float_within_and_beyond_tolerance() -> None:
    assert difference(parse_display_text("np.float64(0.1100000001)"), 0.11, 1e-6, 1e-9) is None
    assert "expected 0.11" in str(difference(parse_display_text("0.11"), 0.1102, 1e-6, 1e-9))


def test_dict_with_a_changed_key() -> None:
    stored = parse_display_text("{'label': 'positive', 'score': 0.6052}")
    assert difference(stored, {"label": "positive", "score": 0.6052}, 1e-6, 1e-9) is None
    assert "keys" in str(difference(stored, {"label": "positive", "p": 0.6052}, 1e-6, 1e-9))


def test_array_with_a_changed_element() -> None:
    stored = parse_display_text("array([[ 0.1       , -1.25      ],\n       [ 3.33333333,  4.        ]])")
    assert difference(stored, [[0.1, -1.25], [10 / 3, 4.0]], 1e-9, 0.0) is None  # printed rounded
    assert "[1][0]" in str(difference(stored, [[0.1, -1.25], [3.34, 4.0]], 1e-9, 0.0))


def test_dataframe_with_a_changed_cell() -> None:
    text, sent = _frame_and_json()
    stored = parse_display_text(text)
    assert difference(stored, sent, 1e-9, 0.0) is None  # 120.123457 as printed vs 120.123456789
    sent[1]["revenue"] = 96.5  # type: ignore[index]
    assert "[1]['revenue']" in str(difference(stored, sent, 1e-9, 0.0))


def test_series_with_a_changed_value() -> None:
    stored = parse_display_text("0    17.98\n1     0.00\n2    15.75\nName: value, dtype: float64")
    assert stored == {"index": [0, 1, 2], "data": [17.98, 0.0, 15.75], "name": "value"}
    assert difference(stored, {"index": [0, 1, 2], "data": [17.98, 0.0, 15.75], "name": "value"}, 1e-9, 0) is None
    assert "['data'][2]" in str(difference(stored, {"index": [0, 1, 2], "data": [17.98, 0.0, 15.0],
                                                     "name": "value"}, 1e-9, 0))


def test_changed_string_and_truncated_tables() -> None:
    assert difference(parse_display_text("'positive'"), "positive", 1e-6, 1e-9) is None
    assert "expected 'positive'" in str(difference(parse_display_text("'positive'"), "negative", 1e-6, 1e-9))
    with pytest.raises(Unparseable):
        parse_display_text("0    1.0\n1    2.0\n    ... \n99   3.0\nLength: 100, dtype: float64")


def test_rounded_numbers_keep_their_precision_when_copied() -> None:
    import copy

    value, _ = copy.deepcopy(parse_display_text("array([-1.5       ,  0.12345679])"))
    assert value == -1.5 and value.decimals == 8  # the array's precision: its longest element


def test_each_array_element_is_compared_at_the_digits_it_was_shown_with() -> None:
    """Issue 26: numpy's legacy repr of [0.10000000449, 1.2345678e-5] was STALE, since every element
    took the precision of the most precise one (1e-13 for 0.100000004)."""
    legacy = parse_display_text("array([  1.00000004e-01,   1.23456780e-05])")
    assert difference(legacy, [0.10000000449, 1.2345678e-5], 1e-9, 0.0) is None
    assert difference(legacy, [0.1000001, 1.2345678e-5], 1e-9, 0.0) is not None  # beyond its own 9 decimals
    mixed = parse_display_text("array([[0.35760877, 4.6888194e-230, 0.0, 3.5231883]], dtype=float128)")
    assert difference(mixed, [[0.35760876606635267, 4.68881941e-230, 0.0, 3.52318834]], 1e-9, 0.0) is None
    # A float64 array in fixed notation: "1." beside "2.25" is exact at two decimals.
    assert difference(parse_display_text("array([1.  , 2.25])"), [1.04, 2.25], 1e-9, 0.0) is not None
