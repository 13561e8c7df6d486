"""The one engine seam: what the pipeline asks of a container engine, and which engine it gets.

Backends: the Docker Engine API (``engine.Engine``: a local Docker, Podman's Docker-compatible
service, or a remote engine that DOCKER_HOST names, ssh:// or tcp://), and the daemonless
command lines (``podman.PodmanEngine``, ``podman.BuildahEngine``). The pipeline, the smoke
test, the drift check, --verify-notebook, the base's inspection and push go through this
protocol only; ``deploy --swarm`` is Docker's own and uses the Docker engine.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from nb2container.engine import Engine, ImageFacts, JobResult, Served
from nb2container.errors import BuildError, Nb2ContainerError, UsageError
from nb2container.model import BuiltImage
from nb2container.podman import BuildahEngine, PodmanEngine
from nb2container.progress import Progress

# `--engine auto` tries these in this order and takes the first that answers (README: "Where is
# your engine?"): a Docker API first (it may be Podman's service), then Podman, then Buildah.
AUTO_ORDER = ("docker", "podman", "buildah")
BACKENDS: dict[str, Callable[[], ContainerEngine]] = {
    "docker": Engine, "podman": PodmanEngine, "buildah": BuildahEngine}


class ContainerEngine(Protocol):
    name: str

    def build(self, folder: Path, progress: Progress, platform: str | None = None) -> BuiltImage: ...
    def tag(self, image_id: str, tag: str) -> None: ...
    def push(self, image_id: str, repository: str, version: str, progress: Progress) -> str: ...
    def inspect(self, reference: str) -> BuiltImage: ...
    def inspect_image(self, reference: str) -> ImageFacts: ...
    def remove_image(self, image_id: str, prune: bool = True) -> None: ...  # prune: untagged parents too
    def remove_owned(self) -> None: ...  # every container this process started (a cancelled build)
    def run_command(self, image: str, command: list[str], network: bool = True) -> str: ...
    def run_job(self, image: str, command: list[str], *, files: bytes, fetch: str, user: str, working_dir: str,
                environment: dict[str, str], timeout: float) -> JobResult: ...
    def serve(self, image: str, port: int, ready_timeout: float = 120, gpus: str | None = None,
              environment: dict[str, str] | None = None) -> contextlib.AbstractContextManager[Served]: ...


def connect(choice: str) -> ContainerEngine:
    """The engine ``--engine`` names; ``auto``: the first of AUTO_ORDER that answers. One paragraph,
    before the notebook runs, when none does."""
    if choice != "auto":
        return BACKENDS[choice]()
    why: list[str] = []
    for name in AUTO_ORDER:
        try:
            return BACKENDS[name]()
        except Nb2ContainerError as exc:
            why.append(f"{name}: {str(exc).split('. ')[0]}")
    raise BuildError("No container engine answers here, and nb2container needs one to build and test the image ("
                     + "; ".join(why) + "). Start Docker (Docker Desktop on a laptop; `sudo systemctl start docker` "
                     "on Linux), point DOCKER_HOST at an engine you can reach (`export DOCKER_HOST=ssh://you@"
                     "build-host`), or install Podman or Buildah, then build again. `nb2container render` writes "
                     "the build folder without an engine.")


def connect_if_any(choice: str) -> ContainerEngine | None:
    """An engine for what can use one without needing it (`render` inspecting the base)."""
    try:
        return connect(choice)
    except (BuildError, UsageError):
        return None



def clean_up_after_interrupt(choice: str) -> None:
    """After Ctrl-C or a cancel (SIGTERM): a container the interruption caught being made, whose id
    never came back, is removed with the rest of this process's (``remove_owned``)."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # nothing cuts the clean-up short
    with contextlib.suppress(Nb2ContainerError):
        connect(choice).remove_owned()
