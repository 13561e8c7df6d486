"""Where there is no Docker daemon: one engine seam, and the house-price notebook built and
smoke-passed with each backend that runs here — the Docker Engine API (local; Podman's
Docker-compatible service; a remote engine over ssh://), Podman without a daemon, Buildah —
an image Podman built pushed, pulled by digest into Docker and tested there, and Buildah run as
a user with no daemon socket and no privileges (the JupyterHub-pod case).

The private Podman store comes from scripts/podman.sh, the loopback sshd from conftest."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import tempfile
import textwrap
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from tests.conftest import NOTEBOOKS, ROOT, Built, cli, run_cli

HOUSE = NOTEBOOKS / "house_prices.ipynb"


def test_an_engine_that_is_not_there_fails_in_one_paragraph_before_the_notebook_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # neither podman nor buildah
    monkeypatch.delenv("NB2CONTAINER_ENGINE", raising=False)
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-engine.sock")
    for engine in ("podman", "buildah"):
        result = cli("build", HOUSE, "--engine", engine, "--output", tmp_path / "build")
        assert result.returncode == 1, result.stderr
        assert f"--engine {engine}: `{engine}` is not installed here" in result.stderr
        assert "Running" not in result.stderr and "Traceback" not in result.stderr
    result = cli("build", HOUSE, "--output", tmp_path / "build")  # --engine auto
    assert result.returncode == 1 and "No container engine answers here" in result.stderr
    assert all(f"{name}:" in result.stderr for name in ("docker", "podman", "buildah")), result.stderr
    assert not (tmp_path / "build").exists()


def test_the_docker_engines_report_names_it(house_build: Built) -> None:
    assert house_build.report["engine"] == f"docker ({os.environ['DOCKER_HOST']})"


@pytest.fixture(scope="module")
def podman_service(podman_store: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Podman's Docker-compatible API on a socket of its own, over the private store."""
    socket = tmp_path_factory.mktemp("podman-service") / "podman.sock"
    process = subprocess.Popen(["podman", "system", "service", "--time=0", f"unix://{socket}"],
                               env={**os.environ, **podman_store}, stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            if socket.exists():
                break
            subprocess.run(["sleep", "0.1"], check=True)
        yield f"unix://{socket}"
    finally:
        process.terminate()
        process.wait(timeout=30)


@pytest.mark.parametrize("backend", ["podman", "buildah", "podman-service", "ssh"])
def test_the_house_price_image_builds_and_smoke_passes_with_each_backend(
    backend: str, podman_store: dict[str, str], request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    environment, flags, named = dict(podman_store), ["--engine", backend], backend
    if backend == "podman-service":
        environment["DOCKER_HOST"] = request.getfixturevalue("podman_service")
        flags, named = ["--engine", "docker"], f"docker ({environment['DOCKER_HOST']})"
    elif backend == "ssh":  # the private engine as a remote one: containers reached through it
        environment.update(request.getfixturevalue("ssh_engine"))
        flags, named = ["--engine", "docker"], f"docker ({environment['DOCKER_HOST']})"
    result = run_cli("build", HOUSE, *flags, "--tag", f"nb2c-test/house-{backend}:1", "--output", tmp_path / "build",
                     "--report", tmp_path / "report.json", env=environment)
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["engine"] == named and f"with {named}" in result.stderr
    assert report["smoke"]["passed"] == 3 and report["smoke"]["failed"] == 0 and not report["drift"]


def test_a_podman_built_image_pulled_by_digest_into_docker_passes_nb2container_test(
    podman_store: dict[str, str], registry: str, docker_client: docker.DockerClient, tmp_path: Path
) -> None:
    result = run_cli("build", HOUSE, "--engine", "podman", "--tag", "nb2c-test/house-podman-pushed:1",
                     "--push", f"{registry}/house-podman", "--output", tmp_path / "build",
                     "--report", tmp_path / "report.json", env=podman_store)
    assert result.returncode == 0, result.stdout + result.stderr
    pushed = json.loads((tmp_path / "report.json").read_text())["pushed"]
    assert pushed.startswith(f"{registry}/house-podman@sha256:")
    docker_client.images.pull(pushed)  # by digest, into the Docker engine
    tested = run_cli("test", pushed, HOUSE, "--engine", "docker", "--report", tmp_path / "tested.json")
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert json.loads((tmp_path / "tested.json").read_text())["smoke"]["passed"] == 3
    # the registry's port differs per run: its tags would pile up in the private store
    subprocess.run(["podman", "untag", "nb2c-test/house-podman-pushed:1", f"{registry}/house-podman:1"],
                   env={**os.environ, **podman_store}, check=True, capture_output=True)
    docker_client.images.remove(pushed)


POD_USER = "nb2c-pod"  # created by scripts/podman.sh, with subordinate uid and gid ranges


@pytest.fixture
def pod_folder() -> Iterator[Path]:
    """A folder the pod user may enter (pytest's own temporary folders are root's alone)."""
    folder = Path(tempfile.mkdtemp(prefix="nb2c-pod-"))
    folder.chmod(0o755)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def test_buildah_builds_as_a_user_with_no_daemon_socket_and_no_privileges(
    podman_store: dict[str, str], docker_client: docker.DockerClient, pod_folder: Path
) -> None:
    """The JupyterHub-pod case: a user of its own, its own Python (Debian's 3.11.2; the dev Python
    lives under /root), its own storage (vfs, in its home), chroot isolation; no socket it may
    open. The base is the pod's: the seeded slim image with Debian's Python in place of its own."""
    try:
        pwd.getpwnam(POD_USER)
    except KeyError:
        pytest.fail(f"the user {POD_USER} is missing: run scripts/podman.sh")
    if not Path("/usr/bin/python3.11").is_file():
        pytest.skip("needs Debian's python3.11 (the pod user's Python)")
    home = pod_folder / "home"
    for folder in (home, pod_folder / "base", pod_folder / "work"):
        folder.mkdir()
    (pod_folder / "containers.conf").write_text("[containers]\ndefault_ulimits = []\n")
    with open(pod_folder / "base.tar", "wb") as archive:
        for chunk in docker_client.images.get("python:3.11.7-slim-bookworm").save(named=True):
            archive.write(chunk)
    context = pod_folder / "base"
    shutil.copy("/usr/bin/python3.11", context / "python3.11")
    shutil.copytree("/usr/lib/python3.11", context / "lib", symlinks=True)
    shutil.copytree("/usr/lib/python3/dist-packages/pip", context / "dist" / "pip", symlinks=True)
    (context / "Dockerfile").write_text(textwrap.dedent("""
        FROM python:3.11.7-slim-bookworm
        RUN rm -rf /usr/local/lib/python3.11 /usr/local/bin/python* /usr/local/lib/libpython*
        COPY python3.11 /usr/bin/python3.11
        COPY lib /usr/lib/python3.11
        COPY dist /usr/lib/python3/dist-packages
        RUN ln -s /usr/bin/python3.11 /usr/local/bin/python && ln -sf /usr/bin/python3.11 /usr/bin/python3
        """))
    shutil.copy(NOTEBOOKS / "zero_arguments.ipynb", pod_folder / "work")
    subprocess.run(["chown", "-R", POD_USER, str(pod_folder)], check=True)

    runuser = shutil.which("runuser") or "/usr/sbin/runuser"

    def as_pod_user(script: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
        environment = {"PATH": "/usr/bin:/bin", "HOME": str(home), "NB2C_CACHE_DIR": str(home / "cache"),
                       "CONTAINERS_CONF": str(pod_folder / "containers.conf"), "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
        # -m: runuser would set HOME to the user's own home, and Buildah's storage (vfs, a full copy
        # per layer) would stay in /var/lib/nb2c-pod run after run instead of going with this folder
        return subprocess.run([runuser, "-m", "-u", POD_USER, "--", "sh", "-c", script], env=environment,
                              capture_output=True, text=True, timeout=timeout, check=False)

    setup = as_pod_user(f"""set -e
        /usr/bin/python3 -m venv {home}/venv
        {home}/venv/bin/pip install -q {ROOT}
        buildah pull -q docker-archive:{pod_folder}/base.tar
        buildah bud --isolation chroot --pull-never -q -t nb2c-pod-base:1 {context}
        test ! -w /var/run/docker.sock && test ! -w {os.environ['DOCKER_HOST'].removeprefix('unix://')}
        """)
    assert setup.returncode == 0, setup.stdout + setup.stderr
    work = pod_folder / "work"
    build = as_pod_user(f"cd {work} && {home}/venv/bin/python -m nb2container build zero_arguments.ipynb "
                        f"--engine buildah --base-image localhost/nb2c-pod-base:1 --output {work / 'build'} "
                        f"--tag nb2c-test/pod:1 --report {work / 'report.json'}")
    assert build.returncode == 0, build.stdout + build.stderr
    assert (home / ".local/share/containers/storage/vfs").is_dir()  # removed with the folder, not kept per run
    report = json.loads((pod_folder / "work" / "report.json").read_text())
    assert report["engine"] == "buildah" and report["python"] == "3.11.2" and report["smoke"]["failed"] == 0
