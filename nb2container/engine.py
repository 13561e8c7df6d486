"""Docker behind a narrow interface: build a folder, tag, run a container that always cleans up."""

from __future__ import annotations

import contextlib
import io
import json
import os
import secrets
import socket
import tarfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import docker
import docker.errors
import docker.types
import requests

from nb2container.errors import BuildError, SmokeTestError, UsageError
from nb2container.model import BuiltImage, Usage
from nb2container.progress import Progress

_LOG_TAIL_LINES = 25


# A request made from inside the container, for an engine whose containers this machine cannot
# reach (a remote one): argv is port, timeout, method, path[, JSON body]; prints status and body.
_CLIENT = """import http.client, json, sys
port, timeout, method, path = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3], sys.argv[4]
try:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    connection.request(method, path, body=sys.argv[5].encode() if len(sys.argv) > 5 else None,
                       headers={"Content-Type": "application/json"})
    answer = connection.getresponse()
    print(json.dumps({"status": answer.status, "body": answer.read().decode()}))
except OSError:
    print(json.dumps({"status": 0, "body": ""}))
"""


@dataclass
class RunningContainer:
    """A container ``serve`` started, reached at ``url`` on this machine, or through the engine
    (``url`` empty: a remote engine, whose published ports are not on this machine's loopback)."""

    container: Any
    url: str
    started: float = 0.0  # time.monotonic() when it was started
    port: int = 8000  # the server's port inside the container

    def logs(self) -> str:
        return self.container.logs().decode(errors="replace")

    def status(self) -> str:
        self.container.reload()
        return str(self.container.status)

    def request(self, method: str, path: str, body: Any = None, timeout: float = 60) -> tuple[int, Any]:
        if self.url:
            return http_json(method, self.url + path, body, timeout)
        done = self.container.exec_run(request_inside(self.port, method, path, body, timeout))
        return answer_inside(bytes(done.output))

    def usage(self) -> Usage:
        """Memory peak and CPU time so far (cgroup v1 keeps the peak; v2 only the current use)."""
        try:  # one sample, at once: without one_shot the engine waits a second for a second one
            stats = self.container.client.api.stats(self.container.id, stream=False, one_shot=True)
        except docker.errors.InvalidVersion:  # an engine older than API 1.41
            stats = self.container.stats(stream=False)
        memory = stats.get("memory_stats", {})
        cpu = stats.get("cpu_stats", {}).get("cpu_usage", {})
        return Usage(int(memory.get("max_usage") or memory.get("usage") or 0),
                     cpu.get("total_usage", 0) / 1e9, time.monotonic() - self.started)


def request_inside(port: int, method: str, path: str, body: Any, timeout: float) -> list[str]:
    """The command that makes a request from inside the container (to its own loopback)."""
    return ["python", "-I", "-S", "-c", _CLIENT, str(port), str(timeout), method, path,
            *([] if body is None else [json.dumps(body)])]


def answer_inside(output: bytes) -> tuple[int, Any]:
    """What ``request_inside`` printed, as (status, decoded answer); 0 when no answer came."""
    try:
        answer = json.loads(output.decode(errors="replace").strip().splitlines()[-1])
        return int(answer["status"]), _json(answer["body"].encode())
    except (ValueError, IndexError, KeyError, AttributeError):
        return 0, None


def http_json(method: str, url: str, body: Any = None, timeout: float = 60) -> tuple[int, Any]:
    """A JSON request to a container this machine reaches: (status, decoded answer); 0 when none came."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, _json(response.read())
    except urllib.error.HTTPError as error:
        return error.code, _json(error.read())
    except OSError:
        return 0, None


def _json(raw: bytes) -> Any:
    try:
        return json.loads(raw or b"null")
    except ValueError:
        return None


@dataclass(frozen=True)
class ImageFacts:
    id: str
    repo_digest: str | None  # sha256:... of the manifest, when it came from (or went to) a registry


@dataclass
class JobResult:
    exit_code: int
    logs: str
    fetched: bytes | None  # the file the job was asked to leave, or None when it wrote none


# Every container this process starts carries its owner, so that a cancelled build (a signal can
# land between the engine creating a container and this process learning its id) removes them all.
OWNER_LABEL = "io.nb2container.owner"
OWNER = f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(4)}"


class Engine:
    """The Docker Engine API (the docker SDK): a local Docker, Podman's Docker-compatible service, or a
    remote engine named by DOCKER_HOST (ssh://user@host, tcp:// with TLS)."""

    def __init__(self, client: docker.DockerClient | None = None) -> None:
        host = os.environ.get("DOCKER_HOST", "")
        # An engine reached over ssh, or over tcp on another machine, runs containers whose ports are
        # not on this machine's loopback: the smoke test reaches them through the engine.
        self.remote = host.startswith("ssh://") or (
            host.startswith("tcp://") and host[6:].split(":")[0] not in ("127.0.0.1", "localhost"))
        self.name = f"docker ({host})" if host else "docker"
        try:
            # ssh://: paramiko, with the user's ~/.ssh/config, known_hosts and agent. (The docker SDK's
            # use_ssh_client mode breaks its pipe when an exec's stream closes, as the smoke test's do.)
            self.client = client or docker.from_env()
            self.client.ping()
        except docker.errors.DockerException as exc:
            where = f"DOCKER_HOST={os.environ['DOCKER_HOST']}" if os.environ.get("DOCKER_HOST") else \
                "the default socket (/var/run/docker.sock)"
            raise BuildError(
                f"No Docker engine answers at {where}, and nb2container needs one to build and test "
                "the image. Start Docker (Docker Desktop on a laptop; `sudo systemctl start docker` on "
                "Linux), or point DOCKER_HOST at an engine you can reach (for example "
                "`export DOCKER_HOST=ssh://you@build-host`), then build again. `nb2container render` "
                "writes the build folder without an engine."
            ) from exc

    def build(self, folder: Path, progress: Progress, platform: str | None = None) -> BuiltImage:
        """Build ``folder`` untagged (the tag is given only to an image that passed its smoke test)."""
        log: list[str] = []
        image_id = None
        try:
            stream = self.client.api.build(path=str(folder), rm=True, forcerm=True, decode=True, pull=False,
                                           platform=platform)
            for chunk in stream:
                if "error" in chunk:
                    step = next((line for line in reversed(log) if line.startswith("Step ")), None)
                    where = f" at {step.split(' : ', 1)[0].lower()} (`{step.split(' : ', 1)[-1][:120]}`)" \
                        if step else ""
                    raise BuildError(
                        f"The image did not build{where}: {chunk['error'].strip()}."
                        f"{self._platform_hint(platform)} The build folder {folder} is kept as it "
                        "was, to rebuild with `docker build` once fixed.",
                        log_tail(log),
                    )
                for line in chunk.get("stream", "").splitlines():
                    log.append(line)
                    progress.log(line)
                    if line.startswith("Step "):
                        progress.detail(line)
                image_id = chunk.get("aux", {}).get("ID", image_id)
        except docker.errors.APIError as exc:
            raise BuildError(f"The Docker engine refused the build: {exc.explanation}", log_tail(log)) from None
        if not image_id:
            raise BuildError("The build ended without an image.", log_tail(log))
        image = self.client.images.get(image_id)
        return self._built(image).counted(log, "Step ")

    def _platform_hint(self, platform: str | None) -> str:
        machine = str(self.client.info().get("Architecture", ""))
        native = {"x86_64": "linux/amd64", "aarch64": "linux/arm64"}.get(machine, machine)
        if not platform or platform == native:
            return ""
        return (f" This engine runs {native} and has no base image or emulation for {platform}: build "
                f"{platform} images on an engine of that CPU, or install QEMU binfmt handlers.")

    def tag(self, image_id: str, tag: str) -> None:
        repository, version = split_tag(tag)
        try:
            self.client.images.get(image_id).tag(repository, version)
        except docker.errors.DockerException as exc:
            raise BuildError(f"The engine could not tag the image {image_id[:19]} as {tag}: {exc}.") from None

    def push(self, image_id: str, repository: str, version: str, progress: Progress) -> str:
        """Tag ``image_id`` as REPOSITORY:VERSION, push it, and return the pushed digest."""
        self.tag(image_id, f"{repository}:{version}")
        progress.step(f"Pushing {repository}:{version}")
        digest = None
        try:
            for event in self.client.api.push(repository, tag=version, stream=True, decode=True):
                if "error" in event:
                    raise BuildError(
                        f"The push of {repository}:{version} failed: {event['error']}. The image stays "
                        "tagged locally; check that the registry is reachable from the engine and that "
                        "you are logged in to it (docker login), then push again.")
                if event.get("status") and event.get("id"):
                    progress.log(f"{event['id']}: {event['status']}")
                digest = (event.get("aux") or {}).get("Digest") or digest
        except docker.errors.APIError as exc:
            raise BuildError(f"The push of {repository}:{version} failed: {exc.explanation}.") from None
        if not digest:
            raise BuildError(f"The registry took {repository}:{version} but named no digest.")
        return str(digest)

    def inspect(self, reference: str) -> BuiltImage:
        try:
            image = self.client.images.get(reference)
        except docker.errors.ImageNotFound:
            raise SmokeTestError(f"The engine has no image {reference}. Build it first.") from None
        except docker.errors.DockerException as exc:
            raise SmokeTestError(f"The engine could not look up the image {reference}: {exc}.") from None
        return self._built(image)

    @staticmethod
    def _built(image: Any) -> BuiltImage:
        return BuiltImage(id=image.id, size_bytes=int(image.attrs["Size"]),
                          layers=tuple(image.attrs.get("RootFS", {}).get("Layers") or ()))

    def inspect_image(self, reference: str) -> ImageFacts:
        """An image the build will use (a base): UsageError naming it when the engine lacks it."""
        try:
            image = self.client.images.get(reference)
        except docker.errors.ImageNotFound:
            raise UsageError(f"The engine has no image {reference}. Pull it (docker pull {reference}) or build it, "
                             "then build again; nb2container never pulls a base by itself.") from None
        except docker.errors.DockerException as exc:
            raise BuildError(f"The engine could not look up the image {reference}: {exc}.") from None
        digests = [d.split("@", 1)[1] for d in image.attrs.get("RepoDigests") or [] if "@" in d]
        return ImageFacts(image.id, digests[0] if digests else None)

    def run_command(self, image: str, command: list[str], network: bool = True) -> str:
        """Run a one-off command in the image and return its output."""
        try:
            output = self.client.containers.run(image, command, remove=True, stdout=True, stderr=True,
                                                network_mode=None if network else "none")
        except docker.errors.ContainerError as exc:
            stderr = exc.stderr.decode(errors="replace").strip() if isinstance(exc.stderr, bytes) else ""
            raise BuildError(f"`{' '.join(command)}` failed in the image {image[:19]} (exit {exc.exit_status})"
                             + (f": {stderr.splitlines()[-1]}" if stderr else ".")) from None
        except docker.errors.DockerException as exc:
            raise BuildError(f"The engine could not run `{' '.join(command)}` in {image[:19]}: {exc}.") from None
        return bytes(output).decode()

    def run_job(self, image: str, command: list[str], *, files: bytes, fetch: str, user: str, working_dir: str,
                environment: dict[str, str], timeout: float) -> JobResult:
        """Run ``command`` to its end without a network, after ``files`` (a tar) are put at /; return its
        exit code, its log and the file ``fetch`` it wrote. The container is always removed."""
        try:
            container = self.client.containers.create(image, command, working_dir=working_dir, user=user,
                                                      network_mode="none", environment=environment,
                                                      labels={OWNER_LABEL: OWNER})
        except docker.errors.DockerException as exc:
            raise BuildError(f"The engine could not create a container of {image[:19]}: {exc}.") from None
        try:
            container.put_archive("/", files)
            container.start()
            exit_code = int(container.wait(timeout=timeout)["StatusCode"])
            logs = container.logs().decode(errors="replace")
            try:
                stream, _ = container.get_archive(fetch)
            except docker.errors.NotFound:
                return JobResult(exit_code, logs, None)
            with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as tar:
                member = tar.extractfile(tar.getmembers()[0])
                return JobResult(exit_code, logs, member.read() if member else None)
        except docker.errors.DockerException as exc:
            raise BuildError(f"`{' '.join(command)[:80]}` could not run in {image[:19]}: {exc}.") from None
        except requests.exceptions.ReadTimeout:
            raise BuildError(f"`{' '.join(command)[:80]}` did not finish in {timeout:.0f} s in {image[:19]}.") from None
        finally:
            with contextlib.suppress(docker.errors.DockerException):
                container.remove(force=True)

    def remove_owned(self) -> None:
        """Remove every container this process started (OWNER)."""
        for container in self.client.containers.list(all=True, filters={"label": f"{OWNER_LABEL}={OWNER}"}):
            with contextlib.suppress(docker.errors.NotFound):
                container.remove(force=True)

    def remove_image(self, image_id: str, prune: bool = True) -> None:
        with contextlib.suppress(docker.errors.NotFound):
            try:
                self.client.images.remove(image_id, force=True, noprune=not prune)
            except docker.errors.APIError as exc:
                raise BuildError(f"The engine could not remove the image {image_id[:19]}: {exc.explanation}.") from None

    @contextlib.contextmanager
    def serve(
        self, image: str, port: int, ready_timeout: float = 120, gpus: str | None = None,
        environment: dict[str, str] | None = None,
    ) -> Iterator[RunningContainer]:
        """Run ``image`` on a free loopback port until healthy; always removed afterwards.

        ``gpus`` ("all" or a count) asks the engine for GPUs, like ``docker run --gpus``.
        ``environment`` reaches only this container (the secrets of a smoke run), never the image.
        """
        host_port = free_port()
        devices = []
        if gpus:
            count = -1 if gpus == "all" else int(gpus)
            devices = [docker.types.DeviceRequest(count=count, capabilities=[["gpu"]])]
        try:
            container = self.client.containers.run(
                image, detach=True, ports=None if self.remote else {f"{port}/tcp": ("127.0.0.1", host_port)},
                labels={"io.nb2container.smoke": "1", OWNER_LABEL: OWNER}, device_requests=devices or None,
                environment=environment or None,
            )
        except docker.errors.APIError as exc:
            raise SmokeTestError(f"The engine could not start the image: {exc.explanation}"
                                 + (" (were GPUs asked for with --gpus on a machine without them?)"
                                    if gpus else "")) from None
        url = "" if self.remote else f"http://127.0.0.1:{host_port}"  # remote: reached through the engine
        running = RunningContainer(container, url, time.monotonic(), port)
        try:
            wait_ready(running, ready_timeout)
            yield running
        finally:
            with contextlib.suppress(docker.errors.APIError):
                container.remove(force=True)


class Served(Protocol):
    """What ``serve`` yields, whichever engine started it."""

    def logs(self) -> str: ...
    def status(self) -> str: ...
    def request(self, method: str, path: str, body: Any = None, timeout: float = 60) -> tuple[int, Any]: ...
    def usage(self) -> Usage: ...


def wait_ready(running: Served, timeout: float) -> None:
    """Until /ready answers 200; an error with the log's tail when the container stops or never is."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if running.status() in ("exited", "dead", "stopped", "gone"):
            raise SmokeTestError(
                "The container stopped before it was ready. Its log ends with:\n"
                + log_tail(running.logs().splitlines())
            )
        if running.request("GET", "/ready", timeout=2)[0] == 200:
            return
        time.sleep(0.1)  # a refused connection costs nothing; the smoke test waits on this
    raise SmokeTestError(
        f"The container was not ready after {timeout:.0f} s. Its log ends with:\n"
        + log_tail(running.logs().splitlines())
    )


def split_tag(tag: str) -> tuple[str, str]:
    """'registry:5000/repo:1.0' -> ('registry:5000/repo', '1.0'); no tag -> 'latest'."""
    repository, _, version = tag.rpartition(":") if ":" in tag.split("/")[-1] else (tag, "", "latest")
    return repository, version or "latest"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def log_tail(lines: list[str]) -> str:
    return "\n".join(lines[-_LOG_TAIL_LINES:])
