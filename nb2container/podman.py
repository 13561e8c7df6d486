"""Daemonless engines: Podman, and Buildah for the build (with Podman to run the image when it is
there), through their command lines. The same Dockerfile and build folder as the Docker engine's;
images land in the user's containers/storage (Podman's and Buildah's alike, ``localhost/NAME``).

Their configuration is the user's own (``containers.conf``, ``storage.conf``, or the files that
``CONTAINERS_CONF`` and ``CONTAINERS_STORAGE_CONF`` name); nb2container never writes it.
"""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from nb2container.engine import (
    OWNER,
    OWNER_LABEL,
    ImageFacts,
    JobResult,
    answer_inside,
    log_tail,
    request_inside,
    wait_ready,
)
from nb2container.errors import BuildError, SmokeTestError, UsageError
from nb2container.model import BuiltImage, Usage
from nb2container.progress import Progress


def _run(command: list[str], what: str, timeout: float | None = None, stdin: bytes | None = None,
         check: bool = True) -> subprocess.CompletedProcess[bytes]:
    try:
        done = subprocess.run(command, input=stdin, capture_output=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise BuildError(f"{what} did not finish in {timeout:.0f} s (`{' '.join(command[:4])} ...`).") from None
    if check and done.returncode != 0:
        error = done.stderr.decode(errors="replace").strip().splitlines()
        raise BuildError(f"{what} failed (`{' '.join(command[:3])} ...`, exit {done.returncode})"
                         + (f": {error[-1]}" if error else "."))
    return done


@dataclass
class PodmanContainer:
    """A container ``serve`` started, with no network: requests reach its server from inside it
    (``podman exec``), so the smoke test needs no port on this machine and no slirp4netns in a
    rootless pod."""

    id: str
    port: int
    started: float

    def logs(self) -> str:
        done = _run(["podman", "logs", self.id], "podman logs", check=False)
        return (done.stdout + done.stderr).decode(errors="replace")

    def usage(self) -> Usage:
        done = _run(["podman", "stats", "--no-stream", "--no-reset", "--format", "json", self.id],
                    "podman stats", check=False)
        try:
            stats = json.loads(done.stdout or b"[]")[0]
        except (ValueError, IndexError):
            stats = {}
        return Usage(int(_bytes(stats.get("mem_usage", "0").split("/")[0])), _seconds(stats.get("cpu_time", "0s")),
                     time.monotonic() - self.started)

    def status(self) -> str:
        done = _run(["podman", "inspect", "--format", "{{.State.Status}}", self.id], "podman inspect", check=False)
        return done.stdout.decode().strip() or "gone"

    def request(self, method: str, path: str, body: object = None, timeout: float = 60) -> tuple[int, object]:
        done = _run(["podman", "exec", self.id, *request_inside(self.port, method, path, body, timeout)],
                    "A request to the container", timeout=timeout + 30, check=False)
        return answer_inside(done.stdout)


def _bytes(text: str) -> float:
    units = {"b": 1, "kb": 1e3, "mb": 1e6, "gb": 1e9, "kib": 2**10, "mib": 2**20, "gib": 2**30}
    number = "".join(c for c in text if c.isdigit() or c == ".")
    unit = "".join(c for c in text if c.isalpha()).lower() or "b"
    return float(number or 0) * units.get(unit, 1)


def _seconds(text: str) -> float:
    try:
        return float(text.rstrip("s")) if text.endswith("s") and not text.endswith("ms") else 0.0
    except ValueError:
        return 0.0


class PodmanEngine:
    """Podman without a daemon: ``podman build`` and ``podman run``."""

    name = "podman"
    cli = "podman"  # what tags, pushes and removes images in the store
    builder: tuple[str, ...] = ("podman", "build")

    def __init__(self) -> None:
        for tool in self.tools():
            if shutil.which(tool) is None:
                raise UsageError(self.missing(tool))
        done = _run(["podman", "info", "--format", "json"] if "podman" in self.tools() else
                    ["buildah", "info"], f"{self.name} info", timeout=60, check=False)
        if done.returncode != 0:
            error = done.stderr.decode(errors="replace").strip().splitlines()
            raise UsageError(f"{self.name} is installed but does not work here"
                             + (f" ({error[-1]})" if error else "") + ". " + self.advice())

    def tools(self) -> tuple[str, ...]:
        return ("podman",)

    def missing(self, tool: str) -> str:
        return (f"--engine {self.name}: `{tool}` is not installed here. Install it (Debian and Ubuntu: "
                f"apt-get install {tool}), or choose another engine with --engine.")

    def advice(self) -> str:
        return ("Check `podman info`; where setting resource limits is not permitted, a containers.conf "
                "(or the one CONTAINERS_CONF names) needs `[containers] default_ulimits = []`.")

    # --- build ---------------------------------------------------------------------------------

    def build(self, folder: Path, progress: Progress, platform: str | None = None) -> BuiltImage:
        with tempfile.TemporaryDirectory(prefix="nb2c-build-") as scratch:
            iidfile = Path(scratch) / "iid"
            command = [*self.builder, *self.build_flags(), "--pull=never", "--iidfile", str(iidfile),
                       *(["--platform", platform] if platform else []), str(folder)]
            log: list[str] = []
            process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            assert process.stdout is not None
            for line in process.stdout:
                line = line.rstrip("\n")
                log.append(line)
                progress.log(line)
                if line.startswith("STEP "):
                    progress.detail(line)
            if process.wait() != 0 or not iidfile.is_file():
                step = next((line for line in reversed(log) if line.startswith("STEP ")), None)
                where = f" at {step.split(':', 1)[0].lower()} (`{step.split(': ', 1)[-1][:120]}`)" if step else ""
                error = next((line for line in reversed(log) if line.startswith(("Error", "error"))), log[-1:] or [""])
                raise BuildError(f"The image did not build with {self.name}{where}: {str(error).strip()}. The build "
                                 f"folder {folder} is kept as it was, to rebuild once fixed.",
                                 log_tail(log))
            image_id = iidfile.read_text().strip().removeprefix("sha256:")
        return self.inspect(image_id).counted(log, "STEP ")

    def build_flags(self) -> list[str]:
        return []

    # --- images --------------------------------------------------------------------------------

    def _image(self, reference: str) -> dict[str, object] | None:
        done = _run(["podman", "image", "inspect", reference], "podman image inspect", check=False)
        try:
            return dict(json.loads(done.stdout)[0]) if done.returncode == 0 else None
        except (ValueError, IndexError):
            return None

    def inspect(self, reference: str) -> BuiltImage:
        image = self._image(reference)
        if image is None:
            raise SmokeTestError(f"{self.name} has no image {reference}. Build it first.")
        layers = image.get("RootFS", {}).get("Layers") or ()  # type: ignore[attr-defined]
        return BuiltImage(id=str(image["Id"]), size_bytes=int(str(image.get("Size", 0))), layers=tuple(layers))

    def inspect_image(self, reference: str) -> ImageFacts:
        image = self._image(reference)
        if image is None:
            raise UsageError(f"{self.name} has no image {reference}. Pull it ({self.name} pull {reference}) or load "
                             "it, then build again; nb2container never pulls a base by itself.")
        digests = [str(d).split("@", 1)[1] for d in image.get("RepoDigests") or [] if "@" in str(d)]  # type: ignore[attr-defined]
        return ImageFacts(str(image["Id"]), digests[0] if digests else None)

    def tag(self, image_id: str, tag: str) -> None:
        _run([self.cli, "tag", image_id, tag], f"Tagging the image as {tag}")

    def remove_image(self, image_id: str, prune: bool = True) -> None:  # rmi has no noprune
        _run([self.cli, "rmi", "--force", image_id], f"{self.cli} rmi", check=False)

    def push(self, image_id: str, repository: str, version: str, progress: Progress) -> str:
        self.tag(image_id, f"{repository}:{version}")
        progress.step(f"Pushing {repository}:{version} with {self.name}")
        host = repository.split("/", 1)[0]
        loopback = host.split(":")[0] in ("localhost", "127.0.0.1") or host.startswith("127.")
        with tempfile.TemporaryDirectory(prefix="nb2c-push-") as scratch:
            digestfile = Path(scratch) / "digest"
            done = _run([self.cli, "push", *(["--tls-verify=false"] if loopback else []), "--digestfile",
                         str(digestfile), f"{repository}:{version}"], f"The push of {repository}:{version}",
                        timeout=1800, check=False)
            if done.returncode != 0 or not digestfile.is_file():
                error = done.stderr.decode(errors="replace").strip().splitlines()
                raise BuildError(f"The push of {repository}:{version} failed: {error[-1] if error else 'no digest'}. "
                                 "The image stays tagged locally; check that the registry is reachable and that "
                                 f"you are logged in to it ({self.name} login), then push again.")
            return digestfile.read_text().strip()

    # --- containers ----------------------------------------------------------------------------

    def run_command(self, image: str, command: list[str], network: bool = True) -> str:
        done = _run(["podman", "run", "--rm", *([] if network else ["--network", "none"]), image, *command],
                    f"`{' '.join(command)[:60]}` in the image {image[:19]}", check=False)
        if done.returncode != 0:
            error = done.stderr.decode(errors="replace").strip().splitlines()
            raise BuildError(f"`{' '.join(command)[:80]}` failed in the image {image[:19]} (exit {done.returncode})"
                             + (f": {error[-1]}" if error else "."))
        return (done.stdout + done.stderr).decode(errors="replace")

    def run_job(self, image: str, command: list[str], *, files: bytes, fetch: str, user: str, working_dir: str,
                environment: dict[str, str], timeout: float) -> JobResult:
        flags = [f"--env={k}={v}" for k, v in environment.items()]
        created = _run(["podman", "create", "--network", "none", "--user", user, "--workdir", working_dir, *flags,
                        "--label", f"{OWNER_LABEL}={OWNER}", image, *command], "Creating the job's container")
        container = created.stdout.decode().strip()
        try:
            _run(["podman", "cp", "-", f"{container}:/"], "Copying the job's files in", stdin=files)
            _run(["podman", "start", container], "Starting the job")
            waited = _run(["podman", "wait", container], "The job", timeout=timeout)
            logs = _run(["podman", "logs", container], "podman logs", check=False)
            out = _run(["podman", "cp", f"{container}:{fetch}", "-"], "Copying the job's results out", check=False)
            fetched = None
            if out.returncode == 0 and out.stdout:
                with tarfile.open(fileobj=io.BytesIO(out.stdout)) as tar:
                    member = tar.extractfile(tar.getmembers()[0])
                    fetched = member.read() if member else None
            output = (logs.stdout + logs.stderr).decode(errors="replace")
            return JobResult(int(waited.stdout.decode().strip() or 1), output, fetched)
        finally:
            _run(["podman", "rm", "--force", container], "podman rm", check=False)

    def remove_owned(self) -> None:
        """Remove every container this process started (OWNER)."""
        listed = _run(["podman", "ps", "--all", "--quiet", "--filter", f"label={OWNER_LABEL}={OWNER}"],
                      "podman ps", check=False)
        for container in listed.stdout.decode().split():
            _run(["podman", "rm", "--force", container], "podman rm", check=False)

    @contextlib.contextmanager
    def serve(self, image: str, port: int, ready_timeout: float = 120, gpus: str | None = None,
              environment: dict[str, str] | None = None) -> Iterator[PodmanContainer]:
        flags = [f"--env={k}={v}" for k, v in (environment or {}).items()]
        if gpus:
            flags += ["--device", "nvidia.com/gpu=all"]  # CDI, as Podman names NVIDIA's GPUs
        done = _run(["podman", "run", "--detach", "--network", "none", "--label", "io.nb2container.smoke=1",
                     "--label", f"{OWNER_LABEL}={OWNER}", *flags, image], "Starting the image", check=False)
        if done.returncode != 0:
            error = done.stderr.decode(errors="replace").strip().splitlines()
            raise SmokeTestError(f"{self.name} could not start the image: {error[-1] if error else 'no reason given'}")
        running = PodmanContainer(done.stdout.decode().strip(), port, time.monotonic())
        try:
            wait_ready(running, ready_timeout)
            yield running
        finally:
            _run(["podman", "rm", "--force", running.id], "podman rm", check=False)


class BuildahEngine(PodmanEngine):
    """Buildah builds (no daemon, no privileges: chroot isolation, the user's storage); Podman, when
    it is there, runs the image for the smoke test from the same storage."""

    name = "buildah"
    cli = "buildah"
    builder: tuple[str, ...] = ("buildah", "bud")

    def _image(self, reference: str) -> dict[str, object] | None:
        done = _run(["buildah", "images", "--json", "--no-trunc", reference], "buildah images", check=False)
        try:
            found = json.loads(done.stdout)[0] if done.returncode == 0 else None
        except (ValueError, IndexError):
            return None
        return None if found is None else {"Id": found["id"], "Size": int(_bytes(str(found.get("size", "0"))))}

    def tools(self) -> tuple[str, ...]:
        return ("buildah",)

    def build_flags(self) -> list[str]:
        return ["--isolation", "chroot", "--layers"]  # --layers: reuse unchanged steps, as Podman does

    def advice(self) -> str:
        return ("Check `buildah info`. In a pod without privileges Buildah needs the vfs storage driver (or "
                "fuse-overlayfs with /dev/fuse), chroot isolation, and a user namespace or to run as root in "
                "the pod; ask the cluster admin for those, or build on a machine with an engine.")

    def _podman(self, step: str) -> None:
        if shutil.which("podman") is None:
            raise SmokeTestError(f"Buildah built the image, and {step} needs a container runtime to run it, which "
                                 "this machine lacks: install podman beside buildah (they share the image store), "
                                 "or build with --no-smoke and test the image where it runs (nb2container test).")

    def run_command(self, image: str, command: list[str], network: bool = True) -> str:
        self._podman("the drift check")
        return super().run_command(image, command, network)

    def run_job(self, image: str, command: list[str], *, files: bytes, fetch: str, user: str, working_dir: str,
                environment: dict[str, str], timeout: float) -> JobResult:
        self._podman("--verify-notebook")
        return super().run_job(image, command, files=files, fetch=fetch, user=user, working_dir=working_dir,
                               environment=environment, timeout=timeout)

    @contextlib.contextmanager
    def serve(self, image: str, port: int, ready_timeout: float = 120, gpus: str | None = None,
              environment: dict[str, str] | None = None) -> Iterator[PodmanContainer]:
        self._podman("the smoke test")
        with super().serve(image, port, ready_timeout, gpus, environment) as running:
            yield running
