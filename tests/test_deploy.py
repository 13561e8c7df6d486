"""The deploy story in the build folder: Kubernetes manifests valid against the official
schemas, and both they and the Compose file agree with the image they deploy."""

from __future__ import annotations

import docker
import kubernetes_validate
import pytest
import yaml

from nb2container.deploy import Sizing
from nb2container.model import Usage
from tests.conftest import Built

KUBERNETES = "1.37"  # the newest schemas kubernetes-validate ships


@pytest.fixture(scope="module")
def image_config(house_build: Built, docker_client: docker.DockerClient) -> dict:
    return docker_client.images.get(house_build.tag).attrs["Config"]


def manifest(built: Built, name: str) -> dict:
    return yaml.safe_load((built.folder / "deploy" / "k8s" / f"{name}.yaml").read_text())


@pytest.mark.parametrize("name", ["deployment", "service", "hpa", "pdb"])
def test_kubernetes_manifests_pass_the_official_schemas(house_build: Built, name: str) -> None:
    kubernetes_validate.validate(manifest(house_build, name), KUBERNETES, strict=True)


def test_the_deployment_matches_the_image(house_build: Built, image_config: dict) -> None:
    env = dict(item.split("=", 1) for item in image_config["Env"])
    assert set(image_config["ExposedPorts"]) == {f"{env['NB2C_PORT']}/tcp", f"{env['NB2C_PROBE_PORT']}/tcp"}
    spec = manifest(house_build, "deployment")["spec"]["template"]["spec"]
    container = spec["containers"][0]
    assert container["image"] == house_build.tag
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"http": int(env["NB2C_PORT"]), "probes": int(env["NB2C_PROBE_PORT"])}
    for probe, path in (("readinessProbe", "/ready"), ("livenessProbe", "/health"), ("startupProbe", "/health")):
        assert container[probe]["httpGet"] == {"path": path, "port": "probes"}  # never behind a call
    pre_stop = int(container["lifecycle"]["preStop"]["exec"]["command"][1])
    assert spec["terminationGracePeriodSeconds"] > int(env["NB2C_GRACE_SECONDS"]) + pre_stop
    assert str(spec["securityContext"]["runAsUser"]) == image_config["User"].split(":")[0]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert "nvidia.com/gpu" not in container["resources"]["limits"]  # a CPU-only image
    service = manifest(house_build, "service")["spec"]
    assert service["ports"][0]["targetPort"] == "http"
    assert service["selector"] == manifest(house_build, "deployment")["spec"]["selector"]["matchLabels"]


def test_resources_come_from_the_smoke_run(house_build: Built) -> None:
    usage = house_build.report["smoke"]["usage"]
    assert usage and usage["memory_peak_bytes"] > 10 * 1024**2
    resources = manifest(house_build, "deployment")["spec"]["template"]["spec"]["containers"][0]["resources"]
    request_mib = int(resources["requests"]["memory"].removesuffix("Mi"))
    assert request_mib * 1024**2 >= 1.5 * usage["memory_peak_bytes"]
    assert "measured in the smoke run" in (house_build.folder / "deploy/k8s/deployment.yaml").read_text()


def test_compose_file_is_a_swarm_rolling_update(house_build: Built, image_config: dict) -> None:
    compose = yaml.safe_load((house_build.folder / "deploy/compose.yaml").read_text())
    (service,) = compose["services"].values()
    env = dict(item.split("=", 1) for item in image_config["Env"])
    assert service["image"] == house_build.tag and service["read_only"] is True
    assert service["healthcheck"]["test"] == image_config["Healthcheck"]["Test"]
    assert int(service["stop_grace_period"].removesuffix("s")) > int(env["NB2C_GRACE_SECONDS"])
    update = service["deploy"]["update_config"]
    assert (update["order"], update["failure_action"], service["deploy"]["replicas"]) == ("start-first", "rollback", 3)


def test_sizing_adds_headroom_to_what_was_measured() -> None:
    sizing = Sizing.from_usage(Usage(memory_peak_bytes=300 * 1024**2, cpu_seconds=3.0, wall_seconds=6.0))
    assert (sizing.memory_request, sizing.memory_limit) == ("512Mi", "1024Mi")  # 450 MiB, in 64 MiB steps
    assert (sizing.cpu_request, sizing.cpu_limit) == ("750m", "2")
    assert Sizing.from_usage(None).basis.startswith("defaults")
