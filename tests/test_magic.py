"""``%containerize`` in real kernels (nbclient), against the real private engine."""

from __future__ import annotations

import contextlib
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
    """The example notebook up to its own %containerize, then ``source``."""
    nb = nbformat.read(MAGIC_NOTEBOOK, as_version=4)
    first = next(i for i, cell in enumerate(nb.cells) if cell.cell_type == "code" and "%containerize" in cell.source)
    nb.cells[first:] = [new_code_cell(source)]
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
    nb = with_last_cell("import time\nstarted = time.monotonic()\n"
                        "build = %containerize predict_progression --tag nb2c-test/magic:latest "
                        f"--output {work / 'build'}\n"
                        "returned = time.monotonic() - started\nbuild")
    nb.cells.append(new_code_cell("print('the kernel is free:', build.done, build.ok, build.image)"))
    nb.cells.append(new_code_cell("result = build.wait()\nresult"))
    nb.cells.append(new_code_cell("print(result.image, result.ok, result.report.smoke.passed, build.done, build.ok)\n"
                                  "print(f'{returned:.1f}')"))
    execute(nb, elsewhere, env={"NB2CONTAINER_RUNS_DIR": str(work / "runs")})
    return {"nb": nb, "work": work}


def test_magic_returns_at_once_and_the_kernel_runs_other_cells(magic_run: dict[str, Any]) -> None:
    magic_cell, next_cell, wait_cell, check_cell = magic_run["nb"].cells[-4:]
    handle = next(o for o in magic_cell.outputs if o.output_type == "execute_result").data["text/plain"]
    assert "in the background (run " in handle and "`.wait()` returns the result" in handle
    assert outputs(next_cell).strip() == "the kernel is free: False None None"  # the build still ran
    printed = outputs(check_cell).strip().splitlines()
    assert printed[0] == "nb2c-test/magic:latest True 2 True True"
    assert float(printed[1]) < 10, "the capture held the kernel longer than seconds"
    summary = next(o for o in wait_cell.outputs if o.output_type == "execute_result").data
    assert "reproduces the notebook: 2 of 2 calls match" in summary["text/plain"]


def test_magic_shows_progress_and_a_passing_smoke_table(magic_run: dict[str, Any]) -> None:
    """The cell's live display follows the build process, then shows the verdict in place."""
    magic_cell = magic_run["nb"].cells[-4]
    progress, summary = (o for o in magic_cell.outputs if o.output_type == "display_data")
    assert "✓ Building the image" in progress.data["text/plain"]
    assert "✓ Tagged nb2c-test/magic:latest" in progress.data["text/plain"]
    assert "Full build log" in progress.data["text/html"]
    assert "reproduces the notebook: 2 of 2 calls match" in summary.data["text/plain"]
    assert summary.data["text/html"].count("✓</span>") == 2  # one mark per replayed call
    assert "nb2c-test/magic:latest" in summary.data["text/html"]


def test_magic_builds_are_recorded_as_runs(magic_run: dict[str, Any], docker_client: docker.DockerClient) -> None:
    listed = run_cli("runs", "--runs-dir", magic_run["work"] / "runs")
    assert listed.returncode == 0, listed.stderr
    row = listed.stdout.splitlines()[1].split()
    assert row[1:4] == ["(live", "kernel)", "predict_progression"]  # then the date and time it started
    size = docker_client.images.get("nb2c-test/magic:latest").attrs["Size"]
    assert row[6:] == ["ok", "nb2c-test/magic:latest", f"{size / 1e6:,.0f}", "MB"]  # the size the engine reports
    shown = run_cli("runs", "--runs-dir", magic_run["work"] / "runs", "show", row[0][:15])
    assert "==> Capturing `predict_progression` from this kernel" in shown.stdout
    assert "\nok: reproduces " in shown.stdout, shown.stdout
    spec = json.loads((magic_run["work"] / "build/app/spec.json").read_text())
    assert spec["notebook"] == "unsaved notebook"


def test_a_rebuild_after_an_edit_reuses_what_did_not_change_and_says_so(
        docker_client: docker.DockerClient, tmp_path: Path) -> None:
    """The second %containerize of one kernel, after the function's body was edited: the freeze is
    reused (the environment's fingerprint is unchanged), and only the steps from the function's
    files on are built again."""
    build = f"--output {tmp_path / 'build'} --tag nb2c-test/magic-rebuild:latest"
    nb = with_last_cell(f"%containerize predict_progression {build} --wait")
    nb.cells.append(new_code_cell(
        "def predict_progression(age, sex, bmi, bp, s1=0.0, s2=0.0, s3=0.0, s4=0.0, s5=0.0, s6=0.0):\n"
        "    predicted = model.predict([[age, sex, bmi, bp, s1, s2, s3, s4, s5, s6]])[0]  # edited\n"
        "    return round(float(predicted), 3)"))
    nb.cells.append(new_code_cell(f"rebuilt = %containerize predict_progression {build}\nrebuilt.wait().ok"))
    # The process kept ready since the last build takes the kernel's environment as it is now.
    nb.cells.append(new_code_cell(
        "%env DOCKER_HOST=unix:///nonexistent\n"
        f"elsewhere = %containerize predict_progression {build} --engine docker\n"
        "try:\n    elsewhere.wait()\nexcept Exception as error:\n    print(error)"))
    execute(nb, tmp_path, env={"NB2CONTAINER_RUNS_DIR": str(tmp_path / "runs")})
    assert "No Docker engine answers at DOCKER_HOST=unix:///nonexistent" in outputs(nb.cells[-1])
    nb.cells.pop()
    assert outputs(nb.cells[-1]).strip().endswith("True"), outputs(nb.cells[-1])
    second = sorted((tmp_path / "runs").iterdir())[-2]
    events = [json.loads(line) for line in (second / "events.jsonl").read_text().splitlines()]
    reused = [event["text"] for event in events if event["kind"] == "reused"]
    assert reused[0].startswith("the freeze of an earlier build"), reused
    cached, steps = map(int, reused[1].split()[0:3:2])  # "20 of 23 build steps from the engine's cache"
    assert steps - cached <= 3, reused  # the function's files, the user and the labels
    # the cell's display keeps them with their steps
    display = next(o for o in nb.cells[-1].outputs if o.output_type == "display_data").data["text/plain"]
    assert "(reused the freeze of an earlier build" in display and "build steps from the engine's cache)" in display


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
    nbformat.write(with_last_cell(f"%containerize predict_progression --no-build --wait --output {tmp_path / 'magic'}"),
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
        new_code_cell(f"%containerize echo --wait --tag nb2c-test/echo:latest --output {tmp_path / 'echo'}"),
        new_code_cell(f"%containerize echo --wait --platform linux/arm64 --output {tmp_path / 'arm'}"),
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
        new_code_cell(f"%containerize scale --wait --tag nb2c-test/scale:latest --output {tmp_path / 'scale'} "
                      """--example '{"x": 5, "factor": 3}'"""),
    ])
    execute(nb, tmp_path)
    summary = outputs(nb.cells[-1])
    assert "scale(10)" in summary and "scale(21)" in summary and "scale(x=5, factor=3)" in summary
    assert "3 of 3 calls match" in summary


def test_one_build_of_a_function_at_a_time_and_a_cancelled_one_leaves_nothing(
    docker_client: docker.DockerClient, tmp_path: Path
) -> None:
    tag = "nb2c-test/cancelled:latest"
    with contextlib.suppress(docker.errors.ImageNotFound):  # a tag an earlier run left must not pass for this one's
        docker_client.images.remove(tag)
    before = {c.id for c in docker_client.containers.list(all=True)}
    nb = new_notebook(cells=[
        new_code_cell("%load_ext nb2container"),
        new_code_cell("def echo(x):\n    return x"),
        new_code_cell("echo(1)"),
        new_code_cell(f"build = %containerize echo --tag {tag} --output {tmp_path / 'build'}"),
        new_code_cell(f"%containerize echo --tag {tag} --output {tmp_path / 'other'}"),  # refused: one at a time
        # Cancelled as its smoke container starts: the hardest moment to leave nothing behind.
        new_code_cell("import time\nfrom nb2container import runs\n"
                      "while not build.done and not any(e['text'].startswith('Smoke test') "
                      "for e in runs.events(build.run.folder)):\n    time.sleep(0.05)\n"
                      "build.cancel()\n"
                      "print(build.done, build.ok, build.image, runs.read_info(build.run.folder).state)"),
        new_code_cell("build.wait()"),
    ])
    execute(nb, tmp_path, env={"NB2CONTAINER_RUNS_DIR": str(tmp_path / "runs")}, allow_errors=True)
    refused, cancelled, waited = nb.cells[4:]
    message = stderr(refused)
    assert message.startswith("UsageError: `echo` is already being built from this notebook (run "), message
    assert outputs(cancelled).strip() == "True False None cancelled"
    assert "The build was cancelled: no container is left, and nothing was tagged." in stderr(waited)
    with pytest.raises(docker.errors.ImageNotFound):
        docker_client.images.get(tag)
    assert {c.id for c in docker_client.containers.list(all=True)} <= before
    assert not (tmp_path / "other").exists()
