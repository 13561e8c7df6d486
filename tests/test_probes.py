"""The probe listener (nb2c_probes.py) in-process: its answers, and that a flood of idle or slow
sockets cannot lock a probe out. What needs the image (the arbiter serving it while a call or
slow clients hold the workers) is in test_serving.py."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator

import pytest

from nb2container.runtime import probes
from nb2container.runtime.layout import IMAGE


@pytest.fixture
def server() -> Iterator[probes.ProbeServer]:
    ready = {"value": False}
    server = probes.ProbeServer(0, lambda: ready["value"])
    server.ready_value = ready  # type: ignore[attr-defined]
    server.start()
    yield server
    server.close()


def probe(server: probes.ProbeServer, path: str, method: str = "GET") -> tuple[int, dict[str, object]]:
    port = server.listener.getsockname()[1]
    with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
        sock.sendall(f"{method} {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        answer = b""
        while chunk := sock.recv(4096):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body) if body else {}


def test_health_ready_and_draining(server: probes.ProbeServer) -> None:
    assert probe(server, "/health") == (200, {"status": "ok"})
    assert probe(server, "/ready") == (503, {"ready": False})  # the workers are loading
    server.ready_value["value"] = True  # type: ignore[attr-defined]
    assert probe(server, "/ready?verbose=1") == (200, {"ready": True})
    server.draining.set()  # SIGTERM: the load balancer stops sending calls
    assert probe(server, "/ready") == (503, {"ready": False})
    assert probe(server, "/health") == (200, {"status": "ok"})
    assert probe(server, "/predict")[0] == 404
    assert probe(server, "/health", "POST")[0] == 405


def test_a_flood_of_idle_and_slow_sockets_cannot_lock_a_probe_out(server: probes.ProbeServer) -> None:
    port = server.listener.getsockname()[1]
    flood = [socket.create_connection(("127.0.0.1", port)) for _ in range(probes.MAX_CONNECTIONS * 3)]
    for n, sock in enumerate(flood):
        if n % 2:
            sock.sendall(b"GET /heal")  # slow: never the rest
    try:
        started = time.monotonic()
        for _ in range(10):
            assert probe(server, "/health") == (200, {"status": "ok"})
        assert time.monotonic() - started < 1
        assert len(server.connections) <= probes.MAX_CONNECTIONS
    finally:
        for sock in flood:
            sock.close()
    time.sleep(probes.DEADLINE_SECONDS + 0.5)  # what never sent a whole request is closed by its deadline
    assert server.connections == {}


def test_the_healthcheck_script_knows_the_layouts_probe_port() -> None:
    from nb2container.runtime import health

    source = health.__loader__.get_source(health.__name__)  # type: ignore[union-attr]
    assert f'b"NB2C_PROBE_PORT", b"{IMAGE.probe_port}"' in source


def test_a_taken_probe_port_stops_the_server_in_one_line(
    monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    """Several containers on the host's network: the second cannot open the probe port, and says
    which setting to change instead of a traceback."""
    import types

    from nb2container.runtime import launcher

    with socket.create_server(("0.0.0.0", 0)) as taken:
        monkeypatch.setattr(launcher, "PROBE_PORT", taken.getsockname()[1])
        with pytest.raises(SystemExit) as stopped:
            launcher._when_ready(types.SimpleNamespace(LISTENERS=[], num_workers=1))
    assert stopped.value.code == 1
    record = json.loads(capfd.readouterr().out.strip().splitlines()[-1])  # _log writes to the real stdout
    assert record["event"] == "error" and "NB2C_PROBE_PORT" in record["error"], record
    assert launcher.PROBES is None
