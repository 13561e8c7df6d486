"""``nb2container deploy FOLDER --swarm``: run the build folder's service on a Docker Swarm.

The service is the one ``deploy/compose.yaml`` describes (image, port, healthcheck, read-only
root, user, stop grace period, start-first rolling updates that roll back on failure), created
or updated through the Engine API on the engine at hand. It returns once every replica of the
new version is running and healthy. It never turns an engine into a swarm unless asked.
"""

from __future__ import annotations

import hashlib
import os
import re
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import docker.errors
import docker.types
import yaml

from nb2container.engine import Engine
from nb2container.errors import BuildError, UsageError
from nb2container.progress import Progress
from nb2container.runtime.layout import IMAGE

_NS = 1_000_000_000


@dataclass(frozen=True)
class Deployed:
    service: str
    image: str
    replicas: int
    endpoint: str
    seconds: float  # until every replica of this version was healthy


def deploy(folder: Path, replicas: int | None, init_swarm: bool, progress: Progress,
           client: docker.DockerClient | None = None, timeout: float = 300, publish: int | None = None,
           endpoint_mode: str | None = None) -> Deployed:
    compose_file = folder / "deploy" / "compose.yaml"
    if not compose_file.is_file():
        raise UsageError(f"{folder} has no deploy/compose.yaml. Give the build folder nb2container "
                         "rendered (nb2container build NOTEBOOK --output FOLDER), not another one.")
    name, service = next(iter(yaml.safe_load(compose_file.read_text())["services"].items()))
    client = client or Engine().client  # Swarm is the Docker Engine API's own: that backend, its errors translated
    _ensure_swarm(client, init_swarm, progress)
    count = replicas or int(service.get("deploy", {}).get("replicas", 1))
    published, target = (int(p) for p in str(service["ports"][0]).split(":"))  # "8000:8000"
    published = publish or published
    mode = endpoint_mode or service.get("deploy", {}).get("endpoint_mode") or "vip"
    spec = _spec(name, service, count, published, target)
    secrets = _secret_variables(service)
    spec["env"] = [line for line in spec["env"] if line.split("=", 1)[0] not in secrets]
    spec["secrets"] = [_docker_secret(client, name, variable, value) for variable, value in secrets.items()]
    if mode == "dnsrr":  # no virtual IP, no routing mesh: each replica's address, by name, on the network
        network = _overlay_network(client, f"{name}-net", progress)
        spec |= {"endpoint_spec": docker.types.EndpointSpec(mode="dnsrr"), "networks": [network]}
    started = time.monotonic()
    try:
        existing = client.services.get(name)
    except docker.errors.NotFound:
        progress.step(f"Creating the swarm service {name} ({count} replicas of {service['image']})")
        client.services.create(**spec)
    else:
        progress.step(f"Rolling the swarm service {name} to {service['image']} ({count} replicas, start-first)")
        existing.update(**spec)
    _wait_healthy(client, name, service["image"], count, timeout, progress)
    seconds = time.monotonic() - started
    if mode == "dnsrr":
        return Deployed(name, service["image"], count, f"http://{name}:{target}/predict (DNS round-robin, from a "
                        f"container on the attachable network {name}-net)", seconds)
    if not _answers(f"http://127.0.0.1:{published}/health"):
        progress.warn(
            f"every replica is healthy, but the published port {published} does not answer on this node. "
            "The swarm's routing mesh needs the kernel's IPVS (the ip_vs module); without it, deploy with "
            "--endpoint-mode dnsrr and reach the replicas by name from the service's overlay network.")
    return Deployed(name, service["image"], count, f"http://127.0.0.1:{published}/predict", seconds)


def _overlay_network(client: docker.DockerClient, name: str, progress: Progress) -> str:
    """An attachable overlay network for a dnsrr service: clients join it to reach the replicas."""
    if not client.networks.list(names=[name]):
        progress.step(f"Creating the attachable overlay network {name}")
        client.networks.create(name, driver="overlay", attachable=True, scope="swarm")
    return name


def _answers(url: str, seconds: float = 5) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                return bool(response.status == 200)
        except OSError:
            time.sleep(0.5)
    return False


def _ensure_swarm(client: docker.DockerClient, init_swarm: bool, progress: Progress) -> None:
    state = client.info().get("Swarm", {}).get("LocalNodeState")
    if state == "active":
        return
    if not init_swarm:
        raise UsageError(
            "This Docker engine is not part of a swarm, and nb2container does not make it one on its "
            "own: that changes the engine for everything else it runs. Join it to your swarm, or pass "
            "--init-swarm to start a single-node swarm here.")
    progress.step("Starting a single-node swarm on this engine (--init-swarm)")
    client.swarm.init(advertise_addr="127.0.0.1", listen_addr="127.0.0.1:2377")


def _seconds(value: str | int | float) -> float:
    found = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m)?", str(value).strip())
    if not found:
        raise UsageError(f"deploy/compose.yaml: cannot read the duration {value!r}")
    number, unit = float(found.group(1)), found.group(2) or "s"
    return number * {"ms": 0.001, "s": 1, "m": 60}[unit]


def _secret_variables(service: dict[str, Any]) -> dict[str, str]:
    """The environment entries compose.yaml takes from the shell as ``${NAME:?...}``: the function's
    secrets. On a swarm they travel as Docker secrets, never in the service's environment, which
    `docker service inspect` shows to whoever can manage the swarm."""
    return {key: _interpolate(key, str(value)) for key, value in service.get("environment", {}).items()
            if re.fullmatch(r"\$\{\w+:\?.*\}", str(value))}


def _docker_secret(client: docker.DockerClient, service: str, variable: str,
                   value: str) -> docker.types.SecretReference:
    """A Docker secret holding ``value``, mounted at /run/secrets/VARIABLE for the image's user. Its name
    carries a digest of the value: a secret cannot change, so a new value is a new secret and the
    service rolls to it."""
    digest = hashlib.sha256(value.encode()).hexdigest()[:12]
    secret_name = f"{service}-{variable.lower()}-{digest}"
    try:
        secret = client.secrets.get(secret_name)
    except docker.errors.NotFound:
        secret = client.secrets.create(name=secret_name, data=value.encode(),
                                       labels={"io.nb2container.service": service})
    return docker.types.SecretReference(secret.id, secret_name, filename=variable,
                                        uid=str(IMAGE.uid), gid=str(IMAGE.gid), mode=0o400)


def _interpolate(key: str, value: str) -> str:
    """Compose's ``${NAME:?message}``: a secret the function reads, from this shell's environment."""
    found = re.fullmatch(r"\$\{(\w+)(?::\?(.*))?\}", value)
    if not found:
        return value
    variable = found.group(1)
    if variable not in os.environ:
        raise UsageError(f"deploy/compose.yaml reads {key} from the environment variable {variable}, which is "
                         f"not set ({found.group(2) or 'required'}). Export it in this shell, then deploy again.")
    return os.environ[variable]


def _spec(name: str, service: dict[str, Any], replicas: int, published: int, target: int) -> dict[str, Any]:
    deploy_section = service.get("deploy", {})
    update = deploy_section.get("update_config", {})
    rollback = deploy_section.get("rollback_config", {})
    health = service["healthcheck"]
    return {
        "image": service["image"],
        "name": name,
        "mode": docker.types.ServiceMode("replicated", replicas=replicas),
        "endpoint_spec": docker.types.EndpointSpec(ports={published: target}),
        "env": [f"{key}={_interpolate(key, str(value))}" for key, value in service.get("environment", {}).items()],
        "cap_drop": service.get("cap_drop"),
        "user": service.get("user"),
        "read_only": bool(service.get("read_only")),
        "stop_signal": service.get("stop_signal", "SIGTERM"),
        "stop_grace_period": int(_seconds(service.get("stop_grace_period", "10s")) * _NS),
        "healthcheck": docker.types.Healthcheck(
            test=health["test"], interval=int(_seconds(health["interval"]) * _NS),
            timeout=int(_seconds(health["timeout"]) * _NS), retries=int(health["retries"]),
            start_period=int(_seconds(health.get("start_period", "0s")) * _NS)),
        "update_config": docker.types.UpdateConfig(
            parallelism=int(update.get("parallelism", 1)), delay=int(_seconds(update.get("delay", "0s")) * _NS),
            failure_action=update.get("failure_action", "rollback"), order=update.get("order", "start-first"),
            monitor=int(_seconds(update.get("monitor", "5s")) * _NS)),
        "rollback_config": docker.types.RollbackConfig(
            parallelism=int(rollback.get("parallelism", 1)), order=rollback.get("order", "start-first")),
        "restart_policy": docker.types.RestartPolicy(condition="any"),
        "labels": {"io.nb2container.service": name},
    }


def _wait_healthy(client: docker.DockerClient, name: str, image: str, replicas: int, timeout: float,
                  progress: Progress) -> None:
    """Until ``replicas`` tasks of ``image`` run healthy (a task with a healthcheck is 'running'
    only once healthy) and any rolling update is complete."""
    deadline = time.monotonic() + timeout
    shown = ""
    while time.monotonic() < deadline:
        service = client.services.get(name)
        update = (service.attrs.get("UpdateStatus") or {}).get("State", "completed")
        if update in ("rollback_completed", "rollback_paused", "paused"):
            message = (service.attrs.get("UpdateStatus") or {}).get("Message", "")
            raise BuildError(f"The swarm rolled {name} back instead of updating it ({message}). The "
                             "previous version still serves. `docker service ps --no-trunc "
                             f"{name}` shows why the new tasks failed.")
        running = [task for task in service.tasks(filters={"desired-state": "running"})
                   if task["Status"]["State"] == "running"
                   and task["Spec"]["ContainerSpec"]["Image"].split("@")[0] == image.split("@")[0]]
        line = f"{len(running)}/{replicas} replicas of the new version healthy; update {update}"
        if line != shown:
            progress.detail(line)
            shown = line
        if len(running) >= replicas and update == "completed":
            return
        time.sleep(0.5)
    raise BuildError(f"The swarm service {name} was not healthy after {timeout:.0f} s: "
                     f"`docker service ps {name}` shows its tasks.")
