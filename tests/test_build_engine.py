"""The spine end to end against the real private engine: build, smoke, and the image itself."""

from __future__ import annotations

import contextlib
import json
import platform
import urllib.request
from pathlib import Path

import docker
import nbformat
import pytest
from packaging.utils import canonicalize_name

from nb2container.compare import parse_display_text
from nb2container.engine import Engine, http_json
from tests.conftest import NOTEBOOKS, Built, run_cli


def stored_output(cell_number: int) -> str:
    nb = nbformat.read(NOTEBOOKS / "house_prices.ipynb", as_version=4)
    (result,) = [o for o in nb.cells[cell_number - 1].outputs if o.output_type == "execute_result"]
    return str(result.data["text/plain"])


def test_build_reports_a_passing_smoke_table(house_build: Built) -> None:
    report = house_build.report
    assert report["image"] == house_build.tag
    assert report["python"] == platform.python_version()
    assert report["smoke"]["failed"] == 0 and report["smoke"]["passed"] == 3
    assert report["smoke"]["health"] is True
    assert {"scikit-learn", "pandas", "numpy"} <= set(report["packages"])
    assert all(case["checked"] == "equal" for case in report["smoke"]["cases"])  # each saved output compared
    assert "predict_price(1500, 3)" in house_build.result.stdout
    assert "3 passed, 0 failed" in house_build.result.stdout


def test_build_folder_is_plain_docker(house_build: Built) -> None:
    folder = house_build.folder
    for name in ("Dockerfile", "README.md", "requirements.lock", "app/notebook_function.py",
                 "app/nb2c_wsgi.py", "app/nb2c_launcher.py", "server.lock", "app/spec.json", "artifacts/model.joblib"):
        assert (folder / name).is_file(), name
    dockerfile = (folder / "Dockerfile").read_text()
    assert f"FROM python:{platform.python_version()}-slim-bookworm" in dockerfile
    assert "--no-index" in dockerfile and "--require-hashes" in dockerfile
    assert "HEALTHCHECK" in dockerfile and "USER 10001" in dockerfile
    # The function's module comes last, so editing it rebuilds only the last layers.
    assert dockerfile.index("COPY --from=packages") < dockerfile.index("artifacts/") \
        < dockerfile.index("notebook_function.py")
    lock = (folder / "requirements.lock").read_text()
    wheels = list((folder / "wheels").glob("*.whl"))
    assert lock.count("--hash=sha256:") == len(wheels) == len(house_build.report["packages"])


def test_image_has_the_kernels_python_and_the_locks_versions(
    house_build: Built, docker_client: docker.DockerClient
) -> None:
    def run(*command: str) -> str:
        return bytes(docker_client.containers.run(house_build.tag, list(command), remove=True)).decode()

    assert run("python", "-V").strip() == f"Python {platform.python_version()}"
    probe = ("import importlib.metadata as m, json; "
             "print(json.dumps({d.metadata['Name']: d.version for d in m.distributions()}))")
    installed = {canonicalize_name(n): v for n, v in json.loads(run("python", "-c", probe)).items()}
    # exactly the lock: no pip, setuptools or wheel of the environment's own
    assert installed == {canonicalize_name(n): v for n, v in house_build.report["packages"].items()}
    assert run("id", "-u").strip() == "10001"


def test_running_image_answers_like_the_notebook(house_build: Built) -> None:
    with Engine().serve(house_build.tag, 8000) as running:  # waits until /ready answers 200
        base = running.url
        with urllib.request.urlopen(base + "/health", timeout=5) as response:
            assert response.status == 200
        with urllib.request.urlopen(base + "/openapi.json", timeout=5) as response:
            served = json.loads(response.read())
        assert served == json.loads((house_build.folder / "app/openapi.json").read_text())
        status, answer = http_json("POST", base + "/predict", {"area_sqft": 1500, "num_bedrooms": 3})
        assert status == 200 and answer["result"] == parse_display_text(stored_output(6))
        bad = urllib.request.Request(base + "/predict", data=b"{not json",  # raw: post_json sends JSON
                                     headers={"Content-Type": "application/json"})
        try:
            urllib.request.urlopen(bad, timeout=5)
            raise AssertionError("malformed JSON was accepted")
        except urllib.error.HTTPError as error:
            assert error.code == 400 and "error" in json.loads(error.read())
        status, answer = http_json("POST", base + "/predict", {"area_sqft": 1, "rooms": 2})
        assert status == 422 and "rooms" in answer["error"]


def test_a_stale_notebook_is_not_called_reproduced_unless_allowed(
    house_build: Built, docker_client: docker.DockerClient, tmp_path: Path
) -> None:
    nb = nbformat.read(NOTEBOOKS / "house_prices.ipynb", as_version=4)
    (result,) = [o for o in nb.cells[5].outputs if o.output_type == "execute_result"]
    result.data["text/plain"] = "999999.0"
    edited = tmp_path / "house_prices.ipynb"
    nbformat.write(nb, edited)
    tag = "nb2c-test/edited:latest"
    with contextlib.suppress(docker.errors.ImageNotFound):
        docker_client.images.remove(tag)
    refused = run_cli("build", edited, "--tag", tag, "--output", tmp_path / "refused",
                      "--report", tmp_path / "refused.json", "--junit", tmp_path / "refused.xml")
    assert refused.returncode == 1, refused.stdout + refused.stderr
    (stale,) = [line for line in refused.stdout.splitlines() if "STALE" in line]
    assert "predict_price(1500, 3)" in stale and "999999.0" in stale and "245500.0" in stale
    assert "before a change" in refused.stderr and "not seeded" in refused.stderr
    assert "--allow-stale" in refused.stderr and "Building the image" not in refused.stderr
    report = json.loads((tmp_path / "refused.json").read_text())
    assert report["verdict"]["ok"] is False and report["stale"]["count"] == 1 and report["image"] is None
    assert 'failures="1"' in (tmp_path / "refused.xml").read_text()
    with pytest.raises(docker.errors.ImageNotFound):
        docker_client.images.get(tag)

    allowed = run_cli("build", edited, "--tag", tag, "--output", tmp_path / "build", "--allow-stale",
                      "--report", tmp_path / "report.json")
    # The image matches the notebook's code; the notebook's saved output is what is out of date.
    assert allowed.returncode == 0, allowed.stdout + allowed.stderr
    assert "MISMATCH" not in allowed.stdout and "1 stale saved output(s) allowed" in allowed.stdout
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["smoke"]["stale"] == 1 and report["smoke"]["failed"] == 0
    assert report["stale"] == {"allowed": True, "count": 1, "cases": report["stale"]["cases"]}
    (case,) = report["stale"]["cases"]  # the replayed case itself, as smoke.cases has it (issue 26)
    assert case["passed"] is True and case["actual"] == 245500.0 and case in report["smoke"]["cases"]
    labels = docker_client.images.get(tag).labels
    assert "shipped with --allow-stale" in labels["io.nb2container.stale"]
    assert "Shipped with `--allow-stale`" in (tmp_path / "build/README.md").read_text()


def test_test_command_smokes_an_existing_image(house_build: Built) -> None:
    outcome = run_cli("test", house_build.tag, NOTEBOOKS / "house_prices.ipynb")
    assert outcome.returncode == 0, outcome.stderr
    assert "3 passed, 0 failed" in outcome.stdout
