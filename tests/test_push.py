"""--push: after a passing smoke test, the image goes to a real registry; pulled back by digest
on an engine that no longer has it, it passes the smoke test again."""

from __future__ import annotations

import json
from pathlib import Path

import docker
import pytest
import yaml

from tests.conftest import NOTEBOOKS, run_cli


def test_pushed_image_pulled_by_digest_on_a_clean_engine_passes_the_smoke_test(
    registry: str, docker_client: docker.DockerClient, tmp_path: Path
) -> None:
    repository = f"{registry}/nb2c/zero-arguments"
    notebook = NOTEBOOKS / "zero_arguments.ipynb"
    built = run_cli("build", notebook, "--tag", "nb2c-test/pushed:1.0", "--output", tmp_path / "build",
                    "--report", tmp_path / "report.json", "--push", repository)
    assert built.returncode == 0, built.stdout + built.stderr
    report = json.loads((tmp_path / "report.json").read_text())
    pushed = report["pushed"]
    assert pushed.startswith(f"{repository}@sha256:") and f"Pushed: {pushed}" in built.stdout
    deployment = yaml.safe_load((tmp_path / "build/deploy/k8s/deployment.yaml").read_text())
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == pushed  # by digest

    docker_client.images.remove(report["image_id"], force=True)  # every tag, and the image itself
    with pytest.raises(docker.errors.ImageNotFound):
        docker_client.images.get(report["image_id"])
    pulled = docker_client.images.pull(pushed)
    assert pulled.id == report["image_id"]  # the very image that passed
    tested = run_cli("test", pushed, notebook)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "OK:" in tested.stdout


def test_nothing_is_pushed_when_the_build_fails(registry: str, tmp_path: Path) -> None:
    result = run_cli("build", NOTEBOOKS / "zero_arguments.ipynb", "--output", tmp_path / "build",
                     "--platform", "linux/arm64", "--push", f"{registry}/nb2c/never")  # this engine is amd64
    assert result.returncode != 0
    import urllib.request

    with urllib.request.urlopen(f"http://{registry}/v2/_catalog", timeout=5) as response:
        assert "nb2c/never" not in json.loads(response.read())["repositories"]
