"""The serving runtime in a built image (gunicorn + the WSGI app): what needs the image and its
server: endpoints through gunicorn, faults, timeouts, readiness, graceful shutdown, worker sizing,
read-only and non-root, micro-batching, hostile clients. The contract's status codes and error
bodies are tested in-process (test_contract.py, over tests/fixtures/apps/).

The containers run with a read-only root file system as user 10001, and are reached at their
own address on the engine's bridge (not through a published port, whose proxy would turn a
refused connection into an accepted one that is then dropped)."""

from __future__ import annotations

import contextlib
import http.client
import json
import re
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import pytest

from nb2container.runtime import batching
from tests.conftest import NOTEBOOKS, Built, NotebookBuilds, run_cli


@dataclass
class Served:
    container: Any
    host: str
    port: int = 8000

    def request(self, method: str, path: str, body: Any = None, raw: bytes | None = None,
                timeout: float = 30) -> tuple[int, Any, dict[str, str]]:
        connection = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
        try:
            data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
            connection.request(method, path, body=data, headers={"Content-Type": "application/json",
                                                                 "Connection": "close"})
            response = connection.getresponse()
            text = response.read().decode()
            headers = {k.lower(): v for k, v in response.getheaders()}
            payload = json.loads(text) if headers.get("content-type", "").startswith("application/json") else text
            return response.status, payload, headers
        finally:
            connection.close()

    def probe(self, path: str, timeout: float = 1) -> int:
        """A probe as the kubelet sends one: a new connection to the probe port, 1 s to answer."""
        from nb2container.runtime.layout import IMAGE

        connection = http.client.HTTPConnection(self.host, IMAGE.probe_port, timeout=timeout)
        try:
            connection.request("GET", path)
            response = connection.getresponse()
            response.read()
            return response.status
        finally:
            connection.close()

    def predict(self, body: Any, timeout: float = 30) -> tuple[int, Any]:
        status, payload, _ = self.request("POST", "/predict", body, timeout=timeout)
        return status, payload

    def logs(self) -> str:
        return bytes(self.container.logs()).decode()

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError, http.client.HTTPException):
                if self.request("GET", "/ready", timeout=2)[0] == 200:
                    return
            time.sleep(0.1)
        raise AssertionError(f"not ready after {timeout} s:\n{self.logs()[-3000:]}")


@contextlib.contextmanager
def serving(client: docker.DockerClient, image: str, ready: bool = True, **run: Any) -> Iterator[Served]:
    container = client.containers.run(image, detach=True, read_only=True, **run)
    try:
        container.reload()
        served = Served(container, container.attrs["NetworkSettings"]["IPAddress"])
        if ready:
            served.wait_ready()
        yield served
    finally:
        container.remove(force=True)


@pytest.fixture(scope="module")
def faults(notebook_builds: NotebookBuilds) -> Built:
    return notebook_builds("serving_faults.ipynb")


def test_each_endpoint_answers(faults: Built, docker_client: docker.DockerClient) -> None:
    with serving(docker_client, faults.tag) as served:
        assert served.request("GET", "/health")[:2] == (200, {"status": "ok"})
        assert served.request("GET", "/ready")[:2] == (200, {"ready": True})
        assert served.predict({"x": 1.5}) == (200, {"result": 3.0})
        status, error = served.predict({"x": -1})  # the function's error: a 500, logged, and it serves on
        assert status == 500 and error["error"].startswith("ValueError in score") and "negative" not in str(error)
        assert served.predict([4.0]) == (200, {"result": 8.0})  # positional
        status, metadata, _ = served.request("GET", "/metadata")
        assert status == 200 and metadata["function"] == "score" and len(metadata["notebook_sha256"]) == 64
        status, metrics, headers = served.request("GET", "/metrics")
        assert status == 200 and headers["content-type"].startswith("text/plain")
        assert re.search(r'nb2c_requests_total\{code="200",method="POST",path="/predict"\} 2\.0', metrics)
        assert re.search(r'nb2c_requests_total\{code="500",method="POST",path="/predict"\} 1\.0', metrics)
        assert 'nb2c_request_duration_seconds_bucket{le="0.005",path="/predict"}' in metrics
        # structured logs: one JSON object per line
        lines = [json.loads(line) for line in served.logs().splitlines() if line.startswith("{")]
        assert any(line.get("kind") == "access" and line["path"] == "/predict" and line["status"] == 200
                   for line in lines)
        assert any(line.get("event") == "error" and "Traceback" in line["traceback"] for line in lines)
        # the user, and a read-only root: the server wrote only to /dev/shm
        assert served.container.exec_run(["id", "-u"]).output.decode().strip() == "10001"
        assert served.container.exec_run(["touch", "/srv/notebook/x"]).exit_code != 0


def test_the_healthcheck_probe_imports_nothing_heavy_and_tells_the_truth(
    faults: Built, docker_client: docker.DockerClient
) -> None:
    from nb2container.runtime.layout import IMAGE

    HEALTHCHECK = IMAGE.healthcheck

    assert docker_client.images.get(faults.tag).attrs["Config"]["Healthcheck"]["Test"] == ["CMD", *HEALTHCHECK]
    with serving(docker_client, faults.tag) as served:
        probe = served.container.exec_run([*HEALTHCHECK[:-1], "-X", "importtime", HEALTHCHECK[-1]])
        imported = probe.output.decode()
        assert probe.exit_code == 0 and "| _socket" in imported, imported
        compiled = re.findall(r"\|\s+([\w.]+)$", imported, re.MULTILINE)  # what the probe imports
        assert not {"socket", "urllib", "site", "json", "os"} & set(compiled), compiled
        assert served.container.exec_run(HEALTHCHECK, environment={"NB2C_PROBE_PORT": "9"}).exit_code == 1


def test_ready_is_503_until_the_artifacts_are_loaded(faults: Built, docker_client: docker.DockerClient) -> None:
    """`calibration` takes 2 s to unpickle: meanwhile the process is alive but not ready."""
    with serving(docker_client, faults.tag, ready=False) as served:
        seen: list[tuple[int, int]] = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and (not seen or seen[-1][1] != 200):
            with contextlib.suppress(OSError, http.client.HTTPException):
                seen.append((served.request("GET", "/health", timeout=2)[0],
                             served.request("GET", "/ready", timeout=2)[0]))
            time.sleep(0.05)
        assert (200, 503) in seen and seen[-1] == (200, 200)
        assert served.predict({"x": 1.5}) == (200, {"result": 3.0})


def test_a_call_past_the_timeout_gets_504_and_the_worker_serves_on(
    faults: Built, docker_client: docker.DockerClient
) -> None:
    with serving(docker_client, faults.tag, environment={"NB2C_TIMEOUT": "1", "NB2C_WORKERS": "1"}) as served:
        for body in ({"x": 1, "wait": 30, "busy": True}, {"x": 1, "wait": 300}):  # in Python; in a C sleep
            started = time.monotonic()
            status, payload = served.predict(body)
            assert status == 504 and "timeout of 1 s" in payload["error"] and time.monotonic() - started < 5
            assert served.predict({"x": 1}) == (200, {"result": 2.0})
        assert "WORKER TIMEOUT" not in served.logs()


def test_a_call_stuck_in_c_has_its_worker_replaced(faults: Built, docker_client: docker.DockerClient) -> None:
    """`sum(range(n))` loops in C and never looks at signals: the 504 cannot get in, so gunicorn
    kills the worker that went silent (NB2C_TIMEOUT + 5 s) and starts another."""
    with serving(docker_client, faults.tag, environment={"NB2C_TIMEOUT": "1", "NB2C_WORKERS": "1"}) as served:
        with contextlib.suppress(OSError, http.client.HTTPException):
            assert served.predict({"x": 1, "spin": 10**11}, timeout=60)[0] != 200
        served.wait_ready(30)
        assert served.predict({"x": 1}) == (200, {"result": 2.0})
        assert "WORKER TIMEOUT" in served.logs()


def test_a_crashed_worker_is_replaced_and_ready_stays_200(faults: Built, docker_client: docker.DockerClient) -> None:
    """`calibration` takes 2 s to load: the successor loads that long, and meanwhile the other
    worker serves, so the container stays ready (in Kubernetes, in its Service)."""
    with serving(docker_client, faults.tag, environment={"NB2C_WORKERS": "2"}) as served:
        pids = served.container.exec_run(["ls", "/dev/shm/nb2c/ready"]).output.decode().split()
        assert len(pids) == 2
        served.container.exec_run(["python", "-c", f"import os; os.kill({pids[0]}, 9)"])
        readiness = []
        deadline = time.monotonic() + 6
        while time.monotonic() < deadline:
            readiness.append(served.request("GET", "/ready", timeout=5)[0])
            time.sleep(0.05)
        assert readiness and set(readiness) == {200}, readiness
        deadline = time.monotonic() + 30  # the successor loads (2 s, longer on a busy host)
        while len(after := served.container.exec_run(["ls", "/dev/shm/nb2c/ready"]).output.decode().split()) < 2:
            assert time.monotonic() < deadline, after
            time.sleep(0.2)
        assert pids[0] not in after
        replaced = [json.loads(line) for line in served.logs().splitlines() if '"worker_replaced"' in line]
        assert replaced and replaced[0]["exited_pid"] == int(pids[0]) and replaced[0]["seconds"] > 1
        assert all(served.predict({"x": 1}) == (200, {"result": 2.0}) for _ in range(4))


def test_preloading_loads_the_function_once_before_the_workers(
    faults: Built, docker_client: docker.DockerClient
) -> None:
    """NB2C_PRELOAD=1: the arbiter loads `calibration` (2 s) before forking, so each worker is
    ready at once, and the metrics the workers write still add up."""
    with serving(docker_client, faults.tag, environment={"NB2C_PRELOAD": "1", "NB2C_WORKERS": "2"}) as served:
        assert all(served.predict({"x": 1}) == (200, {"result": 2.0}) for _ in range(4))
        loads = [json.loads(line)["load_seconds"] for line in served.logs().splitlines() if '"event": "ready"' in line]
        assert len(loads) == 2 and max(loads) < 1, loads
        status, metrics, _ = served.request("GET", "/metrics")
        assert status == 200, metrics
        assert re.search(r'nb2c_requests_total\{code="200",method="POST",path="/predict"\} 4\.0', metrics), metrics


def test_workers_follow_the_cpu_limit_unless_told(faults: Built, docker_client: docker.DockerClient) -> None:
    def started(**run: Any) -> dict[str, Any]:
        with serving(docker_client, faults.tag, **run) as served:
            return next(json.loads(line) for line in served.logs().splitlines() if '"event": "starting"' in line)

    assert started(nano_cpus=1_000_000_000)["workers"] == 1  # --cpus 1
    assert started(nano_cpus=1_000_000_000, environment={"NB2C_WORKERS": "3"})["workers"] == 3


def sigterm_during_a_stream(docker_client: docker.DockerClient, tag: str, body: bytes, answer: bytes,
                            clients: int) -> None:
    """Clients send calls one after another, each on a new connection. After SIGTERM every call
    whose connection was accepted is answered; then connections are refused, and the server
    exits 0."""
    with serving(docker_client, tag, environment={"NB2C_WORKERS": "2"}) as served:
        answered, lost, refused = [], [], []
        stop = threading.Event()

        def client() -> None:
            while not stop.is_set():
                connection = http.client.HTTPConnection(served.host, served.port, timeout=30)
                try:
                    connection.connect()
                except OSError:
                    refused.append(time.monotonic())
                    return
                try:
                    connection.request("POST", "/predict", body=body, headers={"Content-Type": "application/json"})
                    response = connection.getresponse()
                    answered.append((time.monotonic(), response.status, response.read()[:200]))
                except (OSError, http.client.HTTPException) as exc:
                    lost.append(repr(exc))
                finally:
                    connection.close()

        threads = [threading.Thread(target=client) for _ in range(clients)]
        for thread in threads:
            thread.start()
        time.sleep(1.5)
        signalled = time.monotonic()
        served.container.kill(signal="SIGTERM")
        result = served.container.wait(timeout=60)
        stop.set()
        for thread in threads:
            thread.join(timeout=60)
        assert lost == [], (lost, len(answered), [round(at - signalled, 3) for at, _, _ in answered][-5:])
        assert [(status, got) for _, status, got in answered if (status, got) != (200, answer)] == []
        assert sum(at > signalled for at, _, _ in answered) >= 1  # calls in flight at SIGTERM were answered
        assert len(answered) >= 8 and refused
        assert result["StatusCode"] == 0


def test_sigterm_during_a_stream_of_requests_loses_none(faults: Built, docker_client: docker.DockerClient) -> None:
    """gunicorn's sync workers, calls of 0.2 s."""
    sigterm_during_a_stream(docker_client, faults.tag, b'{"x": 1, "wait": 0.2}', b'{"result": 2.0}', clients=4)


def test_sigterm_loses_none_with_batching_too(batched_house: str, docker_client: docker.DockerClient) -> None:
    """The threaded workers that --batch uses, with calls waiting in batches at SIGTERM."""
    sigterm_during_a_stream(docker_client, batched_house, b'{"area_sqft": 1500, "num_bedrooms": 3}',
                            b'{"result": 245500.0}', clients=8)


def test_the_environment_lists_exactly_the_lock_with_the_server_installed(
    house_build: Built, docker_client: docker.DockerClient
) -> None:
    probe = ("import importlib.metadata as m, json; "
             "print(json.dumps({d.metadata['Name']: d.version for d in m.distributions()}))")
    listed = docker_client.containers.run(house_build.tag, ["python", "-c", probe], remove=True, network_mode="none")
    installed = {name.lower().replace("_", "-"): version for name, version in json.loads(listed).items()}
    locked = {name.lower().replace("_", "-"): version for name, version in house_build.report["packages"].items()}
    assert installed == locked  # and nothing else: no pip, setuptools or wheel
    served = docker_client.containers.run(
        house_build.tag, ["python", "-c", "import sys; sys.path.append('/opt/nb2c-server'); "
                          "import gunicorn, prometheus_client; print(gunicorn.__file__)"],
        remove=True, network_mode="none")
    assert bytes(served).decode().startswith("/opt/nb2c-server/")


# --- micro-batching -------------------------------------------------------------------------

def test_batched_rows_come_back_to_their_own_calls() -> None:
    """Pure logic of the batcher (in-process): stacked, called once, split back, identical."""
    np = pytest.importorskip("numpy", reason="batches are numpy arrays (the notebooks' extra)")
    import pandas as pd

    calls: list[int] = []

    class Model:
        def predict(self, rows: Any) -> Any:
            calls.append(len(rows))
            values = rows.to_numpy() if hasattr(rows, "to_numpy") else np.asarray(rows)
            if (values < 0).any():
                raise ValueError("negative")
            return values.sum(axis=1) * 1.5

    settings = batching.Settings((("model", "predict"),), max_size=16, max_wait=0.05)
    holder = type("Module", (), {"model": Model()})
    batching.install(holder, settings, lambda size: None)
    frames = [pd.DataFrame({"a": [float(i)], "b": [2.0 * i]}) for i in range(12)]
    together = threading.Barrier(12)

    def call(frame: Any) -> Any:
        with batching.IN_FLIGHT:  # as the server counts calls in flight: the batcher waits for them
            together.wait()
            return holder.model.predict(frame)

    with ThreadPoolExecutor(12) as pool:
        results = list(pool.map(call, frames))
    assert [float(r[0]) for r in results] == [float(Model().predict(f)[0]) for f in frames]
    assert max(calls[:-12]) > 1  # some were served together
    with pytest.raises(ValueError, match="negative"):  # an error reaches the call it belongs to
        holder.model.predict(pd.DataFrame({"a": [-1.0], "b": [0.0]}))
    ints = pd.DataFrame({"a": [1], "b": [2]})  # other dtypes are not mixed in
    assert batching._stack_key(ints) != batching._stack_key(frames[0])


@pytest.fixture(scope="module")
def batched_house(house_build: Built, tmp_path_factory: pytest.TempPathFactory) -> str:
    tag = "nb2c-test/house-prices-batched:latest"
    work = tmp_path_factory.mktemp("batched")
    result = run_cli("build", NOTEBOOKS / "house_prices.ipynb", "--tag", tag, "--output", work / "build",
                     "--batch", "--batch-max-wait-ms", "5")
    assert result.returncode == 0, result.stdout + result.stderr
    return tag


def test_batched_image_answers_exactly_as_the_unbatched_one(
    house_build: Built, batched_house: str, docker_client: docker.DockerClient
) -> None:
    bodies = [{"area_sqft": 800 + 37 * i, "num_bedrooms": 1 + i % 5} for i in range(48)]
    answers = {}
    for tag in (house_build.tag, batched_house):
        with serving(docker_client, tag, environment={"NB2C_WORKERS": "1"}) as served, ThreadPoolExecutor(16) as pool:
            answers[tag] = list(pool.map(served.predict, bodies))
            if tag == batched_house:
                metrics = served.request("GET", "/metrics")[1]
    assert answers[house_build.tag] == answers[batched_house]
    assert all(status == 200 for status, _ in answers[batched_house])
    count = float(re.search(r"^nb2c_batch_size_count (\S+)", metrics, re.M).group(1))  # type: ignore[union-attr]
    total = float(re.search(r"^nb2c_batch_size_sum (\S+)", metrics, re.M).group(1))  # type: ignore[union-attr]
    assert total == 48 and count < 48  # 48 calls in fewer model calls


# --- hostile traffic --------------------------------------------------------------------------

HOUSE_BODY = b'{"area_sqft": 1500, "num_bedrooms": 3}'


class Hostile:
    """Idle connections (no byte sent) and slow-loris ones (a header byte a second), each
    reopened when the server closes it, as an attacker would, until stopped. One thread, so the
    test's own client is not starved of the GIL."""

    REQUEST = b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: 40\r\nX-Padding: " + b"a" * 1000
    # A chunked body, one byte a second after a whole head: each such request holds a reading thread.
    CHUNKED_HEAD = b"POST /predict HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    CHUNKS = b"1\r\na\r\n"

    def __init__(self, host: str, port: int, idle: int, slow: int, head: bytes = b"", trickle: bytes = REQUEST
                 ) -> None:
        self.host, self.port, self.idle, self.slow = host, port, idle, slow
        self.head, self.trickle = head, trickle  # the slow ones send `head` at once, then `trickle` a byte a second
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.reopened = 0

    def _open(self, head: bytes = b"") -> socket.socket | None:
        try:
            sock = socket.create_connection((self.host, self.port), timeout=2)
            sock.sendall(head)
        except OSError:
            return None
        sock.setblocking(False)
        return sock

    def _run(self) -> None:
        idle = [self._open() for _ in range(self.idle)]
        slow: list[tuple[socket.socket | None, int]] = [(self._open(self.head), 0) for _ in range(self.slow)]
        while not self.stop.wait(1):
            for n, sock in enumerate(idle):  # closed by the server: open another
                if sock is None or _closed(sock):
                    if sock is not None:
                        sock.close()
                    idle[n] = self._open()
                    self.reopened += 1
            for n, (sock, sent) in enumerate(slow):
                try:
                    if sock is None or _closed(sock):
                        raise OSError("closed")
                    sock.send(self.trickle[sent % len(self.trickle):][:1])
                    slow[n] = (sock, sent + 1)
                except OSError:
                    if sock is not None:
                        sock.close()
                    slow[n] = (self._open(self.head), 0)
                    self.reopened += 1
        for sock in [*idle, *(sock for sock, _ in slow)]:
            if sock is not None:
                sock.close()

    def __enter__(self) -> Hostile:
        self.thread.start()
        time.sleep(3)  # all of them connected, the slow ones a few bytes in
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        self.thread.join(timeout=10)


def _closed(sock: socket.socket) -> bool:
    try:
        return sock.recv(1, socket.MSG_PEEK) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


def call_loop(served: Served, seconds: float) -> tuple[list[float], list[str], int]:
    """POST /predict on one kept-alive connection, and GET /health on another, for ``seconds``."""
    latencies, failures, health = [], [], 0
    predict = http.client.HTTPConnection(served.host, served.port, timeout=10)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        started = time.perf_counter()
        try:
            predict.request("POST", "/predict", body=HOUSE_BODY, headers={"Content-Type": "application/json"})
            response = predict.getresponse()
            body = response.read()
            if response.status != 200:
                failures.append(f"{response.status} {body[:100]!r}")
        except (OSError, http.client.HTTPException) as exc:
            failures.append(repr(exc))
            predict.close()
        latencies.append(time.perf_counter() - started)
        if len(latencies) % 50 == 0:  # as a HEALTHCHECK or a kubelet does: a new connection each time
            probe = http.client.HTTPConnection(served.host, served.port, timeout=10)
            probe.request("GET", "/health")
            answer = probe.getresponse()
            answer.read()
            probe.close()
            health += answer.status == 200
    predict.close()
    return sorted(latencies), failures, health


def test_idle_and_slow_clients_cost_the_callers_nothing(house_build: Built, docker_client: docker.DockerClient) -> None:
    """256 idle and 20 slow-loris connections against 2 workers: every call is answered, the
    health check too, and no worker is killed. The figures are printed for the issue note."""
    with serving(docker_client, house_build.tag, environment={"NB2C_WORKERS": "2"}) as served:
        quiet, _, _ = call_loop(served, 10)
        with Hostile(served.host, served.port, idle=256, slow=20) as hostile:
            latencies, failures, health = call_loop(served, 60)
        assert failures == []
        assert hostile.reopened >= 256  # the server closed the idle and slow ones (NB2C_READ_TIMEOUT)
        assert health == len(latencies) // 50
        logs = served.logs()
        assert "WORKER TIMEOUT" not in logs and logs.count("Booting worker") == 2  # none replaced

    def p(values: list[float], q: float) -> float:
        return round(values[int(len(values) * q)] * 1e3, 2)

    print(f"\nhostile figures: quiet p50 {p(quiet, .5)} ms p99 {p(quiet, .99)} ms ({len(quiet)} calls in 10 s); "
          f"with 256 idle + 20 slow-loris p50 {p(latencies, .5)} ms p99 {p(latencies, .99)} ms "
          f"({len(latencies)} calls in 60 s)")


def test_a_fuzzer_finds_no_5xx_and_no_answer_off_the_documented_contract(
    house_build: Built, docker_client: docker.DockerClient, tmp_path: Path
) -> None:
    """schemathesis, every phase and both modes (valid and invalid data), every check: each
    answer is documented, valid data is accepted and invalid data refused with a 4xx."""
    import subprocess
    import sys

    with serving(docker_client, house_build.tag) as served:
        fuzzer = Path(sys.executable).parent / "schemathesis"
        done = subprocess.run(
            [str(fuzzer), "run", f"http://{served.host}:{served.port}/openapi.json", "--mode", "all",
             "--phases", "examples,coverage,fuzzing,stateful", "--max-examples", "1000",
             "--generation-deterministic", "--report", "junit", "--report-dir", str(tmp_path)],
            capture_output=True, text=True, timeout=900, check=False, cwd=tmp_path)
        generated = re.search(r"(\d+) generated, (\d+) passed", done.stdout)
        assert done.returncode == 0 and generated, done.stdout[-3000:]
        assert int(generated.group(1)) == int(generated.group(2)) >= 1000
        print(f"\nschemathesis: {generated.group(0)}")
        answered = [json.loads(line) for line in served.logs().splitlines()
                     if line.startswith("{") and '"kind": "access"' in line]
        # the /ready polls while the model loaded were 503, as they should be
        statuses = [line["status"] for line in answered if line["path"] != "/ready"]
        assert len(statuses) >= 1000 and not [status for status in statuses if status >= 500]


def test_keep_alive_serves_many_calls_on_one_connection(house_build: Built, docker_client: docker.DockerClient) -> None:
    with serving(docker_client, house_build.tag) as served:
        connection = http.client.HTTPConnection(served.host, served.port, timeout=10)
        sockets = set()
        for _ in range(50):
            connection.request("POST", "/predict", body=HOUSE_BODY, headers={"Content-Type": "application/json"})
            response = connection.getresponse()
            assert response.status == 200 and response.getheader("Connection") != "close"
            response.read()
            sockets.add(id(connection.sock))
        connection.close()
        assert len(sockets) == 1


def _send_then_read(served: Served, data: bytes) -> bytes:
    """Send a whole request and read the answer, whoever writes first: a server that answers and
    closes before the body is in (503 past the cap) gives the client a broken pipe, not an answer."""
    with socket.create_connection((served.host, served.port), timeout=5) as sock:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(data)
        answer = b""
        with contextlib.suppress(ConnectionResetError):
            while chunk := sock.recv(4096):
                answer += chunk
        return answer


def test_connections_past_the_cap_are_refused_plainly_and_slow_requests_cut_off(
    house_build: Built, docker_client: docker.DockerClient
) -> None:
    environment = {"NB2C_WORKERS": "1", "NB2C_MAX_CONNECTIONS": "4", "NB2C_READ_TIMEOUT": "2"}
    call = (b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nConnection: close\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (len(HOUSE_BODY), HOUSE_BODY))
    with serving(docker_client, house_build.tag, environment=environment) as served:
        # Kept-alive connections that went quiet give way to a new caller, oldest first.
        quiet = [http.client.HTTPConnection(served.host, served.port, timeout=5) for _ in range(4)]
        for connection in quiet:
            connection.request("GET", "/health")
            connection.getresponse().read()
        assert _send_then_read(served, call).startswith(b"HTTP/1.1 200 OK")
        for connection in quiet:
            connection.close()
        time.sleep(0.5)  # the server sees them close (on a busy machine, maybe later: see below)
        # Requests on their way in hold their places: past the cap, a plain 503.
        held = [socket.create_connection((served.host, served.port), timeout=5) for _ in range(4)]
        for sock in held:
            sock.sendall(b"POST /predict HTTP/1.1\r\n")
        time.sleep(1.0)
        for _ in range(3):  # a kept-alive connection the server has not yet seen closed gives way first, by design
            answer = _send_then_read(served, call)
            if not answer.startswith(b"HTTP/1.1 200 OK"):
                break
        assert answer.startswith(b"HTTP/1.1 503 Service Unavailable") and b"NB2C_MAX_CONNECTIONS" in answer, answer
        assert b"Retry-After: 1" in answer
        for sock in held:  # too slow: answered 408 once the read timeout passed, which frees their places
            sock.settimeout(20)  # the 408 comes at the server's next tick past 2 s: on a busy machine, later
            answer = sock.recv(300)
            assert answer.startswith(b"HTTP/1.1 408 Request Timeout") and b"NB2C_READ_TIMEOUT" in answer
            sock.close()
        assert served.predict({"area_sqft": 1500, "num_bedrooms": 3}) == (200, {"result": 245500.0})


# --- the pod's own limits: probes, fair dispatch, floods, protocol errors ------------------------

# The generated Kubernetes manifest's limits (768 MiB, 1 CPU: one worker), and 2 CPUs.
LIMITS = [pytest.param({"mem_limit": "768m", "nano_cpus": 1_000_000_000}, id="768Mi-1cpu"),
          pytest.param({"nano_cpus": 2_000_000_000}, id="2cpus")]


def probes_and_calls(served: Served, seconds: float) -> tuple[list[str], list[str], int]:
    """Probe /health and /ready as the kubelet does (1 s timeout) and call /predict, for ``seconds``:
    the probes that failed or were late, the calls that failed, and how many calls were made."""
    late: list[str] = []
    failed: list[str] = []
    calls = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for path in ("/health", "/ready"):
            started = time.monotonic()
            try:
                status = served.probe(path)
            except (OSError, http.client.HTTPException) as exc:
                late.append(f"{path}: {exc!r}")
                continue
            if status != 200 or time.monotonic() - started > 1:
                late.append(f"{path}: {status} in {time.monotonic() - started:.2f} s")
        try:
            status, payload = served.predict(json.loads(HOUSE_BODY), timeout=10)
            if status != 200:
                failed.append(f"{status} {payload}")
        except (OSError, http.client.HTTPException) as exc:
            failed.append(repr(exc))
        calls += 1
        time.sleep(0.2)
    return late, failed, calls


@pytest.mark.parametrize("limits", LIMITS)
def test_probes_answer_in_time_while_slow_chunked_bodies_hold_the_threads(
    house_build: Built, docker_client: docker.DockerClient, limits: dict[str, Any]
) -> None:
    """48 connections each sending a chunked body a byte a second for 40 s: every probe answers
    within its 1 s timeout and every call is served."""
    with serving(docker_client, house_build.tag, **limits) as served:
        with Hostile(served.host, served.port, idle=0, slow=48, head=Hostile.CHUNKED_HEAD, trickle=Hostile.CHUNKS):
            late, failed, calls = probes_and_calls(served, 40)
        assert late == [] and failed == [] and calls >= 40, (late[:5], failed[:5], calls)
        assert "WORKER TIMEOUT" not in served.logs()


@pytest.mark.parametrize("limits", LIMITS)
def test_a_flood_of_idle_sockets_leaves_probes_and_callers_served(
    house_build: Built, docker_client: docker.DockerClient, limits: dict[str, Any]
) -> None:
    """2,600 idle sockets from one client, reopened as the server closes them: the probes answer in
    time and at least 90% of the calls are served."""
    with serving(docker_client, house_build.tag, **limits) as served:
        with Hostile(served.host, served.port, idle=2600, slow=0):
            late, failed, calls = probes_and_calls(served, 30)
        assert late == [] and len(failed) <= calls * 0.1, (late[:5], failed[:5], calls)
        print(f"\nidle flood ({limits}): {calls - len(failed)} of {calls} calls served, probes all in time")


def test_probes_never_wait_behind_a_call_on_the_only_worker(faults: Built, docker_client: docker.DockerClient) -> None:
    with serving(docker_client, faults.tag, mem_limit="768m", nano_cpus=1_000_000_000) as served, \
            ThreadPoolExecutor(1) as pool:
        call = pool.submit(served.predict, {"x": 1, "wait": 6})
        time.sleep(1)  # the call holds the worker's only thread that runs calls
        for path in ("/health", "/ready"):
            started = time.perf_counter()
            assert served.probe(path) == 200 and time.perf_counter() - started < 0.1
        assert not call.done() and call.result() == (200, {"result": 2.0})
        # From SIGTERM on, readiness says 503 while the call drains (the load balancer stops sending).
        draining = pool.submit(served.predict, {"x": 1, "wait": 3})
        time.sleep(0.5)
        served.container.kill(signal="SIGTERM")
        time.sleep(0.5)
        assert served.probe("/ready") == 503 and served.probe("/health") == 200
        assert draining.result() == (200, {"result": 2.0})


def test_a_busy_worker_leaves_waiting_calls_to_an_idle_one(faults: Built, docker_client: docker.DockerClient) -> None:
    """Four concurrent 1 s calls on 2 workers finish in about 1, 1, 2, 2 s (not 1, 1, 2, 3: one
    worker taking three), round after round, whether a client writes the head and body apart
    (http.client) or together."""
    with serving(docker_client, faults.tag, environment={"NB2C_WORKERS": "2"}) as served, \
            ThreadPoolExecutor(4) as pool:
        for _ in range(5):
            started = time.monotonic()

            def call(_: int, started: float = started) -> float:
                assert served.predict({"x": 1, "wait": 1}) == (200, {"result": 2.0})
                return time.monotonic() - started

            finished = sorted(pool.map(call, range(4)))
            assert finished[1] < 1.7 and finished[3] < 2.7, finished


def test_protocol_errors_are_json_4xx_and_metrics_stay_bounded(
    faults: Built, docker_client: docker.DockerClient
) -> None:
    with serving(docker_client, faults.tag) as served:
        malformed = (b"POST /predict HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                     b"3;" + b"e" * 100_000 + b"\r\nabc\r\n0\r\n\r\n")
        trailer = (b"POST /predict HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                   b"3\r\nabc\r\n0\r\nContent-Length: 5\r\n\r\n")
        for request in (malformed, trailer, b"GARBAGE\r\n\r\n", b"GET /health HTTP/9.9\r\n\r\n"):
            answer = _send_then_read(served, request)
            head, _, body = answer.partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 400") and b"Content-Type: application/json" in head, answer[:300]
            assert "error" in json.loads(body)
        for n in range(3000):
            served.request(f"M{n}", "/predict")
        metrics = served.request("GET", "/metrics")[1]
        series = [line for line in metrics.splitlines() if line.startswith("nb2c_requests_total{")]
        assert len(series) <= 6, series
        assert "nb2c_predict_errors_total{code=\"500\"}" not in metrics  # the client's fault is not the function's
        assert not [line for line in served.logs().splitlines() if '"event": "error"' in line]


def _no_worker_lost(served: Served, workers: int) -> None:
    served.container.reload()
    logs = served.logs()
    assert not served.container.attrs["State"]["OOMKilled"]
    assert logs.count("Booting worker") == workers and "SIGKILL" not in logs and "WORKER TIMEOUT" not in logs, \
        logs[-2000:]


def _near_limit_bodies(served: Served, count: int, declared: int) -> list[bytes]:
    """``count`` connections each sending all but 1,000 bytes of a ``declared``-byte body, held open;
    then what each was answered."""
    head = (b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n" % declared)
    piece = b" " * 65536
    held = []
    for _ in range(count):
        sock = socket.create_connection((served.host, served.port), timeout=30)
        with contextlib.suppress(OSError):  # refused part-way: the answer is read below
            sock.sendall(head)
            for _ in range((declared - 1000) // len(piece)):
                sock.sendall(piece)
        held.append(sock)
    answers = []
    for sock in held:
        with contextlib.suppress(OSError):
            answers.append(sock.recv(300))
        sock.close()
    return answers


def _chunked_objects(served: Served, size: int) -> bytes:
    """A chunked body of ``size`` bytes of ``[{},{},...]`` (every piece under any length limit)."""
    with socket.create_connection((served.host, served.port), timeout=60) as sock:
        with contextlib.suppress(OSError):
            sock.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
            chunk = b'{"x": [' + b"{}," * 21845
            sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            for _ in range(size // 65535):
                sock.sendall(b"%x\r\n%s\r\n" % (65535, b"{}," * 21845))
            sock.sendall(b"4\r\n{}]}\r\n0\r\n\r\n")
        answer = b""
        with contextlib.suppress(OSError):
            while chunk := sock.recv(4096):
                answer += chunk
        return answer


@pytest.mark.parametrize(("limits", "body_limit"), [
    pytest.param({"mem_limit": "768m", "nano_cpus": 1_000_000_000}, None, id="768Mi-1cpu-contract-limit"),
    pytest.param({"mem_limit": "768m", "nano_cpus": 1_000_000_000}, str(10 * 1024 * 1024), id="768Mi-1cpu-10MiB"),
    pytest.param({"nano_cpus": 2_000_000_000}, None, id="2cpus-contract-limit"),
])
def test_no_client_traffic_gets_a_worker_killed_for_memory(
    house_build: Built, docker_client: docker.DockerClient, limits: dict[str, Any], body_limit: str | None
) -> None:
    """80 connections holding near-limit bodies of 10 MB, then 6 concurrent chunked 10 MB bodies of
    `[{},{},...]`: each is refused with a 4xx or 503, no worker dies, and calls are served after.
    With the contract's own limit (64 KiB for the house-price call) they are refused at once; with
    a 10 MiB limit at the manifest's 768 MiB, the memory budget refuses them."""
    environment = {"NB2C_MAX_BODY_BYTES": body_limit} if body_limit else {}
    workers = 2 if limits["nano_cpus"] == 2_000_000_000 else 1
    with serving(docker_client, house_build.tag, environment=environment, **limits) as served:
        answers = _near_limit_bodies(served, 80, 10_485_760)
        partial = sorted({answer[9:12] for answer in answers})
        assert set(partial) <= {b"408", b"413", b"503"} and len(answers) == 80, partial
        with ThreadPoolExecutor(6) as pool:
            answers = list(pool.map(lambda _: _chunked_objects(served, 10_000_000), range(6)))
        chunked = sorted({answer[9:12] for answer in answers})
        assert set(chunked) <= {b"413", b"503"}, [answer[:200] for answer in answers]
        assert served.predict(json.loads(HOUSE_BODY)) == (200, {"result": 245500.0})
        _no_worker_lost(served, workers)
        print(f"\nmemory traffic ({body_limit or 'contract limit'}): near-limit bodies answered {partial}, "
              f"chunked {chunked}")
