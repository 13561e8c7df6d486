"""Which calls the recorder keeps, in an in-process IPython shell: those a cell makes itself, and
those it makes through pandas mapping the function over a column, sampled."""

from __future__ import annotations

from typing import Any

import pytest

from nb2container.kernel.recorder import MAPPED_SAMPLE, CallRecorder

CELLS = [
    "import pandas as pd\n"
    "def classify(text):\n"
    "    return 'spam' if 'free' in text.lower() else 'ham'",
    "texts = pd.Series(['Free entry', 'hello', 'FREE money', 'hello', 'see you', 'ok', 'later'] * 3)",
    "texts.apply(classify)",
    "texts.to_frame('sms')['sms'].map(classify).value_counts()",
    "list(map(classify, ['a', 'free b']))",
    "def helper(xs):\n    return [classify(x) for x in xs]\nhelper(['free q'])",
    "classify('free c')",
    "texts.head(2).apply(lambda text: classify(text.upper()))",
]


def test_calls_through_pandas_are_recorded_first_distinct_ones_per_cell(shell: Any) -> None:
    pytest.importorskip("pandas", reason="the cells use pandas (the notebooks' extra)")
    recorder = CallRecorder(shell, "classify")
    recorder.install()
    for source in CELLS:
        assert shell.run_cell(source, store_history=True).success, source
    calls = recorder.as_dicts("classify")
    by_cell: dict[int, list[dict[str, Any]]] = {}
    for call in calls:
        by_cell.setdefault(call["execution_count"], []).append(call)
    applied, mapped, builtin_map, direct = by_cell[3], by_cell[4], by_cell[5], by_cell[7]
    assert [c["args"][0] for c in applied] == ["Free entry", "hello", "FREE money", "see you", "ok"]
    assert len(applied) == MAPPED_SAMPLE and {c["via"] for c in applied} == {"Series.apply"}
    assert applied[0]["shown"] == "classify('Free entry') through Series.apply" and applied[0]["result"] == "spam"
    assert len(mapped) == MAPPED_SAMPLE and {c["via"] for c in mapped} == {"Series.map"}
    assert [c["via"] for c in builtin_map] == ["", ""]  # Python's map calls it from the cell itself
    assert 6 not in by_cell  # from inside another function of the notebook: not recorded
    assert [c["args"] for c in direct] == [["free c"]]
    lambdas = [(c["args"], c["via"]) for c in by_cell[8]]  # a cell's lambda, mapped by pandas
    assert lambdas == [(["FREE ENTRY"], "Series.apply"), (["HELLO"], "Series.apply")]
    assert recorder.totals["classify"] == 21 + 21 + 2 + 1 + 2  # every call the cells made is counted


def test_a_parameter_given_types_the_server_cannot_tell_apart_is_refused_naming_the_cells(
    shell: Any, tmp_path: Any
) -> None:
    pytest.importorskip("numpy", reason="the cells use numpy (the notebooks' extra)")
    from nb2container.captured import read_raw
    from nb2container.errors import CaptureError
    from nb2container.kernel.capture import capture_to_file
    from nb2container.kernel.request import CaptureRequest

    CallRecorder(shell, "total").install()
    for source in ["import numpy as np\ndef total(values):\n    return float(sum(values))",
                   "total(np.array([1.0, 2.0]))", "total([1.0, 2.0])"]:
        assert shell.run_cell(source, store_history=True).success, source
    capture_to_file(shell.user_ns, CaptureRequest("total", str(tmp_path)))
    with pytest.raises(CaptureError) as refused:
        read_raw(tmp_path, "nb.ipynb")
    message = str(refused.value)
    assert "`total`'s parameter `values` gets a list at In [3] and a numpy array at In [2]: both travel as " \
           "a JSON array" in message, message
    assert "np.asarray(values)" in message and "\n" not in message.strip()
