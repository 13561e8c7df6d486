"""`nb2container deploy FOLDER --swarm`: a real 3-replica Swarm service on the private engine,
rolled to a rebuilt image (a changed function) without ever having fewer than 3 healthy
replicas. Traffic through the published port cannot be tested here: the swarm's routing mesh
needs the kernel's IPVS, which this machine's kernel lacks."""

from __future__ import annotations

import contextlib
import re
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest

from nb2container.engine import free_port
from tests.conftest import Built, run_cli

FIGURES: dict[str, object] = {}  # printed at the end of the module, for the issue note


@pytest.fixture(scope="module")
def no_swarm(docker_client: docker.DockerClient) -> Iterator[None]:
    """The engine as the tests found it: out of any swarm again afterwards."""
    was_active = docker_client.info()["Swarm"]["LocalNodeState"] == "active"
    yield
    if not was_active:
        docker_client.swarm.leave(force=True)


def version_of(house_build: Built, folder: Path, docker_client: docker.DockerClient, tag: str,
               change: str | None = None) -> None:
    """The house build folder as version ``tag``: its function changed by ``change``, rebuilt."""
    shutil.copytree(house_build.folder, folder)
    if change:
        module = folder / "app/notebook_function.py"
        module.write_text(module.read_text().replace("return float(model.predict(X)[0])", change))
    docker_client.images.build(path=str(folder), tag=tag, rm=True)
    compose = folder / "deploy/compose.yaml"
    compose.write_text(re.sub(r"(?m)^    image: .*$", f"    image: {tag}", compose.read_text()))


def test_deploy_refuses_to_make_the_engine_a_swarm_unless_asked(
    house_build: Built, docker_client: docker.DockerClient, no_swarm: None
) -> None:
    if docker_client.info()["Swarm"]["LocalNodeState"] == "active":
        pytest.skip("the engine is already in a swarm")
    result = run_cli("deploy", house_build.folder, "--swarm")
    assert result.returncode == 1 and "--init-swarm" in result.stderr and "Traceback" not in result.stderr


def running(docker_client: docker.DockerClient, name: str) -> list[tuple[str, Any]]:
    """(image, container) of the service's tasks that run and are meant to: what a load
    balancer would send requests to (a task with a healthcheck runs once it is healthy)."""
    found = []
    for task in docker_client.services.get(name).tasks(filters={"desired-state": "running"}):
        if task["Status"]["State"] == "running":
            container = docker_client.containers.get(task["Status"]["ContainerStatus"]["ContainerID"])
            found.append((task["Spec"]["ContainerSpec"]["Image"].split("@")[0], container))
    return found


def answer_inside(container: Any) -> float:
    """The replica's answer, asked from inside it (the routing mesh needs IPVS, which this
    kernel lacks: `deploy` warns that the published port does not answer here)."""
    ask = ("import json, urllib.request; r = urllib.request.Request('http://127.0.0.1:8000/predict', "
           "data=b'{\"area_sqft\": 1500, \"num_bedrooms\": 3}', headers={'Content-Type': 'application/json'}); "
           "print(json.load(urllib.request.urlopen(r))['result'])")
    result = container.exec_run(["python", "-c", ask])
    assert result.exit_code == 0, result.output
    return float(result.output.decode().strip())


def test_rolling_update_of_three_replicas_keeps_three_healthy_and_ends_on_the_new_function(
    house_build: Built, docker_client: docker.DockerClient, no_swarm: None, tmp_path: Path
) -> None:
    version_of(house_build, tmp_path / "v1", docker_client, "nb2c-test/house-swarm:v1")
    version_of(house_build, tmp_path / "v2", docker_client, "nb2c-test/house-swarm:v2",
               "return float(model.predict(X)[0]) + 1.0")
    port = free_port()
    started = time.monotonic()
    first = run_cli("deploy", tmp_path / "v1", "--swarm", "--init-swarm", "--publish", str(port))
    assert first.returncode == 0, first.stdout + first.stderr
    FIGURES["first deploy: 3 replicas healthy (s)"] = round(time.monotonic() - started, 1)
    assert "3 healthy replicas" in first.stdout and f"http://127.0.0.1:{port}/predict" in first.stdout
    before = running(docker_client, "predict-price")
    old = {answer_inside(container) for _, container in before}
    assert len(before) == 3 and len(old) == 1

    capacity: list[int] = []
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            with contextlib.suppress(docker.errors.NotFound, docker.errors.APIError):
                capacity.append(len(running(docker_client, "predict-price")))
            time.sleep(0.2)

    watcher = threading.Thread(target=watch)
    try:
        watcher.start()
        rolled = time.monotonic()
        second = run_cli("deploy", tmp_path / "v2", "--swarm", "--publish", str(port))
        FIGURES["rolling update: all 3 new replicas healthy (s)"] = round(time.monotonic() - rolled, 1)
        assert second.returncode == 0, second.stdout + second.stderr
        after = running(docker_client, "predict-price")
    finally:
        stop.set()
        watcher.join(timeout=30)
        for service in docker_client.services.list(filters={"name": "predict-price"}):
            service.remove()
    FIGURES["fewest healthy replicas during the roll"] = min(capacity)
    print(f"\nswarm figures: {FIGURES}")
    assert min(capacity) >= 3  # start-first: a new replica is healthy before an old one stops
    assert [image for image, _ in after] == ["nb2c-test/house-swarm:v2"] * 3
    assert {answer_inside(container) for _, container in after} == {old.pop() + 1.0}  # the changed function


CLIENT = """
import json, signal, time, urllib.request
running = True
def stop(*_):
    global running
    running = False
signal.signal(signal.SIGTERM, stop)
body = b'{"area_sqft": 1500, "num_bedrooms": 3}'
while running:
    started = time.time()
    try:
        request = urllib.request.Request("http://predict-price:8000/predict", data=body,
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as response:
            line = {"t": started, "result": json.load(response)["result"]}
    except Exception as error:
        line = {"t": started, "error": repr(error)}
    print(json.dumps(line), flush=True)
    time.sleep(0.02)
"""


def test_a_rolling_update_under_traffic_fails_no_request(
    house_build: Built, docker_client: docker.DockerClient, no_swarm: None, tmp_path: Path
) -> None:
    """A client on the service's overlay network calls it by name (DNS round-robin: this kernel
    has no IPVS for virtual IPs) throughout a start-first roll from v1 to v2."""
    import json

    version_of(house_build, tmp_path / "v1", docker_client, "nb2c-test/house-dnsrr:v1")
    version_of(house_build, tmp_path / "v2", docker_client, "nb2c-test/house-dnsrr:v2",
               "return float(model.predict(X)[0]) + 1.0")
    first = run_cli("deploy", tmp_path / "v1", "--swarm", "--init-swarm", "--endpoint-mode", "dnsrr")
    client = None
    try:
        assert first.returncode == 0, first.stdout + first.stderr
        assert "http://predict-price:8000/predict (DNS round-robin" in first.stdout
        client = docker_client.containers.run("nb2c-test/house-dnsrr:v1", ["python", "-c", CLIENT], detach=True,
                                              network="predict-price-net", healthcheck={"test": ["NONE"]})
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and b'"result"' not in client.logs():
            time.sleep(0.2)
        rolled = time.monotonic()
        second = run_cli("deploy", tmp_path / "v2", "--swarm", "--endpoint-mode", "dnsrr")
        FIGURES["rolling update under traffic (s)"] = round(time.monotonic() - rolled, 1)
        assert second.returncode == 0, second.stdout + second.stderr
        time.sleep(3)  # answers from v2 only, once the roll is done
        client.stop(timeout=10)
        lines = [json.loads(line) for line in client.logs().decode().splitlines() if line.startswith("{")]
    finally:
        if client is not None:
            client.remove(force=True)
        for service in docker_client.services.list(filters={"name": "predict-price"}):
            service.remove()
    failed = [line for line in lines if "error" in line]
    FIGURES.update({"requests sent during the roll": len(lines), "failed": len(failed)})
    print(f"\nswarm figures: {FIGURES}")
    assert failed == [], failed[:5]
    answers = [line["result"] for line in lines]
    assert answers[0] + 1.0 == answers[-1] and set(answers) == {answers[0], answers[-1]}
    switched = answers.index(answers[-1])
    assert switched > 0 and all(answer == answers[-1] for answer in answers[switched:][-20:])


def test_a_secret_reaches_the_swarm_as_a_docker_secret_not_an_environment_value(
    docker_client: docker.DockerClient, no_swarm: None, tmp_path: Path
) -> None:
    """Issue 25: `deploy --swarm` put a --secret value into the service's environment, where
    `docker service inspect` shows it to whoever can manage the swarm."""
    import json

    from tests.test_promises import CANARY, secret_notebook

    tag = "nb2c-test/secret-swarm:latest"
    built = run_cli("build", secret_notebook(tmp_path), "--secret", "API_TOKEN", "--tag", tag,
                    "--output", tmp_path / "build")
    assert built.returncode == 0, built.stdout + built.stderr
    try:
        deployed = run_cli("deploy", tmp_path / "build", "--swarm", "--init-swarm", "--replicas", "1",
                           "--publish", str(free_port()), env={"API_TOKEN": CANARY})
        assert deployed.returncode == 0, deployed.stdout + deployed.stderr  # healthy: it read the secret
        inspected = json.dumps(docker_client.api.inspect_service("predict"))
        assert CANARY not in inspected and "API_TOKEN=" not in inspected
        ((_, container),) = running(docker_client, "predict")
        ask = ("import json, urllib.request; r = urllib.request.Request('http://127.0.0.1:8000/predict', "
               "data=b'{\"x\": 3}', headers={'Content-Type': 'application/json'}); "
               "print(json.load(urllib.request.urlopen(r))['result'])")
        answer = container.exec_run(["python", "-c", ask])
        assert answer.exit_code == 0 and "'authorized': True" in answer.output.decode(), answer.output
        assert CANARY not in json.dumps(container.attrs["Config"]["Env"])
    finally:
        for service in docker_client.services.list(filters={"name": "predict"}):
            service.remove()
        for secret in docker_client.secrets.list(filters={"label": "io.nb2container.service=predict"}):
            with contextlib.suppress(docker.errors.APIError):  # still held by a stopping task
                secret.remove()
