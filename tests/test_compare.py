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
