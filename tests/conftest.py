"""Shared fixtures. Engine tests use the private engine at DOCKER_HOST (scripts/engine.sh);
the house-price image is built once per session and shared."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"


@dataclass
class CliResult:
    returncode: int
    stdout: str
    stderr: str


def run_cli(*args: str | Path, cwd: Path | None = None) -> CliResult:
    """Run the real command line in a subprocess, as a user would."""
    done = subprocess.run(
        [sys.executable, "-m", "nb2container", *map(str, args)],
        capture_output=True, text=True, cwd=cwd or ROOT, check=False,
    )
    return CliResult(done.returncode, done.stdout, done.stderr)


@pytest.fixture(scope="session")
def docker_client() -> docker.DockerClient:
    try:
        client = docker.from_env()
        client.ping()
    except docker.errors.DockerException as exc:
        if os.environ.get("NB2C_REQUIRE_ENGINE"):
            pytest.fail(f"the private engine is required but does not answer: {exc}")
        pytest.skip('no Docker engine: run eval "$(scripts/engine.sh)" first')
    return client


@dataclass
class Built:
    result: CliResult
    report: dict[str, Any]
    folder: Path
    tag: str


@pytest.fixture(scope="session")
def house_build(docker_client: docker.DockerClient, tmp_path_factory: pytest.TempPathFactory) -> Built:
    work = tmp_path_factory.mktemp("house")
    tag = "nb2c-test/house-prices:latest"
    result = run_cli("build", NOTEBOOKS / "house_prices.ipynb", "--tag", tag,
                     "--output", work / "build", "--report", work / "report.json")
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads((work / "report.json").read_text())
    return Built(result, report, work / "build", tag)
