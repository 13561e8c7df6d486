"""Checked means checked: each call's saved output is compared equal, compared stale, or not
compared with the reason, and the table, report and JUnit say which (pure logic, no kernel)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import nbformat
from nbformat.v4 import new_code_cell, new_notebook, new_output

from nb2container.display import Containerized
from nb2container.model import SmokeReport
from nb2container.notebook import examples_from_calls
from nb2container.report import BuildReport, smoke_table
from nb2container.smoke import smoke_case


def cell(source: str, count: int, stdout: str = "", result: str | None = None) -> nbformat.NotebookNode:
    outputs = [new_output("stream", name="stdout", text=stdout)] if stdout else []
    if result is not None:
        outputs.append(new_output("execute_result", {"text/plain": result}, execution_count=count))
    return new_code_cell(source, execution_count=count, outputs=outputs)


def call(count: int, result: Any = None, text: str | None = None, stdout: str = "") -> dict[str, Any]:
    return {"execution_count": count, "args": [], "kwargs": {}, "result": result, "result_text": text,
            "replayable": True, "reason": "", "body": {}, "shown": f"f() in [{count}]", "stdout": stdout}


def judged(saved: list[nbformat.NotebookNode], fresh: list[nbformat.NotebookNode],
           calls: list[dict[str, Any]], rel_tol: float = 1e-6, abs_tol: float = 1e-9) -> SmokeReport:
    examples = examples_from_calls(calls, new_notebook(cells=saved), new_notebook(cells=fresh))
    return SmokeReport([smoke_case(example, "f", rel_tol, abs_tol) for example in examples], health=True)


def test_several_printing_calls_in_one_cell_are_compared_together() -> None:
    source = "for n in (1, 2, 3):\n    f(n)"
    fresh_out = "(-0.38) Russian\n(-0.20) Czech\n(-0.11) Polish\n"
    calls = [call(1, stdout="(-0.38) Russian\n"), call(1, stdout="(-0.20) Czech\n"), call(1, stdout="(-0.11) Polish\n")]
    stale = judged([cell(source, 1, "(-0.87) Czech\n(-0.20) Czech\n(-0.11) Polish\n")], [cell(source, 1, fresh_out)],
                   calls)
    # Issue 26: each call answers for its own words, not for the first call's difference.
    assert [case.checked for case in stale.cases] == ["stale", "equal", "equal"] and stale.stale == 1
    assert stale.cases[0].stale_difference == "what it printed: word 1: expected '(-0.87)', printed '(-0.38)'"
    table = smoke_table(stale)
    assert "the notebook shows \"printed: (-0.87) Czech\", but its code now gives \"printed: (-0.38) Russian\"" in table
    unaligned = judged([cell(source, 1, "(-0.87) Czech and more\n")], [cell(source, 1, fresh_out)], calls)
    assert unaligned.stale == 3 and "what the calls in its cell printed" in str(unaligned.cases[1].stale_difference)
    same = judged([cell(source, 1, fresh_out)], [cell(source, 1, fresh_out)], calls)
    assert [case.checked for case in same.cases] == ["equal"] * 3 and same.not_compared == 0


def test_what_cannot_be_compared_says_why_and_is_counted() -> None:
    saved = [cell("x = f(1)\nprint('done')", 1, "done\n"), cell("f(2)", 2, result="4"), cell("f(3)", 3)]
    fresh = [cell("x = f(1)\nprint('done')", 1, "done\n"), cell("f(2)", 2, result="4"), cell("f(3)", 3, result="9")]
    report = judged(saved, fresh, [call(1, 2, "2"), call(2, 4, "4"), call(3, 9, "9")])
    checked = [case.checked for case in report.cases]
    assert checked[1] == "equal"
    assert checked[0] == "not compared: its result is not its cell's output (the cell shows something else, or nothing)"
    assert checked[2].startswith("not compared: its cell ran (In [3]) but its saved output shows nothing")
    assert report.not_compared == 2 and report.to_dict()["not_compared"] == 2
    for case in report.cases:
        case.passed, case.actual = True, case.expected
    table = smoke_table(report)
    assert "match, not compared" in table and "2 not compared with the notebook's saved output" in table
    assert "cell 1 [In 1]: f() in [1] was not compared with the saved output, since its result is not" in table


def test_a_build_where_nothing_could_be_compared_never_says_reproduces(tmp_path: Path) -> None:
    """Issue 26: "No call could be compared ..." was followed by "OK: ... reproduces"."""
    report = judged([cell("x = f(1)", 1)], [cell("x = f(1)", 1)], [call(1, 2, "2")])
    report.cases[0].passed = True
    build = BuildReport(notebook="nb.ipynb", function="f", image="img:1", image_id="sha256:1", size_bytes=1,
                        python="3.11.7", packages={}, folder=None, smoke=report)
    verdict = build.verdict
    assert verdict.ok and verdict.words == "built and served; nothing compared with the notebook"
    assert build.to_dict()["verdict"]["words"] == verdict.words
    build.write_junit(tmp_path / "junit.xml")
    assert "nothing compared with the notebook: no call's result is shown" in (tmp_path / "junit.xml").read_text()
    assert "reproduces" not in repr(Containerized(build, []))
    shown = judged([cell("f(1)", 1, result="2")], [cell("f(1)", 1, result="2")], [call(1, 2, "2")])
    shown.cases[0].passed = True
    build.smoke = shown
    assert build.verdict.words == "reproduces" and build.verdict.compared == 1


def test_the_table_shortens_long_values_and_failures_read_as_sentences() -> None:
    report = judged([cell("f(1)", 1, result="[0, 1]")], [cell("f(1)", 1, result="[0, 1]")],
                    [call(1, list(range(100)), "[0, 1]")])
    case = report.cases[0]
    case.difference = "the container answered HTTP 422: {\"error\": \"`x` must be a number\"}"
    table = smoke_table(report)
    assert max(len(line) for line in table.splitlines()[:3]) < 200
    assert "MISMATCH f() in [1]: the container answered HTTP 422" in table and " - where" not in table


def test_calls_a_cell_mapped_over_a_column_are_not_compared_and_said_so_once() -> None:
    source = "messages['label'] = messages['SMS'].apply(f)\nmessages"
    shown = [cell(source, 4, result="  SMS  label\n0 ...")]
    calls = [{**call(4, label, f"'{label}'"), "via": "Series.apply", "shown": f"f({n}) through Series.apply"}
             for n, label in enumerate(["spam", "ham", "spam"])]
    report = judged(shown, shown, calls)
    assert {case.checked for case in report.cases} == {
        "not compared: its cell called it through Series.apply, so the cell shows all the calls' results together"}
    for case in report.cases:
        case.passed, case.actual = True, case.expected
    lines = [line for line in smoke_table(report).splitlines() if "were not compared" in line or "was not" in line]
    assert lines == ["cell 1 [In 4]: 3 calls (f(0) through Series.apply, ...) were not compared with the saved output, "
                     "since its cell called it through Series.apply, so the cell shows all the calls' results "
                     "together"], lines


def test_the_stale_check_uses_the_build_s_tolerances() -> None:
    """Issue 26: the stale check held saved outputs to 1e-9 whatever --rel-tol said."""
    saved, fresh = [cell("f()", 1, result="0.5000001")], [cell("f()", 1, result="0.5000002")]
    calls = [call(1, result=0.5000002, text="0.5000002")]
    assert judged(saved, fresh, calls).stale == 0  # the defaults README states: rel 1e-6
    assert judged(saved, fresh, calls, rel_tol=1e-9, abs_tol=0.0).stale == 1


def test_a_cell_that_ran_and_shows_nothing_is_not_called_not_run() -> None:
    """Issue 26: `y = double(21)` in a cell that ran (In [2]) was "not run before the notebook was saved"."""
    ran = judged([cell("y = f()", 2)], [cell("y = f()", 2)], [call(2, result=42, text=None)])
    checked = ran.cases[0].checked
    assert "ran (In [2]) but its saved output shows nothing" in checked and "not run" not in checked
    never = new_code_cell("y = f()", execution_count=None)
    unrun = judged([never], [cell("y = f()", 2)], [call(2, result=42, text=None)])
    assert "not run before the notebook was saved" in unrun.cases[0].checked
