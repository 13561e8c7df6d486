"""The probe listener: ``GET /health`` and ``GET /ready`` on a port of their own (NB2C_PROBE_PORT).

One thread of gunicorn's arbiter serves it, a process that never runs a call, never reads a
client's body and never holds a data-plane connection: a long call, slow clients or a full
connection table on the data port cannot delay a probe. Kubernetes' probes, Docker's
HEALTHCHECK, compose and swarm all use this port; the data port answers the same two paths
for callers, from its workers.

    /health  200 while the arbiter runs (it replaces hung and dead workers itself)
    /ready   200 once every worker loaded the function and while one can serve;
             503 before that and from SIGTERM on (the load balancer stops sending calls)

The listener defends itself too, since nothing guards it: a request must arrive whole within
a second and in 4 KiB, and past its connection cap the oldest connection is closed first, so
a flood of idle sockets cannot lock a probe out. Standard library only.
"""

from __future__ import annotations

import contextlib
import json
import selectors
import socket
import threading
import time
from collections.abc import Callable

DEADLINE_SECONDS = 1.0  # a probe's request must have arrived whole by then
MAX_REQUEST = 4096
MAX_CONNECTIONS = 64
_ANSWERS = "the probe port answers GET /health and GET /ready"


class _Connection:
    __slots__ = ("deadline", "received", "sock")

    def __init__(self, sock: socket.socket) -> None:
        self.sock, self.received, self.deadline = sock, b"", time.monotonic() + DEADLINE_SECONDS


class ProbeServer:
    """Answers probes on ``port`` from one thread; ``ready`` says whether the server can serve."""

    def __init__(self, port: int, ready: Callable[[], bool]) -> None:
        self.ready = ready
        self.draining = threading.Event()  # set on SIGTERM: not ready any more
        self.listener = socket.create_server(("0.0.0.0", port), backlog=128, reuse_port=False)
        self.listener.setblocking(False)
        self.selector = selectors.DefaultSelector()
        self.selector.register(self.listener, selectors.EVENT_READ)
        self.connections: dict[socket.socket, _Connection] = {}  # insertion order: oldest first
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="nb2c-probes", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        """Stop serving and close (the arbiter never needs to: its thread ends with it)."""
        self._stop.set()
        self._thread.join(timeout=5)
        self.forget()

    def forget(self) -> None:
        """In a forked worker: close the inherited descriptors (the arbiter keeps serving)."""
        for sock in [self.listener, *self.connections]:
            with contextlib.suppress(OSError):
                sock.close()
        with contextlib.suppress(OSError):
            self.selector.close()

    def answer(self, request: bytes) -> tuple[int, dict[str, object]]:
        """The status and JSON body for a request's head (pure: tests call it directly)."""
        method, _, rest = request.partition(b" ")
        path = rest.split(b" ", 1)[0].split(b"?", 1)[0]
        if method not in (b"GET", b"HEAD"):
            return 405, {"error": _ANSWERS}
        if path == b"/health":
            return 200, {"status": "ok"}
        if path == b"/ready":
            ready = not self.draining.is_set() and self.ready()
            return (200 if ready else 503), {"ready": ready}
        return 404, {"error": _ANSWERS}

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                self._round()
            except Exception:  # never let one bad round end the probes; the next one starts clean
                for connection in list(self.connections.values()):
                    self._close(connection)

    def _round(self) -> None:
        for key, _ in self.selector.select(timeout=DEADLINE_SECONDS / 4):
            if key.fileobj is self.listener:
                self._accept()
            elif (connection := self.connections.get(key.fileobj)) is not None:  # type: ignore[call-overload]
                self._read(connection)  # (not one closed earlier in this round to make room)
        now = time.monotonic()
        for connection in [c for c in self.connections.values() if c.deadline <= now]:
            self._close(connection)

    def _accept(self) -> None:
        for _ in range(MAX_CONNECTIONS):  # what queued since the last round, bounded
            try:
                sock, _ = self.listener.accept()
            except OSError:  # nothing more queued (BlockingIOError), or the client left
                return
            if len(self.connections) >= MAX_CONNECTIONS:  # the oldest gives way to the newest
                self._close(next(iter(self.connections.values())))
            sock.setblocking(False)
            self.connections[sock] = _Connection(sock)
            self.selector.register(sock, selectors.EVENT_READ)

    def _read(self, connection: _Connection) -> None:
        try:
            data = connection.sock.recv(MAX_REQUEST)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        connection.received += data
        if not data or len(connection.received) > MAX_REQUEST:
            self._close(connection)
        elif b"\r\n\r\n" in connection.received or b"\n\n" in connection.received:
            status, body = self.answer(connection.received)
            self._respond(connection, status, body, head_only=connection.received.startswith(b"HEAD "))

    def _respond(self, connection: _Connection, status: int, body: dict[str, object], head_only: bool) -> None:
        payload = json.dumps(body).encode()
        phrase = {200: "OK", 404: "Not Found", 405: "Method Not Allowed", 503: "Service Unavailable"}[status]
        head = (f"HTTP/1.1 {status} {phrase}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n").encode()
        with contextlib.suppress(OSError):  # a few hundred bytes: the socket's buffer takes them whole
            connection.sock.send(head if head_only else head + payload)
        self._close(connection)

    def _close(self, connection: _Connection) -> None:
        self.connections.pop(connection.sock, None)
        with contextlib.suppress(KeyError, ValueError, OSError):
            self.selector.unregister(connection.sock)
        with contextlib.suppress(OSError):
            connection.sock.close()
