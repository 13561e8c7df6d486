"""The container proves the notebook: mismatches, golden tests for engineering, JUnit (real engine)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from xml.etree import ElementTree

import docker
import pytest

from nb2container.engine import Engine
from tests.conftest import NOTEBOOKS, Built, run_cli

SWAPPED = "nb2c-test/house-swapped:latest"


@pytest.fixture(scope="module")
def swapped_image(house_build: Built, docker_client: docker.DockerClient,
                  tmp_path_factory: pytest.TempPathFactory) -> str:
    """The house-price build folder with another model in place of the notebook's, built as is."""
    joblib = pytest.importorskip("joblib")
    ensemble = pytest.importorskip("sklearn.ensemble")
    folder = tmp_path_factory.mktemp("swapped") / "build"
    shutil.copytree(house_build.folder, folder)
    other = ensemble.RandomForestRegressor(n_estimators=3, random_state=0).fit(
        [[900, 1], [1500, 3], [2500, 4], [3500, 5]], [100_000, 200_000, 300_000, 400_000])
    joblib.dump(other, folder / "artifacts/model.joblib")
    docker_client.images.build(path=str(folder), tag=SWAPPED, rm=True)
    return SWAPPED


def golden(folder: Path, image: str) -> subprocess.CompletedProcess[str]:
    """The exported golden tests, run with plain pytest against a container of ``image``."""
    with Engine().serve(image, 8000) as running:
        return subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(folder / "tests")],
            env={**os.environ, "BASE_URL": running.url}, capture_output=True, text=True, check=False,
        )


def test_exported_golden_tests_pass_against_the_image(house_build: Built) -> None:
    result = golden(house_build.folder, house_build.tag)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "4 passed" in result.stdout  # the health check and the notebook's three calls


def test_exported_golden_tests_fail_against_a_swapped_artifact(house_build: Built, swapped_image: str) -> None:
    result = golden(house_build.folder, swapped_image)
    assert result.returncode == 1
    assert "3 failed, 1 passed" in result.stdout
    assert "predict_price(1500, 3): expected 245500.0" in result.stdout


def test_a_container_that_differs_is_a_mismatch_with_both_values(swapped_image: str, tmp_path: Path) -> None:
    junit = tmp_path / "smoke.xml"
    outcome = run_cli("test", swapped_image, NOTEBOOKS / "house_prices.ipynb", "--junit", junit)
    assert outcome.returncode == 1
    mismatches = [line for line in outcome.stdout.splitlines() if ": MISMATCH " in line]
    assert len(mismatches) == 3
    assert "predict_price(1500, 3): the container answered" in mismatches[0]
    assert "where the notebook's code gives 245500.0" in mismatches[0]
    assert "STALE" not in outcome.stdout
    suite = ElementTree.parse(junit).getroot().find("testsuite")
    # the health check, three calls, and the verdict
    assert suite is not None and suite.get("tests") == "5" and suite.get("failures") == "4"
    names = [case.get("name") for case in suite.iter("testcase")]
    assert "cell 6 [In 5]: predict_price(1500, 3)" in names  # one way to name a cell (issue 26)


def test_verify_notebook_reruns_it_inside_the_image_and_reports_each_cell(house_build: Built, tmp_path: Path) -> None:
    junit = tmp_path / "verify.xml"
    outcome = run_cli("test", house_build.tag, NOTEBOOKS / "house_prices.ipynb", "--verify-notebook",
                      "--junit", junit)
    assert outcome.returncode == 0, outcome.stdout + outcome.stderr
    assert "7 cell(s) passed, 0 failed" in outcome.stdout
    suites = ElementTree.parse(junit).getroot().findall("testsuite")
    # the smoke test (health, calls, verdict), then the notebook's code cells
    assert [s.get("tests") for s in suites] == ["5", "7"]


def test_verify_notebook_fails_when_a_stored_output_is_edited(house_build: Built, tmp_path: Path) -> None:
    import nbformat

    nb = nbformat.read(NOTEBOOKS / "house_prices.ipynb", as_version=4)
    (result,) = [o for o in nb.cells[5].outputs if o.output_type == "execute_result"]
    result.data["text/plain"] = "999999.0"
    edited = tmp_path / "house_prices.ipynb"
    nbformat.write(nb, edited)
    outcome = run_cli("test", house_build.tag, edited, "--verify-notebook")
    assert outcome.returncode == 1
    assert "cell 6 [In 5]: FAILED" in outcome.stdout and "999999.0" in outcome.stdout
    assert "6 cell(s) passed, 1 failed" in outcome.stdout
    assert "re-run inside the image's environment, the notebook does not reproduce its stored outputs" \
        in outcome.stderr


def test_verify_notebook_runs_cells_that_import_more_than_the_function_needs(
        tmp_path: Path, docker_client: docker.DockerClient) -> None:
    """Issue 26: an unrelated `import pandas` cell failed the re-run (the image holds only the
    function's closure) and the verdict blamed the notebook. The sibling now installs what the
    cells import, at the kernel's versions; the served image still has no pandas."""
    import nbformat
    from nbformat.v4 import new_code_cell, new_notebook

    pytest.importorskip("pandas", reason="the unrelated cell imports pandas (the notebooks' extra)")
    nb = new_notebook(cells=[new_code_cell("%load_ext nb2container"),
                             new_code_cell("import pandas as pd\nlen(pd.DataFrame({'a': [1, 2]}))"),
                             new_code_cell("def double(x: int) -> int:\n    return 2 * x"),
                             new_code_cell("double(21)")])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.validate(nb)
    from nbclient import NotebookClient
    NotebookClient(nb, timeout=120, resources={"metadata": {"path": str(tmp_path)}}).execute()
    nbformat.write(nb, tmp_path / "doubling.ipynb")
    tag = "nb2c-test/doubling:latest"
    outcome = run_cli("build", tmp_path / "doubling.ipynb", "--function", "double", "--tag", tag,
                      "--output", tmp_path / "build", "--verify-notebook")
    assert outcome.returncode == 0, outcome.stdout + outcome.stderr
    assert "the notebook's cells also import: " in outcome.stderr and "pandas " in outcome.stderr
    assert "3 cell(s) passed, 0 failed" in outcome.stdout  # the %load_ext cell is skipped
    assert "pandas" not in (tmp_path / "build/requirements.lock").read_text()
    found = docker_client.containers.run(tag, ["python", "-c", "import importlib.util as u; "
                                               "print(u.find_spec('pandas') is None)"], remove=True)
    assert bytes(found).decode().strip() == "True"
    docker_client.images.remove(tag)
