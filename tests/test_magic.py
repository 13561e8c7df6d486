"""``%containerize`` in real kernels (nbclient), against the real private engine."""

from __future__ import annotations

import json
import os
import urllib.request
from pathlib import Path
from typing import Any

import docker
import nbformat
import pytest
from nbclient import NotebookClient
from nbformat.v4 import new_code_cell, new_notebook

from nb2container.compare import parse_display_text
from nb2container.engine import Engine
from tests.conftest import NOTEBOOKS, run_cli

MAGIC_NOTEBOOK = NOTEBOOKS / "containerize_magic.ipynb"


def execute(nb: nbformat.NotebookNode, cwd: Path, env: dict[str, str] | None = None,
            allow_errors: bool = False) -> nbformat.NotebookNode:
    """Run ``nb`` in a real kernel whose working directory is ``cwd``."""
    client = NotebookClient(nb, timeout=600, allow_errors=allow_errors,
                            resources={"metadata": {"path": str(cwd)}})
    client.execute(env={**os.environ, **(env or {})})
    return nb


def with_last_cell(source: str) -> nbformat.NotebookNode:
    nb = nbformat.read(MAGIC_NOTEBOOK, as_version=4)
    nb.cells[-1] = new_code_cell(source)
    return nb


def stderr(cell: nbformat.NotebookNode) -> str:
    return "".join(o.text for o in cell.outputs if o.output_type == "stream" and o.name == "stderr")


def outputs(cell: nbformat.NotebookNode, mime: str = "text/plain") -> str:
    return "\n".join(str(o.get("data", {}).get(mime, o.get("text", ""))) for o in cell.outputs)


@pytest.fixture(scope="module")
def magic_run(docker_client: docker.DockerClient, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The example notebook run in a kernel started elsewhere than the notebook, never saved."""
    work = tmp_path_factory.mktemp("magic")
    elsewhere = work / "kernel-cwd"
    elsewhere.mkdir()
    nb = with_last_cell(f"result = %containerize predict_progression --tag nb2c-test/magic:latest "
                        f"--output {work / 'build'}\nresult")
    nb.cells.append(new_code_cell("print(result.image, result.ok, result.report.smoke.passed)"))
    execute(nb, elsewhere)
    return {"nb": nb, "work": work}


def test_magic_shows_progress_and_a_passing_smoke_table(magic_run: dict[str, Any]) -> None:
    nb = magic_run["nb"]
    magic_cell, check_cell = nb.cells[-2], nb.cells[-1]
    progress = [o for o in magic_cell.outputs if o.output_type == "display_data"]
    assert progress and "✓ Building the image" in progress[0].data["text/plain"]
    assert "Full build log" in progress[0].data["text/html"]
    summary = next(o for o in magic_cell.outputs if o.output_type == "execute_result").data
    assert "reproduces the notebook: 2 of 2 calls match" in summary["text/plain"]
    assert summary["text/html"].count("✓</span>") == 2  # one mark per replayed call
    assert "nb2c-test/magic:latest" in summary["text/html"]
    assert outputs(check_cell).strip() == "nb2c-test/magic:latest True 2"
    spec = json.loads((magic_run["work"] / "build/app/spec.json").read_text())
    assert spec["notebook"] == "unsaved notebook"


def test_magic_image_answers_like_the_notebook(magic_run: dict[str, Any]) -> None:
    stored = nbformat.read(MAGIC_NOTEBOOK, as_version=4).cells[4]
    assert stored.source.startswith("predict_progression(0.03")
    with Engine().serve("nb2c-test/magic:latest", 8000) as running:
        request = urllib.request.Request(
            running.url + "/predict", data=json.dumps([0.03, 0.05, 0.06, 0.02]).encode(),
            headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as response:
            answer = json.loads(response.read())["result"]
    assert answer == parse_display_text(outputs(stored))


def test_magic_and_cli_give_the_same_lock_and_module(docker_client: docker.DockerClient, tmp_path: Path) -> None:
    copy = tmp_path / "diabetes.ipynb"
    nbformat.write(with_last_cell(f"%containerize predict_progression --no-build --output {tmp_path / 'magic'}"),
                   copy)
    # Jupyter tells the kernel which notebook it runs through JPY_SESSION_NAME.
    execute(nbformat.read(copy, as_version=4), tmp_path, env={"JPY_SESSION_NAME": str(copy)})
    result = run_cli("render", copy, "--function", "predict_progression", "--output", tmp_path / "cli")
    assert result.returncode == 0, result.stderr
    assert "skipped, because `nb2container build` is running this notebook" not in result.stdout
    for name in ("requirements.lock", "app/notebook_function.py"):
        assert (tmp_path / "magic" / name).read_bytes() == (tmp_path / "cli" / name).read_bytes(), name


def test_magic_refuses_plainly_and_checks_health_only_without_calls(
    docker_client: docker.DockerClient, tmp_path: Path
) -> None:
    nb = new_notebook(cells=[
        new_code_cell("%load_ext nb2container"),
        new_code_cell("def echo(x):\n    return x"),
        new_code_cell("%containerize nosuch"),
        new_code_cell(f"%containerize echo --tag nb2c-test/echo:latest --output {tmp_path / 'echo'}"),
        new_code_cell(f"%containerize echo --platform linux/arm64 --output {tmp_path / 'arm'}"),
        # What `%containerize?` pages: the docstring with the arguments magic_arguments adds.
        new_code_cell("print(get_ipython().find_line_magic('containerize').__doc__)"),
    ])
    execute(nb, tmp_path, allow_errors=True)
    unknown, health_only, failed_build, helped = nb.cells[2:]

    # IPython shows a UsageError as its one-paragraph message, with no traceback.
    message = stderr(unknown)
    assert message.startswith("UsageError: ") and "`nosuch`" in message and "`echo`" in message
    assert "Traceback" not in message and not any(o.output_type == "error" for o in unknown.outputs)

    summary = outputs(health_only)
    assert "No call of `echo` was recorded, so only the health check ran" in summary
    assert docker_client.images.get("nb2c-test/echo:latest")

    message = stderr(failed_build)
    assert message.startswith("UsageError: The image did not build at step")
    assert "Last lines of the build log:" in message and "linux/arm64" in message
    assert "Traceback" not in message

    help_text = outputs(helped)
    assert "Build a container image that serves FUNCTION" in help_text
    for flag in ("--tag", "--output", "--port", "--no-build", "--no-smoke", "--gpus", "--platform", "--example"):
        assert flag in help_text, flag


def test_magic_replays_earlier_calls_and_examples(docker_client: docker.DockerClient, tmp_path: Path) -> None:
    nb = new_notebook(cells=[
        new_code_cell("def scale(x, factor=2):\n    return x * factor"),
        new_code_cell("scale(10)"),  # before the extension: read back from history and Out
        new_code_cell("%load_ext nb2container"),
        new_code_cell("value = 21\nscale(value)"),  # recorded: arguments that are not literals
        new_code_cell(f"%containerize scale --tag nb2c-test/scale:latest --output {tmp_path / 'scale'} "
                      """--example '{"x": 5, "factor": 3}'"""),
    ])
    execute(nb, tmp_path)
    summary = outputs(nb.cells[-1])
    assert "scale(10)" in summary and "scale(21)" in summary and "scale(x=5, factor=3)" in summary
    assert "3 of 3 calls match" in summary
