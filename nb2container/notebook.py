"""Run a notebook in its own kernel (nbclient) and capture the serving function there."""

from __future__ import annotations

import ast
import atexit
import hashlib
import json
import os
import platform
import shutil
import subprocess
import symtable
import sys
import tempfile
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import nbformat
from IPython.core.inputtransformer2 import TransformerManager
from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError, DeadKernelError
from nbformat import ValidationError

import nb2container
from nb2container.captured import example_from_call, read_raw, to_capture
from nb2container.errors import CaptureError, UsageError
from nb2container.kernel.capture import cell_magic_body, functions_in_cells
from nb2container.kernel.request import CAPTURING_ENV, ENV, CaptureRequest
from nb2container.model import Capture, Example, cell_label
from nb2container.progress import Progress

SERVE_TAG = "serve"

# The only code the host runs in the kernel besides the notebook's cells: fixed text, calling
# kernel/session.py, which reads the request from the file NB2C_CAPTURE_REQUEST names.
_IN_KERNEL = """
def __nb2container(step):
    import os, sys
    try:
        import nb2container.kernel.session
    except ImportError:  # a kernel whose Python lacks nb2container: this host's copy
        sys.path.insert(0, os.environ["NB2C_PACKAGE_PARENT"])
    from nb2container.kernel import session
    getattr(session, step)(get_ipython())
__nb2container({step!r}); del __nb2container
"""
_START, _FINISH = _IN_KERNEL.replace("{step!r}", "'start'"), _IN_KERNEL.replace("{step!r}", "'finish'")


def read_notebook(path: Path) -> nbformat.NotebookNode:
    if not path.is_file():
        raise UsageError(f"There is no notebook at {path}. Give the path of an .ipynb file.")
    try:
        return nbformat.read(path, as_version=4)
    except (OSError, ValueError, KeyError, TypeError, ValidationError) as exc:  # not JSON, not a notebook
        raise UsageError(
            f"{path} is not a readable Jupyter notebook ({exc}). Open it in Jupyter and save it "
            "again, then build."
        ) from None


def python_source(cell_source: str) -> str:
    """A cell's source as Python, IPython syntax (%magics, !shell) transformed away."""
    return TransformerManager().transform_cell(cell_source)


def cell_imports(nb: nbformat.NotebookNode) -> tuple[str, ...]:
    """The top-level modules the notebook's code cells import (not the standard library's, not
    nb2container's): what re-running the whole notebook needs beyond the function's closure."""
    found: set[str] = set()
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        try:
            tree = ast.parse(python_source(cell.source))
        except SyntaxError:  # nbval will name this cell itself
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                found.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                found.add(node.module.split(".")[0])
    return tuple(sorted(found - set(sys.stdlib_module_names) - {"nb2container", "__future__"}))


def loads_nb2container(source: str) -> bool:
    """A cell whose work is nb2container's own (loading the magic, containerizing): not the notebook's."""
    return any(line.lstrip().startswith(("%load_ext nb2container", "%containerize", "%%containerize",
                                         "import nb2container", "from nb2container"))
               for line in source.splitlines())


def defined_functions(nb: nbformat.NotebookNode) -> dict[str, int]:
    """The functions the notebook's code cells define, in order: name -> 1-based cell number."""
    sources = [python_source(cell.source) if cell.cell_type == "code" else "" for cell in nb.cells]
    return {name: index + 1 for name, index in functions_in_cells(sources).items()}


def choose_function(nb: nbformat.NotebookNode, requested: str | None, path: Path) -> str:
    """``--function``, else the function in a cell tagged ``serve``, else ``predict``."""
    functions = defined_functions(nb)
    listing = ", ".join(f"`{name}` (cell {cell})" for name, cell in sorted(functions.items()))
    listing = listing or "none"
    if requested:
        if requested not in functions:
            raise CaptureError(
                f"{path.name} defines no function named `{requested}`. The functions its cells "
                f"define are: {listing}. Pass one of them with --function."
            )
        return requested
    for number, cell in enumerate(nb.cells, start=1):
        if cell.cell_type == "code" and SERVE_TAG in cell.get("metadata", {}).get("tags", []):
            tagged = [name for name, at in functions.items() if at == number]
            if tagged:  # helpers come first: the cell's last function is the one to serve
                return tagged[-1]
    if "predict" in functions:
        return "predict"
    raise CaptureError(
        f"nb2container does not know which function of {path.name} to serve: no cell is tagged "
        f"`{SERVE_TAG}` and none defines `predict`. Functions defined: {listing}. Pass "
        "--function NAME, or tag the cell that defines it `serve`."
    )


def capture_notebook(path: Path, request: CaptureRequest, kernel: str, timeout: int, progress: Progress,
                     debug: bool = False) -> Capture:
    """Execute the notebook in its kernel, recording calls, then capture inside that kernel.

    The kernel writes the capture and the artifacts under ``request.out_dir``, which the caller owns.
    """
    stored = read_notebook(path)
    staging = Path(request.out_dir)
    environment = {**os.environ, CAPTURING_ENV: "1",
                   ENV: str(request.write(staging / "request.json")),
                   "NB2C_PACKAGE_PARENT": str(Path(nb2container.__file__).resolve().parent.parent)}
    executed = _execute(stored, path, request.function, kernel, timeout, environment, progress, debug)
    cell_of_count = _cell_of_count(executed)

    def label(count: int) -> str:  # the fresh run's count -> the cell's place and its count in the saved file
        index = cell_of_count.get(count)
        if index is None:
            return "a cell"
        saved = stored.cells[index].get("execution_count") if index < len(stored.cells) else None
        return cell_label(index + 1, saved)

    raw = read_raw(staging, path.name, label)
    return capture_from(raw, staging, notebook=path, saved=stored, cells=stored,
                        examples=examples_from_calls(raw["calls"], stored, executed), place=label)


def _execute(
    stored: nbformat.NotebookNode,
    path: Path,
    function: str,
    kernel: str,
    timeout: int,
    environment: dict[str, str],
    progress: Progress,
    kernel_stderr: bool = False,
) -> nbformat.NotebookNode:
    nb = nbformat.from_dict(json.loads(json.dumps(stored)))
    client = NotebookClient(
        nb, timeout=timeout, kernel_name=kernel, allow_errors=False,
        resources={"metadata": {"path": str(path.parent.resolve())}},
    )
    progress.step(f"Running {path.name} in a fresh `{kernel}` kernel")
    try:
        # The kernel's own stderr (its start-up warnings, its I/O loop's complaints when it is
        # shut down) is not the user's business; --debug keeps it.
        with client.setup_kernel(env=environment, **({} if kernel_stderr else {"stderr": subprocess.DEVNULL})):
            _run_hidden(client, _START)
            code_cells = sum(cell.cell_type == "code" for cell in nb.cells)
            done = 0
            for index, cell in enumerate(nb.cells):
                if cell.cell_type == "code":
                    done += 1
                    progress.detail(f"cell {index + 1} ({done}/{code_cells})")
                client.execute_cell(cell, index)
            progress.step(f"Capturing `{function}` inside the kernel")
            _run_hidden(client, _FINISH)
    except CellExecutionError as exc:
        raise CaptureError(_cell_error_message(exc, nb, path)) from None
    except DeadKernelError as exc:
        raise CaptureError(
            f"The kernel died while running {path.name} ({exc}). Check that the notebook runs top "
            "to bottom in a fresh kernel (it may need more memory than this machine has)."
        ) from None
    except NoSuchKernel:
        raise CaptureError(
            f"No Jupyter kernel named `{kernel}` is installed here. Installed: {_installed_kernels()}. "
            "Pick one with --kernel."
        ) from None
    return nb


def choose_kernel(nb: nbformat.NotebookNode, requested: str | None, path: Path, progress: Progress) -> str:
    """--kernel (which must exist), else the notebook's kernel, else the Python running nb2container.

    A notebook saved on another machine often names a kernel this one lacks (``conda-root-py``);
    a data scientist who runs nb2container from the notebook's environment means that one.
    """
    installed = KernelSpecManager().find_kernel_specs()
    if requested:
        if requested not in installed:
            raise UsageError(f"--kernel {requested}: no Jupyter kernel of that name is installed here. "
                             f"Installed: {_installed_kernels()}.")
        return requested
    named = nb.metadata.get("kernelspec", {}).get("name") or "python3"
    if named in installed or named == "python3":
        return named
    progress.warn(f"{path.name} names the kernel `{named}`, which is not installed here, so it runs with the "
                  f"Python that runs nb2container ({sys.executable}, Python {platform.python_version()}), and "
                  f"that is the environment the image freezes. Pass --kernel NAME for another "
                  f"(installed: {_installed_kernels()}).")
    return _this_python_kernel()


def _installed_kernels() -> str:
    return ", ".join(f"`{name}`" for name in sorted(KernelSpecManager().find_kernel_specs())) or "none"


_THIS_PYTHON = "nb2container-this-python"


def _this_python_kernel() -> str:
    """A kernelspec for this interpreter, in a folder of ours put on JUPYTER_PATH for this run."""
    folder = Path(tempfile.mkdtemp(prefix="nb2c-kernels-"))
    atexit.register(shutil.rmtree, folder, True)
    spec = folder / "kernels" / _THIS_PYTHON
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": f"Python {platform.python_version()} (nb2container)", "language": "python"}))
    os.environ["JUPYTER_PATH"] = os.pathsep.join(filter(None, [str(folder), os.environ.get("JUPYTER_PATH")]))
    return _THIS_PYTHON


def _run_hidden(client: NotebookClient, code: str) -> None:
    """Run code in the kernel without adding to its history or execution counts."""
    client.nb.cells.append(nbformat.v4.new_code_cell(code))
    try:
        client.execute_cell(client.nb.cells[-1], len(client.nb.cells) - 1, store_history=False)
    finally:
        client.nb.cells.pop()


def _cell_error_message(exc: CellExecutionError, nb: nbformat.NotebookNode, path: Path) -> str:
    number = next(
        (i + 1 for i, cell in enumerate(nb.cells)
         if any(o.get("output_type") == "error" for o in cell.get("outputs", []))),
        None,
    )
    where = f"cell {number}" if number else "a cell"
    first_line = nb.cells[number - 1].source.strip().splitlines()[0] if number else ""
    return (
        f"{where.capitalize()} of {path.name} failed when nb2container ran the notebook in a "
        f"fresh kernel: {exc.ename}: {exc.evalue}"
        + (f" (the cell starts `{first_line}`)" if first_line else "")
        + ". The image is built from a clean top-to-bottom run; fix the cell so that "
        "Restart & Run All succeeds, then build again."
    )


def capture_from(
    raw: dict[str, Any],
    staging: Path,
    *,
    notebook: Path | None,
    saved: nbformat.NotebookNode | None,
    cells: nbformat.NotebookNode,
    examples: list[Example],
    place: Callable[[int], str],
) -> Capture:
    """The kernel's answer as a Capture, for the CLI and the magic alike.

    ``saved`` is the notebook file's content when there is one; ``cells`` what the code ran as
    (the same, or the live kernel's history); ``place`` names where a call ran, by its
    execution count ("cell 3" in a file, "[3]" in a live kernel).
    """
    name = notebook.name if notebook else "this kernel's history"
    content = notebook.read_bytes() if notebook else "\n".join(c.source for c in cells.cells).encode()
    return to_capture(
        raw,
        notebook=notebook.resolve() if notebook else None,
        notebook_sha256=hashlib.sha256(content).hexdigest(),
        examples=examples,
        files_found=[f"read by the call at {place(f['execution_count'])}" if f["found"] == "read"
                     else "named in the function's code" for f in raw["files"]],
        warnings=[*(out_of_order_warnings(saved, notebook) if saved is not None and notebook else []),
                  *unseen_global_warnings(cells, raw["globals_read"], raw["function"], Path(name))],
        staging=staging,
    )


def _cell_of_count(nb: nbformat.NotebookNode) -> dict[int, int]:
    """Execution count -> 0-based index of the cell that ran with it."""
    return {
        cell.get("execution_count"): index
        for index, cell in enumerate(nb.cells)
        if cell.cell_type == "code" and cell.get("execution_count") is not None
    }


def out_of_order_warnings(stored: nbformat.NotebookNode, path: Path) -> list[str]:
    """Stored outputs that came from cells run out of order (execution counts going back)."""
    previous: tuple[int, int] | None = None
    for number, cell in enumerate(stored.cells, start=1):
        count = cell.get("execution_count") if cell.cell_type == "code" else None
        if count is None:
            continue
        if previous is not None and count <= previous[1]:
            return [
                f"{path.name} was saved after running its cells out of order (cell {previous[0]} "
                f"shows [{previous[1]}], the later cell {number} shows [{count}]), so its stored "
                "outputs may not be what a top-to-bottom run gives. The image is built from a "
                "top-to-bottom run; use Restart & Run All and save to make the two agree."
            ]
        previous = (number, count)
    return []


def unseen_global_warnings(
    stored: nbformat.NotebookNode, globals_read: list[str], function: str, path: Path
) -> list[str]:
    """Globals the function reads that no cell binds by name (exec, globals(), %run...)."""
    bound, star = names_bound_by_cells(stored)
    unseen = [name for name in globals_read if name not in bound]
    if star or not unseen:
        return []
    listing = ", ".join(f"`{name}`" for name in unseen)
    return [
        f"`{function}` reads {listing}, which no cell of {path.name} defines by name (it came "
        "from exec, globals(), %run or another hidden step); the image gets the value it had "
        "after the notebook ran, which a reader of the notebook cannot see."
    ]


def names_bound_by_cells(nb: nbformat.NotebookNode) -> tuple[set[str], bool]:
    """Names the code cells bind at top level (or declare global), and whether any cell star-imports."""
    bound: set[str] = set()
    star = False
    sources = [python_source(cell.source) for cell in nb.cells if cell.cell_type == "code"]
    while sources:
        source = sources.pop()
        try:
            tree = ast.parse(source)
            table = symtable.symtable(source, "<cell>", "exec")
        except SyntaxError:
            continue
        star = star or any(isinstance(node, ast.ImportFrom) and any(a.name == "*" for a in node.names)
                           for node in ast.walk(tree))
        sources.extend(body for node in tree.body if (body := cell_magic_body(node)) is not None)
        bound.update(s.get_name() for s in table.get_symbols() if s.is_assigned() or s.is_imported())
        tables = list(table.get_children())
        while tables:
            child = tables.pop()
            tables.extend(child.get_children())
            bound.update(s.get_name() for s in child.get_symbols()
                         if s.is_declared_global() and s.is_assigned())
    return bound, star


def cells_assigning(nb: nbformat.NotebookNode) -> dict[str, int]:
    """Global name -> the 1-based number of the last code cell that assigns it at top level."""
    found: dict[str, int] = {}
    for number, cell in enumerate(nb.cells, start=1):
        if cell.cell_type != "code":
            continue
        try:
            table = symtable.symtable(python_source(cell.source), "<cell>", "exec")
        except SyntaxError:
            continue
        found.update({s.get_name(): number for s in table.get_symbols() if s.is_assigned()})
    return found


def examples_from_calls(
    calls: list[dict[str, Any]], stored: nbformat.NotebookNode, executed: nbformat.NotebookNode
) -> list[Example]:
    """Pair each recorded call with the output the notebook saved for it, or say why none can be.

    A call's saved output is its cell's ``execute_result`` when, in the fresh run, that result
    displayed exactly as the call's result (the call is the cell's value); its saved printed
    output is the cell's stdout when the call printed all of it, and when several calls printed
    all of it together, the cell's stdout is compared with what they printed, in order.
    """
    cell_of_count = _cell_of_count(executed)
    printing: dict[int, list[dict[str, Any]]] = {}
    for call in calls:
        index = cell_of_count.get(call["execution_count"])
        if index is not None and call.get("stdout"):
            printing.setdefault(index, []).append(call)
    examples = []
    for call in calls:
        index = cell_of_count.get(call["execution_count"])
        stored_text = stored_stdout = group = None
        why = ("given with --example: the notebook saved no output for it" if call.get("source") == "example"
               else "its cell is not in the saved notebook")
        if index is not None and index < len(stored.cells):
            saved_cell, fresh_cell = stored.cells[index], executed.cells[index]
            why = _unchecked_reason(saved_cell, fresh_cell, call, len(printing.get(index, [])))
            if call["result_text"] is not None and _result_text(fresh_cell) == call["result_text"]:
                stored_text = _result_text(saved_cell)
            if call.get("stdout") and _stdout(fresh_cell) == call["stdout"]:
                stored_stdout = _stdout(saved_cell)
            elif call.get("stdout") and _stdout(fresh_cell) == "".join(c["stdout"] for c in printing[index]):
                group = (_stdout(saved_cell), _stdout(fresh_cell))
        example = example_from_call(call, (index + 1) if index is not None else 0, stored_text, stored_stdout)
        # The count the saved notebook shows beside the cell (the fresh run numbers cells anew).
        shown = stored.cells[index].get("execution_count") if index is not None and index < len(stored.cells) else None
        examples.append(replace(example, group_stdout=group, unchecked=why, execution_count=shown))
    return examples


def _unchecked_reason(saved: nbformat.NotebookNode, fresh: nbformat.NotebookNode, call: dict[str, Any],
                      printing_calls: int) -> str:
    """Why a call's saved output cannot be compared, should it turn out that it cannot."""
    if not saved.get("outputs") and saved.get("execution_count") is None:
        return "its cell has no saved output (it was not run before the notebook was saved)"
    if not saved.get("outputs"):  # `y = f(21)`: it ran and showed nothing
        return (f"its cell ran (In [{saved['execution_count']}]) but its saved output shows nothing (end the "
                "cell with the call, or with the variable that holds its result, to have it compared)")
    if call.get("via"):
        return f"its cell called it through {call['via']}, so the cell shows all the calls' results together"
    if call.get("stdout") and printing_calls > 1:
        return f"{printing_calls} calls printed into one output, which also holds other text"
    if call.get("stdout"):
        return "what it printed is only part of its cell's output"
    return "its result is not its cell's output (the cell shows something else, or nothing)"


def _stdout(cell: nbformat.NotebookNode) -> str:
    return "".join(o.get("text", "") for o in cell.get("outputs", [])
                   if o.get("output_type") == "stream" and o.get("name") == "stdout")


def _result_text(cell: nbformat.NotebookNode) -> str | None:
    for output in cell.get("outputs", []):
        if output.get("output_type") == "execute_result":
            text = output.get("data", {}).get("text/plain")
            return "".join(text) if isinstance(text, list) else text
    return None
