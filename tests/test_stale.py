"""Why saved outputs are STALE, named from what the tool can see (pure logic, no kernel)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import nbformat
from nbformat.v4 import new_notebook

from nb2container import stale
from nb2container.model import SmokeCase


def capture(tmp_path: Path, saved_on: str | None, kernel: str = "3.11.7") -> Any:
    notebook = tmp_path / "nb.ipynb"
    nb = new_notebook()
    if saved_on:
        nb.metadata["language_info"] = {"name": "python", "version": saved_on}
    nbformat.write(nb, notebook)
    return SimpleNamespace(notebook=notebook, notebook_name="nb.ipynb",
                           interpreter=SimpleNamespace(python_version=kernel))


def outdated(stored: Any, fresh: Any) -> list[SmokeCase]:
    return [SmokeCase(cell=3, call="kind(df)", request=None, expected=fresh, expected_from="fresh run",
                      stored=stored, stale=True, execution_count=7)]


def test_a_notebook_saved_on_another_python_is_told_so(tmp_path: Path) -> None:
    said = stale.message(outdated(0.5, 0.6), capture(tmp_path, "3.6.9"), building=True)
    assert "saved on Python 3.6.9, and this kernel runs Python 3.11.7" in said
    assert "Seed the training" not in said and "--allow-stale" in said


def test_a_type_that_moved_between_modules_names_package_versions(tmp_path: Path) -> None:
    """Issue 26: saved under pandas 2.2, built under pandas 3.1, advised to seed the training."""
    said = stale.message(outdated("<class 'pandas.core.frame.DataFrame'>", "<class 'pandas.DataFrame'>"),
                         capture(tmp_path, "3.11.7"), building=True)
    assert "names `pandas.core.frame.DataFrame` where this kernel gives `pandas.DataFrame`" in said
    assert "other package versions" in said and "Seed the training" not in said


def test_otherwise_a_code_or_data_change_or_unseeded_training(tmp_path: Path) -> None:
    said = stale.message(outdated(0.5, 0.6), capture(tmp_path, "3.11.7"), building=False)
    assert "Seed the training" in said and "Python 3" not in said
    assert stale.saved_python(None) is None


def test_a_function_that_answers_differently_twice_is_named_random(tmp_path: Path) -> None:
    case = outdated(0.5, 0.6)[0]
    case.repeats = False
    said = stale.message([case], capture(tmp_path, "3.11.7"), building=True)
    assert "answered differently when it was made again right after the fresh run" in said
    assert "Seed it" in said and "before a change" not in said
