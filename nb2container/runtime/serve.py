"""Start the image's HTTP server: gunicorn serving nb2c_server.application.

gunicorn (and prometheus_client) are installed in /opt/nb2c-server, outside the frozen
environment, and that folder is put on the path *after* the environment's site-packages:
every version the notebook's packages pinned wins, and ``pip list`` in /opt/venv is the lock.

Settings, from the environment (the Dockerfile sets the defaults):
    NB2C_PORT              port (8000)
    NB2C_WORKERS           worker processes; default: the container's CPU limit (cgroup quota),
                           else the CPUs this process may run on
    NB2C_THREADS           with batching, calls a worker takes at once (64); without it a worker
                           (gunicorn's sync worker) runs one call at a time, in its main thread
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
import errno
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


def settings() -> dict[str, Any]:
    batching = bool(os.environ.get("NB2C_BATCH", "").strip())
    grace = int(float(os.environ.get("NB2C_GRACE_SECONDS", "30")))
    return {
        "bind": f"0.0.0.0:{PORT}",
        "workers": int(os.environ.get("NB2C_WORKERS") or cpu_limit()),
        "threads": int(os.environ.get("NB2C_THREADS") or 64) if batching else 1,
        # sync: the least overhead, one call at a time per process; threads only to batch calls
        "worker_class": "nb2c_serve.DrainingThreadWorker" if batching else "nb2c_serve.DrainingSyncWorker",
        "logger_class": "nb2c_serve.JsonLogger",
        "accesslog": None if os.environ.get("NB2C_ACCESS_LOG") == "0" else "-",
        "errorlog": "-",
        "graceful_timeout": grace,
        # A worker silent this long (a call stuck in C past its 504) is killed and replaced.
        "timeout": int(TIMEOUT_SECONDS) + 5,
        "keepalive": 5,
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
    from gunicorn.glogging import Logger
    from gunicorn.workers.gthread import ThreadWorker
    from gunicorn.workers.sync import SyncWorker

    class DrainingSyncWorker(SyncWorker):
        """gunicorn's sync worker that, on SIGTERM, at once takes every connection already waiting
        in the listen queue and closes its listening socket (new connections are refused, not
        dropped later), then answers the request in hand and what it took, and exits."""

        taken: list[tuple[Any, Any, Any]] = []  # noqa: RUF012 - one worker per process

        def handle_exit(self, sig: int, frame: Any) -> None:
            super().handle_exit(sig, frame)
            for listener in self.sockets:
                _take_pending(listener, self._take)

        def _take(self, listener: Any) -> None:
            client, address = listener.accept()
            # the request's environ asks the listener its address after it is closed
            self.taken.append((_Address(listener.getsockname()), client, address))

        def accept(self, listener: Any) -> None:
            try:
                super().accept(listener)
            except OSError as exc:
                if self.alive:
                    raise
                raise BlockingIOError(errno.EAGAIN, "stopping") from exc  # the socket closed under it

        def run(self) -> None:
            super().run()  # returns once SIGTERM has arrived and the request in hand is answered
            for listener, client, address in self.taken:
                self.notify()
                client.setblocking(True)
                self.handle(listener, client, address)

    class DrainingThreadWorker(ThreadWorker):
        """gunicorn's threaded worker that, on SIGTERM, takes every connection already waiting in
        the listen queue and then closes its listening socket, so that no accepted connection
        is dropped when the process exits; in-flight requests then finish within the grace."""

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

    return {"DrainingSyncWorker": DrainingSyncWorker, "DrainingThreadWorker": DrainingThreadWorker,
            "JsonLogger": JsonLogger}


def _take_pending(listener: Any, take: Any) -> None:
    """Take what the kernel accepted for us, then close: later connections are refused."""
    import select

    while select.select([listener], [], [], 0)[0]:
        with contextlib.suppress(OSError):  # another worker took it first
            take(listener)
    listener.close()


class _Address:
    def __init__(self, name: Any) -> None:
        self.name = name

    def getsockname(self) -> Any:
        return self.name


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
    if name in ("DrainingSyncWorker", "DrainingThreadWorker", "JsonLogger"):
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
          "cpu_limit": cpu_limit(), "batching": os.environ.get("NB2C_BATCH") or None,
          "timeout_seconds": TIMEOUT_SECONDS,
          "grace_seconds": config["graceful_timeout"], "preload": config["preload_app"]})
    Server().run()


if __name__ == "__main__":
    sys.modules.setdefault("nb2c_serve", sys.modules[__name__])  # gunicorn imports its classes by this name
    main()
