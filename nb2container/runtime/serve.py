"""Start the image's HTTP server: gunicorn serving nb2c_server.application.

gunicorn (and prometheus_client) are installed in /opt/nb2c-server, outside the frozen
environment, and that folder is put on the path *after* the environment's site-packages:
every version the notebook's packages pinned wins, and ``pip list`` in /opt/venv is the lock.

Settings, from the environment (the Dockerfile sets the defaults):
    NB2C_PORT              port (8000)
    NB2C_WORKERS           worker processes; default: the container's CPU limit (cgroup quota),
                           else the CPUs this process may run on
    NB2C_THREADS           requests a worker reads and answers at once (16; 64 with batching);
                           without batching its calls still run one at a time, in its main thread
    NB2C_READ_TIMEOUT      seconds a request's headers and body may take to arrive (10): a slow
                           or idle client is disconnected, never holds a worker
    NB2C_MAX_CONNECTIONS   open connections per worker (1000); past it, 503 and close
    NB2C_TIMEOUT           seconds a call may run before it is answered with 504 (60)
    NB2C_GRACE_SECONDS     on SIGTERM, how long in-flight requests get to finish (30)
    NB2C_PRELOAD           1: load the function once, before forking the workers (shares the
                           model's memory; not safe for libraries that start threads or touch
                           a GPU at import)
    NB2C_ACCESS_LOG        0: no access log lines
    NB2C_BATCH, NB2C_BATCH_MAX_SIZE, NB2C_BATCH_MAX_WAIT_MS: micro-batching (nb2c_batching.py)

The image's HEALTHCHECK is ``nb2c_health.py`` (no import beyond socket).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.append(os.environ.get("NB2C_SERVER_LIBS", "/opt/nb2c-server"))  # after site-packages: the lock wins
PORT = int(os.environ.get("NB2C_PORT", "8000"))
TIMEOUT_SECONDS = float(os.environ.get("NB2C_TIMEOUT", "60"))  # nb2c_server reads the same
# Shared memory is writable even with --read-only: gunicorn's heartbeat files and the metrics.
RUNTIME_DIR = Path("/dev/shm" if os.access("/dev/shm", os.W_OK) else tempfile.gettempdir()) / "nb2c"


def cpu_limit() -> int:
    """CPUs this container may use: its cgroup quota (v2, then v1), else its CPU affinity."""
    available = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            return max(1, min(available, math.ceil(int(quota) / int(period))))
        return available
    except (OSError, ValueError):
        pass
    try:
        quota_us = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us").read_text())
        period_us = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_period_us").read_text())
        if quota_us > 0:
            return max(1, min(available, math.ceil(quota_us / period_us)))
    except (OSError, ValueError):
        pass
    return available


READ_TIMEOUT = float(os.environ.get("NB2C_READ_TIMEOUT", "10"))
WRITE_TIMEOUT = 30.0  # a client that does not read its answer loses it, not a thread
MAX_CONNECTIONS = int(os.environ.get("NB2C_MAX_CONNECTIONS", "1000"))
BATCHING = bool(os.environ.get("NB2C_BATCH", "").strip())


def settings() -> dict[str, Any]:
    grace = int(float(os.environ.get("NB2C_GRACE_SECONDS", "30")))
    threads = int(os.environ.get("NB2C_THREADS") or (64 if BATCHING else 16))
    return {
        "bind": f"0.0.0.0:{PORT}",
        "workers": int(os.environ.get("NB2C_WORKERS") or cpu_limit()),
        # Threads read requests and answer them; idle connections wait in the worker's poller.
        "threads": threads,
        "worker_class": "nb2c_serve.GuardedWorker",
        "worker_connections": MAX_CONNECTIONS + threads + 1,  # GuardedWorker refuses past MAX_CONNECTIONS
        "logger_class": "nb2c_serve.JsonLogger",
        "accesslog": None if os.environ.get("NB2C_ACCESS_LOG") == "0" else "-",
        "errorlog": "-",
        "graceful_timeout": grace,
        # A worker silent this long (a call stuck in C past its 504) is killed and replaced.
        "timeout": int(TIMEOUT_SECONDS) + 5,
        "keepalive": 5,  # seconds an idle kept-alive connection stays open
        "preload_app": os.environ.get("NB2C_PRELOAD") == "1",
        "worker_tmp_dir": str(RUNTIME_DIR),
        "control_socket_disable": True,
        "proc_name": "nb2container",
        "on_starting": _on_starting,
        "post_fork": _post_fork,
        "child_exit": _child_exit,
    }


def _on_starting(arbiter: Any) -> None:
    shutil.rmtree(RUNTIME_DIR, ignore_errors=True)
    (RUNTIME_DIR / "metrics").mkdir(parents=True)
    (RUNTIME_DIR / "ready").mkdir()
    (RUNTIME_DIR / "exited").mkdir()


def _any_worker_ready() -> bool:
    """The server can serve while one worker has the function loaded: a worker that died (and
    its successor, loading) must not take the whole container out of its load balancer."""
    return any((RUNTIME_DIR / "ready").iterdir())


def _post_fork(arbiter: Any, worker: Any) -> None:
    """Load the function in each worker, beside the loop that answers /health and /ready."""
    import nb2c_server

    service, preloaded = nb2c_server.SERVICE, nb2c_server.SERVICE.function is not None
    service.peers_ready = _any_worker_ready

    def load() -> None:
        started = time.monotonic()
        try:
            if not preloaded:
                service.load()
            service.start()
            (RUNTIME_DIR / "ready" / str(os.getpid())).touch()
        except BaseException:
            logging.getLogger("nb2container").exception("loading the function failed")
            os._exit(3)  # gunicorn's "worker failed to boot": the server stops and says so
        _log({"event": "ready", "function": nb2c_server.SERVICE.spec["function"], "pid": os.getpid(),
              "load_seconds": round(time.monotonic() - started, 3)})
        _log_replacement()

    threading.Thread(target=load, name="nb2c-load", daemon=True).start()


def _child_exit(arbiter: Any, worker: Any) -> None:
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)
    (RUNTIME_DIR / "ready" / str(worker.pid)).unlink(missing_ok=True)
    with contextlib.suppress(OSError):  # its successor logs how long the server was a worker short
        (RUNTIME_DIR / "exited" / str(worker.pid)).write_text(str(time.time()))


def _log_replacement() -> None:
    """A worker ready after one died: log which, and how long the server had one worker fewer."""
    for record in sorted((RUNTIME_DIR / "exited").iterdir(), key=lambda p: p.stat().st_mtime)[:1]:
        with contextlib.suppress(OSError, ValueError):
            exited = float(record.read_text())
            record.unlink()
            _log({"event": "worker_replaced", "exited_pid": int(record.name), "pid": os.getpid(),
                  "seconds": round(time.time() - exited, 3)})


def _log(record: dict[str, Any]) -> None:
    stream = sys.__stdout__ or sys.stderr
    stream.write(json.dumps({"time": _now(), **record}) + "\n")
    stream.flush()


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def _gunicorn_classes() -> dict[str, Any]:
    import selectors
    from concurrent.futures import Future
    from functools import partial

    from gunicorn.glogging import Logger
    from gunicorn.http.errors import NoMoreData
    from gunicorn.workers.gthread import TConn, ThreadWorker

    class ReadDeadline(NoMoreData):
        """The request did not arrive within NB2C_READ_TIMEOUT: gunicorn closes the connection
        quietly (a premature end), the WSGI app answers 408 for a body."""

        def __str__(self) -> str:
            return f"the request did not arrive within {READ_TIMEOUT:g} s (NB2C_READ_TIMEOUT)"

    class GuardedSocket:
        """A client socket whose reads share one deadline per request, so a client sending a byte
        a second cannot hold a thread; writes time out too. Everything else is the socket's."""

        def __init__(self, sock: Any) -> None:
            self._sock, self.deadline = sock, float("inf")

        def recv(self, size: int) -> bytes:
            remaining = self.deadline - time.monotonic()
            if remaining <= 0:
                raise ReadDeadline()
            self._sock.settimeout(remaining)
            try:
                return bytes(self._sock.recv(size))
            except TimeoutError:
                raise ReadDeadline() from None
            finally:
                self._sock.settimeout(None)

        def sendall(self, data: bytes) -> None:
            self._sock.settimeout(WRITE_TIMEOUT)
            try:
                self._sock.sendall(data)
            finally:
                self._sock.settimeout(None)

        def __getattr__(self, name: str) -> Any:
            return getattr(self._sock, name)

    class GuardedWorker(ThreadWorker):
        """gunicorn's threaded worker, hardened for a port with nothing in front of it:

        - a new connection waits in the poller until it sends something (idle ones cost no
          thread), and its request must arrive within NB2C_READ_TIMEOUT;
        - past NB2C_MAX_CONNECTIONS open connections, a new one is answered 503 and closed;
        - HTTP keep-alive; the threads read and answer requests, while the notebook's function
          runs one call at a time in the main thread (unless batching), where SIGALRM can
          interrupt a call past NB2C_TIMEOUT;
        - on SIGTERM it takes what the kernel already queued, closes its listeners (later
          connections are refused, not dropped) and answers what it holds within the grace."""

        def init_process(self) -> None:
            import nb2c_server  # after on_starting made the metrics folder it writes to

            if not BATCHING:
                nb2c_server.SERVICE.runner = self.run_in_main_thread
            super().init_process()

        def run_in_main_thread(self, work: Any) -> Any:
            done: Future[Any] = Future()

            def run() -> None:
                try:
                    done.set_result(work())
                except BaseException as exc:  # handed back to the request's thread
                    done.set_exception(exc)

            self.method_queue.defer(run)
            return done.result()

        def accept(self, listener: Any) -> None:
            try:
                client, address = listener.accept()
            except OSError:
                return  # another worker took it, or the listener closed at SIGTERM
            if self.nr_conns >= MAX_CONNECTIONS:
                _refuse(client)
                return
            self.nr_conns += 1
            conn = TConn(self.cfg, GuardedSocket(client), address, listener.getsockname())
            conn.timeout = time.monotonic() + READ_TIMEOUT  # closed if it sends nothing by then
            self.pending_conns.append(conn)
            self.poller.register(conn.sock, selectors.EVENT_READ, partial(self.on_pending_socket_readable, conn))

        def handle(self, conn: Any) -> Any:
            conn.sock.deadline = time.monotonic() + READ_TIMEOUT  # for this request's headers and body
            try:
                return super().handle(conn)
            finally:
                conn.sock.deadline = float("inf")

        def handle_exit(self, sig: int, frame: Any) -> None:
            if self.alive:
                self.method_queue.defer(self._stop_listening)
            super().handle_exit(sig, frame)

        def _stop_listening(self) -> None:
            self.set_accept_enabled(False)
            for listener in self.sockets:
                _take_pending(listener, self.accept)

    class JsonLogger(Logger):
        """One JSON object per line on stdout: access lines and gunicorn's own messages."""

        def setup(self, cfg: Any) -> None:
            super().setup(cfg)
            for handler in self.error_log.handlers + self.access_log.handlers:
                handler.setFormatter(_JsonFormatter())

        def access(self, resp: Any, req: Any, environ: dict[str, Any], request_time: Any) -> None:
            if not self.access_log_enabled:
                return
            self.access_log.info(json.dumps({
                "time": _now(), "kind": "access", "remote": environ.get("REMOTE_ADDR"),
                "method": environ.get("REQUEST_METHOD"), "path": environ.get("PATH_INFO"),
                "status": int(str(resp.status).split()[0]) if resp.status else None,
                "bytes": getattr(resp, "sent", None),
                "duration_ms": round(request_time.total_seconds() * 1000, 3), "pid": os.getpid()}))

    return {"GuardedWorker": GuardedWorker, "JsonLogger": JsonLogger}


_TOO_MANY = json.dumps({"error": f"this server holds its most connections ({MAX_CONNECTIONS} per worker, "
                                 "NB2C_MAX_CONNECTIONS); retry shortly"}).encode()


def _refuse(client: Any) -> None:
    """Past the connection cap: a clear 503, then close, instead of a silent queue."""
    with contextlib.suppress(OSError):
        client.settimeout(1)
        client.sendall(b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
                       b"Retry-After: 1\r\nConnection: close\r\nContent-Length: "
                       + str(len(_TOO_MANY)).encode() + b"\r\n\r\n" + _TOO_MANY)
    with contextlib.suppress(OSError):
        client.close()


def _take_pending(listener: Any, take: Any) -> None:
    """Take what the kernel accepted for us, then close: later connections are refused."""
    import select

    while select.select([listener], [], [], 0)[0]:
        take(listener)
    listener.close()


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if message.startswith("{"):
            return message  # already a JSON record (access lines, the server's errors)
        entry = {"time": _now(), "level": record.levelname.lower(), "message": message, "pid": os.getpid()}
        if record.exc_info:
            entry["traceback"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def __getattr__(name: str) -> Any:  # gunicorn finds the worker and logger classes by dotted name
    if name in ("GuardedWorker", "JsonLogger"):
        globals().update(_gunicorn_classes())
        return globals()[name]
    raise AttributeError(name)


def main() -> None:
    from gunicorn.app.base import BaseApplication

    os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", str(RUNTIME_DIR / "metrics"))
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(_JsonFormatter())
    logging.getLogger("nb2container").addHandler(handler)
    logging.getLogger("nb2container").setLevel(logging.INFO)
    config = settings()

    class Server(BaseApplication):
        def load_config(self) -> None:
            for key, value in config.items():
                self.cfg.set(key, value)

        def load(self) -> Any:
            import nb2c_server

            if config["preload_app"] and nb2c_server.SERVICE.function is None:
                nb2c_server.SERVICE.load()  # before the fork; each worker starts its threads
            return nb2c_server.application

    _log({"event": "starting", "port": PORT, "workers": config["workers"], "threads": config["threads"],
          "read_timeout_seconds": READ_TIMEOUT, "max_connections": MAX_CONNECTIONS,
          "cpu_limit": cpu_limit(), "batching": os.environ.get("NB2C_BATCH") or None,
          "timeout_seconds": TIMEOUT_SECONDS,
          "grace_seconds": config["graceful_timeout"], "preload": config["preload_app"]})
    Server().run()


if __name__ == "__main__":
    sys.modules.setdefault("nb2c_serve", sys.modules[__name__])  # gunicorn imports its classes by this name
    main()
