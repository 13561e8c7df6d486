"""Shared fixtures. Engine tests use the private engine at DOCKER_HOST (scripts/engine.sh);
the house-price image is built once per session and shared."""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import pytest
import requests

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
# Below this much free space under the engine's data root, builds fail half-way with errors
# that hide the cause; say so once instead.
MIN_FREE_BYTES = 8 * 2**30


def tidy_engine() -> None:
    """Remove the images that lost their tag (rebuilt tags, failed builds, removed pushes).

    The suite builds a few dozen images per run into the private engine, whose data root
    outlives every clone; without this each run left gigabytes behind until the disk filled.
    Only those older than 10 minutes: a build in another session holds its image untagged
    until the smoke test passes, and must not lose it."""
    # No engine here: the engine tests skip or fail on their own. A prune of many images can
    # outlast the client's minute: tidying is not a test, so it waits longer and never fails the run.
    with contextlib.suppress(docker.errors.DockerException, requests.exceptions.RequestException):
        docker.from_env(timeout=600).images.prune(filters={"dangling": True, "until": "10m"})


def pytest_sessionstart(session: pytest.Session) -> None:
    tidy_engine()


# Builds record themselves as runs (runs.py) under Jupyter's data directory by default: the
# tests' builds go to a folder of their own, never into the user's.
os.environ.setdefault("NB2CONTAINER_RUNS_DIR", tempfile.mkdtemp(prefix="nb2c-test-runs-"))


# Tests are marked by what they need: `engine` (the private Docker engine) and `kernel` (a real
# Jupyter kernel, no engine); unmarked ones need neither. A test that asks for one of these
# fixtures is marked by it whether or not its module says so, so that the fast tier
# (-m "not engine") can never start a build.
ENGINE_FIXTURES = frozenset({"docker_client", "notebook_builds", "house_build", "registry", "faults",
                             "batched_house", "magic_run", "podman_store", "ssh_engine"})
KERNEL_FIXTURES = frozenset({"stdlib_capture"})


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        used = set(getattr(item, "fixturenames", ()))
        if ENGINE_FIXTURES & used:
            item.add_marker(pytest.mark.engine)
        if KERNEL_FIXTURES & used:
            item.add_marker(pytest.mark.kernel)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    tidy_engine()


@dataclass
class CliResult:
    returncode: int
    stdout: str
    stderr: str


def run_cli(*args: str | Path, cwd: Path | None = None, env: dict[str, str] | None = None) -> CliResult:
    """Run the real command line in a subprocess, as a user would (``env`` added to this one's)."""
    done = subprocess.run(
        [sys.executable, "-m", "nb2container", *map(str, args)],
        capture_output=True, text=True, cwd=cwd or ROOT, check=False, env={**os.environ, **(env or {})},
    )
    return CliResult(done.returncode, done.stdout, done.stderr)


def cli(*args: str | Path, cwd: Path | None = None) -> CliResult:
    """The command line run in this process (its imports paid once): for the fast tier, where a
    subprocess's two seconds of start-up would dominate. Same argv, output and exit code."""
    from nb2container import cli as command_line

    out, err, here = io.StringIO(), io.StringIO(), Path.cwd()
    os.chdir(cwd or ROOT)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = command_line.main([str(arg) for arg in args])
    except SystemExit as exit_:  # argparse's refusals
        code = exit_.code if isinstance(exit_.code, int) else 2
    finally:
        os.chdir(here)
    return CliResult(code, out.getvalue(), err.getvalue())



@pytest.fixture
def shell() -> Iterator[Any]:
    """A fresh IPython shell in this process (history in memory), as a kernel holds one."""
    from IPython.core.interactiveshell import InteractiveShell
    from traitlets.config import Config

    config = Config()
    config.HistoryManager.hist_file = ":memory:"
    InteractiveShell.clear_instance()
    yield InteractiveShell.instance(config=config)
    InteractiveShell.clear_instance()

@pytest.fixture(scope="session")
def docker_client() -> docker.DockerClient:
    try:
        client = docker.from_env()
        client.ping()
    except docker.errors.DockerException as exc:
        if os.environ.get("NB2C_REQUIRE_ENGINE"):
            pytest.fail(f"the private engine is required but does not answer: {exc}")
        pytest.skip('no Docker engine: run eval "$(scripts/engine.sh)" first')
    data_root = Path(str(client.info().get("DockerRootDir", "")))
    if data_root.is_dir() and (free := shutil.disk_usage(data_root).free) < MIN_FREE_BYTES:
        pytest.fail(f"only {free / 2**30:.1f} GiB are free under the engine's data root {data_root}; "
                    f"the image builds need about {MIN_FREE_BYTES / 2**30:.0f} GiB. Free space there "
                    "(docker image prune -a removes every image no container uses), then run the tests again.")
    return client


@dataclass
class Built:
    result: CliResult
    report: dict[str, Any]
    folder: Path
    tag: str


class NotebookBuilds:
    """Each notebook in notebooks/ built at most once per session, on first use."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.done: dict[str, Built] = {}

    def __call__(self, notebook: str) -> Built:
        if notebook not in self.done:
            stem = Path(notebook).stem
            work = self.root / stem
            work.mkdir(parents=True, exist_ok=True)
            tag = f"nb2c-test/{stem.replace('_', '-')}:latest"
            result = run_cli("build", NOTEBOOKS / notebook, "--tag", tag,
                             "--output", work / "build", "--report", work / "report.json")
            assert result.returncode == 0, result.stdout + result.stderr
            report = json.loads((work / "report.json").read_text())
            self.done[notebook] = Built(result, report, work / "build", tag)
        return self.done[notebook]


@pytest.fixture(scope="session")
def notebook_builds(
    docker_client: docker.DockerClient, tmp_path_factory: pytest.TempPathFactory
) -> NotebookBuilds:
    return NotebookBuilds(tmp_path_factory.mktemp("builds"))


@pytest.fixture(scope="session")
def house_build(notebook_builds: NotebookBuilds) -> Built:
    return notebook_builds("house_prices.ipynb")


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real registry on loopback (Debian's docker-registry, installed by scripts/setup-dev.sh);
    the engine treats 127.0.0.0/8 registries as insecure, so plain HTTP is fine."""
    import urllib.request

    from nb2container.engine import free_port

    binary = shutil.which("docker-registry")
    if binary is None:
        pytest.fail("docker-registry is missing: run scripts/setup-dev.sh")
    folder = tmp_path_factory.mktemp("registry")
    address = f"127.0.0.1:{free_port()}"
    (folder / "config.yml").write_text(
        f"version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {folder / 'data'}\n"
        f"http:\n  addr: {address}\n")
    process = subprocess.Popen([binary, "serve", str(folder / "config.yml")], stdout=subprocess.DEVNULL,
                               stderr=open(folder / "registry.log", "w"))  # noqa: SIM115 - lives as long as the process
    try:
        for _ in range(100):
            try:
                with urllib.request.urlopen(f"http://{address}/v2/", timeout=1):
                    break
            except OSError:
                time.sleep(0.1)
        yield address
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture(scope="session")
def stdlib_capture(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Any, Any]:
    """A real capture and freeze of a notebook that needs no package (a real kernel, no engine
    needed), for tests that render it: (Capture, FrozenEnvironment, the server's pins)."""
    from nb2container import pipeline
    from nb2container.options import Options
    from nb2container.progress import SilentProgress

    options = Options(notebook=NOTEBOOKS / "zero_arguments.ipynb")
    progress = SilentProgress()
    capture = pipeline.capture_function(pipeline.notebook_capturer(options, progress), options, progress,
                                        tmp_path_factory.mktemp("staging"))
    frozen = pipeline._freeze(capture, options, progress, None)
    return capture, frozen, pipeline.server_runtime(frozen.python_version, options.platform, progress)


@pytest.fixture(scope="session")
def podman_store() -> dict[str, str]:
    """The private Podman/Buildah configuration and store (scripts/podman.sh, run by scripts/test.sh)."""
    found = {name: os.environ[name] for name in ("CONTAINERS_CONF", "CONTAINERS_STORAGE_CONF") if name in os.environ}
    if len(found) < 2 or not shutil.which("podman") or not shutil.which("buildah"):
        if os.environ.get("NB2C_REQUIRE_ENGINE"):
            pytest.fail("the private Podman store is required: run eval \"$(scripts/podman.sh)\" first")
        pytest.skip('no private Podman store: run eval "$(scripts/podman.sh)" first')
    return found


@pytest.fixture(scope="session")
def ssh_engine(docker_client: docker.DockerClient,
               tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """The private engine as a remote one: an sshd of its own on loopback (its own keys and config),
    whose sessions get DOCKER_HOST of the private engine; and a HOME of its own whose ~/.ssh holds
    the client key's config and the known host, as a user's would (nothing of the real user's).
    Yields the environment for the CLI."""
    from nb2container import cache
    from nb2container.engine import free_port

    sshd = shutil.which("sshd") or "/usr/sbin/sshd"
    if not Path(sshd).is_file():
        pytest.fail("sshd is missing: run scripts/setup-dev.sh")
    folder = tmp_path_factory.mktemp("ssh")
    home = folder / "home"
    (home / ".ssh").mkdir(parents=True)
    for key in ("host_key", "client_key"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(folder / key)], check=True)
    (folder / "authorized_keys").write_text((folder / "client_key.pub").read_text())
    port = free_port()
    Path("/run/sshd").mkdir(exist_ok=True)  # sshd's privilege separation directory
    (folder / "sshd_config").write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {folder / 'host_key'}\n"
        f"AuthorizedKeysFile {folder / 'authorized_keys'}\nPasswordAuthentication no\n"
        f"PermitRootLogin prohibit-password\nStrictModes no\nUsePAM no\nPidFile {folder / 'sshd.pid'}\n"
        f"SetEnv DOCKER_HOST={os.environ['DOCKER_HOST']}\n")
    host_key = (folder / "host_key.pub").read_text().split()
    (home / ".ssh" / "known_hosts").write_text(f"[127.0.0.1]:{port} {host_key[0]} {host_key[1]}\n")
    (home / ".ssh" / "config").write_text(
        f"Host 127.0.0.1\n  IdentityFile {folder / 'client_key'}\n"
        f"  UserKnownHostsFile {home / '.ssh' / 'known_hosts'}\n  StrictHostKeyChecking yes\n  BatchMode yes\n")
    process = subprocess.Popen([sshd, "-D", "-e", "-f", str(folder / "sshd_config")],
                               stderr=open(folder / "sshd.log", "w"))  # noqa: SIM115 - lives as long as sshd
    try:
        for _ in range(50):
            done = subprocess.run(["ssh", "-F", str(home / ".ssh" / "config"), "-p", str(port), "root@127.0.0.1",
                                   "docker", "version"], capture_output=True, check=False)
            if done.returncode == 0:
                break
            time.sleep(0.2)
        else:
            pytest.fail(f"the loopback sshd does not answer: {done.stderr.decode()[-500:]}")
        # The wheel cache stays the real one: only ~/.ssh is the remote user's own.
        yield {"DOCKER_HOST": f"ssh://root@127.0.0.1:{port}", "HOME": str(home),
               "NB2C_CACHE_DIR": str(cache.wheels().parent)}
    finally:
        process.terminate()
        process.wait(timeout=10)
