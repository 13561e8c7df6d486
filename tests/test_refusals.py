"""What cannot travel is refused by name: one paragraph, exit 1, no traceback, nothing rendered.

Each case runs its cells in a real IPython shell in this process, the recorder installed as the
CLI's kernel installs it, and is captured by the kernel's own code with the request the CLI
would send; one case also goes through the real command line and a real kernel.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from IPython.core.interactiveshell import InteractiveShell
from nbformat.v4 import new_code_cell, new_notebook

from nb2container import cli as command_line
from nb2container import config
from nb2container.captured import read_raw
from nb2container.errors import CaptureError
from nb2container.kernel.capture import capture_to_file
from nb2container.kernel.recorder import CallRecorder
from nb2container.notebook import choose_function
from nb2container.options import given_flags
from tests.conftest import run_cli

CASES = {
    "undefined_name": (
        ["def predict(x):\n    return x * SCALE"], [], ["`SCALE`", "no cell of the notebook defines"],
    ),
    "generator_global": (
        ["rows = (i * i for i in range(3))", "def predict(x):\n    return x + next(rows)"], [],
        ["`rows`", "builtins.generator"],
    ),
    "socket_global": (
        ["import socket\nsock = socket.socket()", "def predict(x):\n    return sock.fileno() + x"], [],
        ["`sock`", "socket.socket"],
    ),
    "lock_global": (
        ["import threading\nguard = threading.Lock()",
         "def predict(x):\n    with guard:\n        return x"], [],
        ["`guard`", "_thread.lock"],
    ),
    "database_global": (
        ["import sqlite3\nconn = sqlite3.connect(':memory:')",
         "def predict(x):\n    return conn.execute('select ?', (x,)).fetchone()[0]", "predict(2)"], [],
        ["`conn`", "sqlite3.Connection"],
    ),
    "artifact_too_large": (
        ["import numpy as np\nbig = np.zeros(400_000)", "def predict(i):\n    return float(big[i])"],
        ["--max-artifact-mb", "1"],
        ["`big`", "numpy.ndarray", "3,200,", "over the limit of 1,048,576"],
    ),
    "generator_function": (
        ["def predict(n):\n    yield from range(n)"], [], ["`predict` is a generator function", "yield"],
    ),
    "ipython_syntax_inside": (
        ["def predict(x):\n    listing = !ls\n    return x"], [], ["`predict` uses `get_ipython`", "!shell"],
    ),
    "varying_object": (
        ["class Model:\n    def score(self, x):\n        return x",
         "def predict(x, model):\n    return model.score(x)",
         "predict(1, Model())", "predict(2, Model())"], [],
        ["parameter `model`", "different object", "In [3], In [4]"],
    ),
    "varying_object_bound": (  # issue 26: --bind that changes nothing said nothing
        ["class Model:\n    def score(self, x):\n        return x",
         "def predict(x, model):\n    return model.score(x)",
         "predict(1, Model())", "predict(2, Model())"], ["--bind", "model"],
        ["different object", "--bind model changes nothing here"],
    ),
    "bind_unknown_parameter": (
        ["def predict(x):\n    return x", "predict(1)"], ["--bind", "model"],
        ["--bind names `model`", "not a parameter"],
    ),
    "complex_result": (
        ["import numpy as np", "def predict(x):\n    return np.array([x + 1j])", "predict(2.0)"], [],
        ["predict(2.0) at In [3]", "the result (numpy.ndarray of dtype complex128) has no JSON form", ".imag"],
    ),
    "complex_argument": (
        ["import numpy as np", "def predict(z):\n    return float(abs(z).sum())", "predict(np.array([1 + 2j]))"], [],
        ["at In [3]", "the argument `z` (numpy.ndarray of dtype complex128) has no JSON form"],
    ),
    "unknown_function": (
        ["def predict(x):\n    return x", "def helper(y):\n    return y"], ["--function", "score"],
        ["`score`", "`predict` (cell 1)", "`helper` (cell 2)"],
    ),
}


def notebook(cells: list[str]) -> nbformat.NotebookNode:
    nb = new_notebook(cells=[new_code_cell(source) for source in cells])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    return nb


@pytest.mark.parametrize("case", sorted(CASES))
def test_refusal_names_the_culprit(case: str, shell: InteractiveShell, tmp_path: Path) -> None:
    cells, flags, fragments = CASES[case]
    if any("numpy" in source for source in cells):
        pytest.importorskip("numpy", reason="the case's cells import numpy (the notebooks' extra)")
    options = config.resolve(given_flags(command_line.parser().parse_args(["render", "nb.ipynb", *flags])),
                             tmp_path, environ={}, notebook=None).options
    try:
        function = choose_function(notebook(cells), options.function, Path(f"{case}.ipynb"))
        CallRecorder(shell, function).install()  # what kernel/session.start does
        for source in cells:
            assert shell.run_cell(source, store_history=True).success, source
        capture_to_file(shell.user_ns, options.capture_request(function, tmp_path))
        read_raw(tmp_path, f"{case}.ipynb")
    except CaptureError as refused:
        message = str(refused)
    else:
        pytest.fail(f"{case} was not refused")
    for fragment in fragments:
        assert fragment in message, (fragment, message)
    assert "\n" not in message.strip()  # one paragraph


@pytest.mark.kernel
def test_a_refusal_through_the_command_line_is_one_paragraph_and_renders_nothing(tmp_path: Path) -> None:
    cells, flags, fragments = CASES["generator_global"]
    path = tmp_path / "generator_global.ipynb"
    nbformat.write(notebook(cells), path)
    result = run_cli("render", path, "--output", tmp_path / "out", *flags)
    assert result.returncode == 1, result.stdout + result.stderr
    message = result.stderr.split("nb2container: ", 1)[-1]
    for fragment in fragments:
        assert fragment in message, (fragment, message)
    assert "Traceback" not in result.stderr + result.stdout
    assert not (tmp_path / "out").exists()


def test_a_bind_that_changes_nothing_says_so(shell: InteractiveShell, tmp_path: Path) -> None:
    """Issue 26: an option that has no effect says so (here a warning, the build goes on)."""
    cells = ["class Model:\n    def score(self, x):\n        return x", "model = Model()",
             "def predict(x, model):\n    return model.score(x)", "predict(1, model)", "predict(2, model)"]
    options = config.resolve(given_flags(command_line.parser().parse_args(["render", "nb.ipynb", "--bind", "model"])),
                             tmp_path, environ={}, notebook=None).options
    CallRecorder(shell, "predict").install()
    for source in cells:
        assert shell.run_cell(source, store_history=True).success, source
    capture_to_file(shell.user_ns, options.capture_request("predict", tmp_path))
    raw = read_raw(tmp_path, "nb.ipynb")
    assert raw["interface"]["bound"] == {"model": "model"}
    assert any(w.startswith("--bind model changes nothing") for w in raw["warnings"]), raw["warnings"]
