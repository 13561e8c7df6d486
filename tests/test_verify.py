"""What --verify-notebook re-runs the notebook with (pure logic, no engine): the modules its cells
import beyond the function's closure, and a copy in which nb2container's own cells are skipped."""

from __future__ import annotations

import io
import sys
import tarfile
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from nb2container import freeze, notebook, verify
from nb2container.model import KernelInterpreter


def test_the_modules_the_cells_import_beyond_the_standard_library() -> None:
    nb = new_notebook(cells=[new_code_cell("%load_ext nb2container\nimport os, json"),
                             new_code_cell("import pandas as pd\nfrom sklearn.linear_model import Ridge"),
                             new_code_cell("from . import local\nimport nb2container\n!pip list"),
                             new_markdown_cell("import numpy"), new_code_cell("def broken(:")])
    assert notebook.cell_imports(nb) == ("pandas", "sklearn")
    assert notebook.loads_nb2container("x = 1\n%load_ext nb2container")
    assert notebook.loads_nb2container("%containerize predict --tag t")
    assert not notebook.loads_nb2container("import pandas")


def test_the_copy_nbval_runs_skips_nb2container_s_own_cells(tmp_path: Path) -> None:
    nb = new_notebook(cells=[new_code_cell("%load_ext nb2container"), new_code_cell("x = 1")])
    nbformat.write(nb, tmp_path / "nb.ipynb")
    (tmp_path / "data.csv").write_text("a\n1\n")
    with tarfile.open(fileobj=io.BytesIO(verify._folder_tar(tmp_path / "nb.ipynb"))) as tar:
        names = tar.getnames()
        copy = nbformat.reads(tar.extractfile("work/.nb2c-verify-nb.ipynb").read().decode(), as_version=4)
    assert {"work/nb.ipynb", "work/data.csv", "work/.nb2c-verify-nb.ipynb"} <= set(names)
    assert [cell.metadata.get("tags", []) for cell in copy.cells] == [["nbval-skip"], []]
    assert nbformat.read(tmp_path / "nb.ipynb", as_version=4).cells[0].metadata == {}  # the user's file untouched


def test_the_cells_imports_close_over_the_kernel_s_distributions() -> None:
    import platform

    interpreter = KernelInterpreter(platform.python_version(), "cpython", sys.executable, platform.machine(), {})
    found = freeze.importing_closure(interpreter, ("nbformat",))
    assert "nbformat" in found.packages and "jsonschema" in found.packages and found.roots == ("nbformat",)


def test_the_sibling_installs_the_notebook_s_packages_in_a_step_of_their_own() -> None:
    from nb2container.runtime.layout import IMAGE
    from nb2container.templating import environment

    def rendered(packages: bool) -> str:
        return environment().get_template("Dockerfile.verify.j2").render(
            image="sha256:1", base_image="python:3.11.7-slim-bookworm", layout=IMAGE, work="/work",
            notebook_packages=packages)

    assert rendered(True).count("\nRUN python -m pip install") == 2 and "/opt/nb2c-notebook -r" in rendered(True)
    assert rendered(False).count("\nRUN python -m pip install") == 1 and "zy-nb2c-notebook.pth" in rendered(False)
