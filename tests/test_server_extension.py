"""The Jupyter server extension's routes (server_extension.py), in a real Jupyter server
(pytest-jupyter); the build tests drive the real CLI against the real private engine."""

from __future__ import annotations

import contextlib
import json
import shutil
import time
from pathlib import Path
from typing import Any

import docker
import docker.errors
import pytest
from jupyter_server.auth import Authorizer
from tornado.httpclient import HTTPClientError

from tests.conftest import NOTEBOOKS

pytest_plugins = ["pytest_jupyter.jupyter_server"]


@pytest.fixture
def jp_server_config(request: pytest.FixtureRequest) -> dict[str, Any]:
    """The extension enabled; a test may add the server's settings (``indirect`` parametrization)."""
    return {"ServerApp": {"jpserver_extensions": {"nb2container": True}, **getattr(request, "param", {})},
            "IdentityProvider": {"token": "nb2c-test-token"}}


class NoBuilds(Authorizer):
    """A deployment's policy: its users may read nb2container's runs, never start or stop a build."""

    def is_authorized(self, handler: Any, user: Any, action: str, resource: str) -> bool:
        return not (resource == "nb2container" and action == "execute")


@pytest.fixture
def house(jp_root_dir: Path) -> Path:
    shutil.copy(NOTEBOOKS / "house_prices.ipynb", jp_root_dir / "house_prices.ipynb")
    return jp_root_dir / "house_prices.ipynb"


async def fetch(jp_fetch: Any, *path: str, method: str = "GET", body: Any = None, **params: Any) -> tuple[int, Any]:
    """A route's status and JSON answer, errors included."""
    try:
        response = await jp_fetch("nb2container", *path, method=method, params=params or None,
                                  body=json.dumps(body) if body is not None else None, allow_nonstandard_methods=True)
    except HTTPClientError as error:
        assert error.response is not None
        return error.code, json.loads(error.response.body or b"{}")
    return response.code, json.loads(response.body)


async def test_every_route_needs_the_token(jp_serverapp: Any, jp_http_port: int, jp_base_url: str, house: Path,
                                           http_server_client: Any) -> None:
    for path, method in (("functions?path=house_prices.ipynb", "GET"), ("builds", "POST"), ("runs", "GET"),
                         ("runs/x", "DELETE")):
        with pytest.raises(HTTPClientError) as refused:
            await http_server_client.fetch(f"{jp_base_url}nb2container/{path}", method=method,
                                           body="{}" if method == "POST" else None, allow_nonstandard_methods=True)
        assert refused.value.code == 403, path


@pytest.mark.parametrize("jp_server_config", [{"authorizer_class": NoBuilds}], indirect=True)
async def test_the_servers_authorizer_decides(jp_fetch: Any, house: Path) -> None:
    status, _ = await fetch(jp_fetch, "functions", path="house_prices.ipynb")
    assert status == 200
    status, _ = await fetch(jp_fetch, "builds", method="POST", body={"path": "house_prices.ipynb",
                                                                      "function": "predict_price"})
    assert status == 403
    status, _ = await fetch(jp_fetch, "runs", "x", method="DELETE")
    assert status == 403


async def test_the_functions_and_the_options_a_build_may_be_given(jp_fetch: Any, house: Path) -> None:
    status, answer = await fetch(jp_fetch, "functions", path="house_prices.ipynb")
    assert status == 200 and answer == {"functions": [{"name": "predict_price", "cell": 5}],
                                        "default": "predict_price"}
    status, options = await fetch(jp_fetch, "options")
    keys = {option["key"] for option in options}
    assert {"tag", "allow_stale", "engine", "platform"} <= keys
    assert not keys & {"push", "output", "runs_dir", "templates", "kernel"}  # the server's, never a request's
    platform = next(option for option in options if option["key"] == "platform")
    assert platform["choices"] == ["linux/amd64", "linux/arm64"] and platform["flag"] == "--platform"


async def test_bad_requests_are_refused_with_nb2containers_paragraph(jp_fetch: Any, jp_root_dir: Path,
                                                                     house: Path) -> None:
    outside = jp_root_dir.parent / "outside.ipynb"
    shutil.copy(house, outside)
    cases = [
        ({"path": "../outside.ipynb", "function": "predict_price"}, "outside the server's root"),
        ({"path": "nosuch.ipynb", "function": "predict_price"}, "There is no notebook at nosuch.ipynb"),
        ({"path": "house_prices.ipynb", "function": "nosuch"}, "defines no function named `nosuch`"),
        ({"path": "house_prices.ipynb", "function": "predict_price", "options": {"push": "registry.example.com/x"}},
         "`push` is set by the server's configuration, never by a request"),
        ({"path": "house_prices.ipynb", "function": "predict_price", "options": {"tagg": "x:1"}},
         "`tagg` is not an option of nb2container"),
        ({"path": "house_prices.ipynb", "function": "predict_price", "options": {"platform": "linux/s390x"}},
         "invalid choice: 'linux/s390x'"),
        ({"path": "house_prices.ipynb", "function": "predict_price", "options": {"no_smoke": "yes"}},
         "`no_smoke` is true or false"),
    ]
    for body, says in cases:
        status, answer = await fetch(jp_fetch, "builds", method="POST", body=body)
        assert status == 400 and says in answer["message"], (body, answer)
    status, answer = await fetch(jp_fetch, "functions", path="../outside.ipynb")
    assert status == 400 and "outside the server's root" in answer["message"]
    status, answer = await fetch(jp_fetch, "builds", method="POST", body={"path": "a\x00b.ipynb", "function": "f"})
    assert status == 400 and "is not a path of a notebook" in answer["message"]
    status, answer = await fetch(jp_fetch, "runs", "nosuch", "events")
    assert status == 404 and "no run whose id starts with `nosuch`" in answer["message"]


async def events_to_the_end(jp_fetch: Any, run_id: str, after: int = 0, limit: float = 600) -> list[dict[str, Any]]:
    """Long-polls the run's events from ``after`` until it ended."""
    found: list[dict[str, Any]] = []
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        status, answer = await fetch(jp_fetch, "runs", run_id, "events", after=str(after), wait="10")
        assert status == 200, answer
        found += answer["events"]
        after = found[-1]["id"] if found else after
        if answer["ended"] and not answer["events"]:
            return found
    raise AssertionError(f"run {run_id} did not end in {limit} s")


@pytest.mark.engine
async def test_a_build_streams_its_events_and_ends_with_its_report(
    jp_fetch: Any, house: Path, docker_client: docker.DockerClient
) -> None:
    tag = "nb2c-test/lab-house:latest"
    status, started = await fetch(jp_fetch, "builds", method="POST",
                                  body={"path": "house_prices.ipynb", "function": "predict_price",
                                        "options": {"tag": tag}})
    assert status == 202, started
    run_id = started["id"]
    status, again = await fetch(jp_fetch, "builds", method="POST",
                                body={"path": "house_prices.ipynb", "function": "predict_price"})
    assert status == 409 and "is already being built" in again["message"]
    first = (await fetch(jp_fetch, "runs", run_id, "events", after="0", wait="30"))[1]["events"]
    assert first and first[0]["id"] == 1
    rest = await events_to_the_end(jp_fetch, run_id, after=first[-1]["id"])  # resumed, as after a page reload
    events = first + rest
    assert [e["id"] for e in events] == list(range(1, len(events) + 1))  # none lost, none twice
    assert any(e["kind"] == "step" and e["text"].startswith("Building the image") for e in events)
    verdict = events[-1]
    assert verdict["kind"] == "verdict" and verdict["ok"] is True and verdict["image"] == tag
    status, report = await fetch(jp_fetch, "runs", run_id, "report")
    assert status == 200 and [c["verdict"] for c in report["smoke"]["cases"]] == ["match"] * 3
    status, history = await fetch(jp_fetch, "runs", path="house_prices.ipynb")
    assert history[0]["id"] == run_id and history[0]["state"] == "ok" and history[0]["source"] == "lab"
    # the build folder as the file browser opens it: relative to the server's root
    assert history[0]["folder_path"] == "build/predict_price" and history[0]["folder"].endswith("/build/predict_price")
    assert docker_client.images.get(tag)


@pytest.mark.engine
async def test_a_cancelled_build_leaves_no_container_and_no_tag(
    jp_fetch: Any, house: Path, docker_client: docker.DockerClient
) -> None:
    tag = "nb2c-test/lab-cancelled:latest"
    with contextlib.suppress(docker.errors.ImageNotFound):
        docker_client.images.remove(tag)
    before = {c.id for c in docker_client.containers.list(all=True)}
    status, started = await fetch(jp_fetch, "builds", method="POST",
                                  body={"path": "house_prices.ipynb", "function": "predict_price",
                                        "options": {"tag": tag}})
    assert status == 202
    run_id, after = started["id"], 0
    while True:  # cancelled as the smoke container starts: the hardest moment to leave nothing behind
        answer = (await fetch(jp_fetch, "runs", run_id, "events", after=str(after), wait="10"))[1]
        after = answer["events"][-1]["id"] if answer["events"] else after
        if answer["ended"] or any(e["text"].startswith("Smoke test") for e in answer["events"]):
            break
    status, _ = await fetch(jp_fetch, "runs", run_id, method="DELETE")
    assert status == 202
    events = await events_to_the_end(jp_fetch, run_id, after=after, limit=120)
    assert events[-1]["kind"] == "error" and events[-1]["cancelled"] is True
    status, run = await fetch(jp_fetch, "runs", run_id)
    assert run["state"] == "cancelled" and not run["alive"]
    with pytest.raises(docker.errors.ImageNotFound):
        docker_client.images.get(tag)
    assert {c.id for c in docker_client.containers.list(all=True)} <= before
