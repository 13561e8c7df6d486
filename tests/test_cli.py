"""The command line's refusals and choices (no engine needed): the real command line, in this process
(``cli``) where a real kernel runs, and once as a subprocess."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from nb2container.errors import CaptureError
from nb2container.notebook import choose_function
from nb2container.render import default_tag
from tests.conftest import NOTEBOOKS, cli


def test_unknown_function_names_it_and_the_candidates(tmp_path: Path) -> None:
    result = cli("build", NOTEBOOKS / "house_prices.ipynb", "--function", "nosuch",
                 "--report", tmp_path / "report.json", "--junit", tmp_path / "junit.xml")
    assert result.returncode != 0
    assert "`nosuch`" in result.stderr
    assert "`predict_price`" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    # A refusal still writes the report and JUnit CI asked for (issue 26).
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["verdict"]["ok"] is False and "`nosuch`" in report["refusal"]
    assert report["verdict"]["reasons"] == [report["refusal"]] and report["function"] == "nosuch"
    assert 'failures="1"' in (tmp_path / "junit.xml").read_text()


def test_missing_notebook_is_one_paragraph(tmp_path: Path) -> None:
    result = cli("build", tmp_path / "absent.ipynb")
    assert result.returncode == 1
    assert "absent.ipynb" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.kernel
def test_failing_cell_is_named(tmp_path: Path) -> None:
    nb = new_notebook(cells=[new_code_cell("x = 1"), new_code_cell("def predict(a):\n    return a"),
                             new_code_cell("1 / 0")])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path = tmp_path / "broken.ipynb"
    nbformat.write(nb, path)
    result = cli("render", path, "--output", tmp_path / "out")
    assert result.returncode == 1
    assert "Cell 3 of broken.ipynb" in result.stderr and "ZeroDivisionError" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()


def notebook_of(*sources: str, tags: dict[int, list[str]] | None = None) -> nbformat.NotebookNode:
    cells = [new_code_cell(source) for source in sources]
    for index, cell_tags in (tags or {}).items():
        cells[index].metadata["tags"] = cell_tags
    return new_notebook(cells=cells)


def test_function_choice_prefers_serve_tag_then_predict() -> None:
    nb = notebook_of("def predict(x):\n    return x", "%matplotlib inline\ndef score(x):\n    return x",
                     tags={1: ["serve"]})
    assert choose_function(nb, None, Path("n.ipynb")) == "score"
    assert choose_function(notebook_of("def predict(x):\n    return x"), None, Path("n.ipynb")) == "predict"
    with pytest.raises(CaptureError, match="`helper` \\(cell 1\\)"):
        choose_function(notebook_of("def helper(x):\n    return x"), None, Path("n.ipynb"))


def test_default_tag_is_a_valid_reference() -> None:
    assert default_tag(Path("My Notebook.ipynb"), "Predict_Price") == "my-notebook-predict_price:latest"


def test_render_never_clears_a_folder_it_did_not_make(tmp_path: Path) -> None:
    from nb2container import output
    from nb2container.errors import UsageError

    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(UsageError, match="not made by nb2container"):
        output.check(tmp_path, None)
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_out_of_order_cells_and_unseen_globals_are_warned_about() -> None:
    from nb2container.notebook import out_of_order_warnings, unseen_global_warnings

    nb = notebook_of("x = 1", "%time y = 2", "exec('z = 3')", "def f():\n    return x + y + z")
    for cell, count in zip(nb.cells, [1, 3, 2, 4], strict=True):
        cell.execution_count = count
    (order,) = out_of_order_warnings(nb, Path("n.ipynb"))
    assert "cell 2 shows [3], the later cell 3 shows [2]" in order
    (unseen,) = unseen_global_warnings(nb, ["x", "y", "z"], "f", Path("n.ipynb"))
    assert "`z`" in unseen and "`x`" not in unseen and "`y`" not in unseen
    starred = notebook_of("from helpers import *", "def f():\n    return z")
    assert unseen_global_warnings(starred, ["z"], "f", Path("n.ipynb")) == []


@pytest.mark.kernel
def test_a_missing_kernel_named_by_the_notebook_means_this_python(tmp_path: Path) -> None:
    import platform
    import sys

    nb = new_notebook(cells=[new_code_cell("def predict(x):\n    return x + 1"), new_code_cell("predict(1)")])
    nb.metadata["kernelspec"] = {"name": "conda-root-py", "display_name": "Python [conda env:root]",
                                 "language": "python"}
    path = tmp_path / "elsewhere.ipynb"
    nbformat.write(nb, path)
    result = cli("render", path, "--output", tmp_path / "out")
    assert result.returncode == 0, result.stderr
    assert "names the kernel `conda-root-py`, which is not installed here" in result.stderr
    assert sys.executable in result.stderr and platform.python_version() in result.stderr
    refused = cli("render", path, "--kernel", "nosuch", "--output", tmp_path / "other")
    assert refused.returncode == 1 and "--kernel nosuch" in refused.stderr and "`python3`" in refused.stderr
    assert "Running" not in refused.stderr and not (tmp_path / "other").exists()


def test_every_warning_a_build_prints_is_in_its_report(tmp_path: Path) -> None:
    """Issue 26: the kernel-fallback warning was printed, and the report's `warnings` was empty."""
    from nb2container import pipeline
    from nb2container.options import Options
    from nb2container.progress import SilentProgress, WarningsKept
    from nb2container.report import BuildReport

    kept = WarningsKept(SilentProgress())
    kept.warn("elsewhere.ipynb names the kernel `conda-root-py`, which is not installed here")
    report = BuildReport(notebook="nb.ipynb", function="f", image=None, image_id=None, size_bytes=None,
                         python="3.11.7", packages={}, folder=None, smoke=None, warnings=["from the capture"])
    pipeline._written(report, Options(notebook=None, report=tmp_path / "report.json"), kept)
    written = json.loads((tmp_path / "report.json").read_text())["warnings"]
    assert written == ["from the capture", "elsewhere.ipynb names the kernel `conda-root-py`, which is not "
                                           "installed here"]


@pytest.mark.kernel
def test_a_random_function_is_named_as_the_cause_of_its_stale_output(tmp_path: Path) -> None:
    """Issue 26: every STALE said "saved before a change ... or training is not seeded"; the fresh
    run now makes each call twice, and a function that answers differently is named random."""
    from nbformat.v4 import new_output

    call = new_code_cell("draw(10)", execution_count=3)
    call.outputs = [new_output("execute_result", {"text/plain": "3.14159"}, execution_count=3)]
    nb = new_notebook(cells=[new_code_cell("import random", execution_count=1),
                             new_code_cell("def draw(n):\n    return round(random.random() * n, 6)", execution_count=2),
                             call])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, tmp_path / "draws.ipynb")
    result = cli("render", tmp_path / "draws.ipynb", "--function", "draw", "--output", tmp_path / "out")
    assert "cell 3 [In 3]: draw(10) answered differently when it was made again" in result.stderr, result.stderr
