"""Start the image's HTTP server: gunicorn serving nb2c_wsgi.application.

gunicorn (and prometheus_client) are installed in /opt/nb2c-server, outside the frozen
environment, and that folder is put on the path *after* the environment's site-packages:
every version the notebook's packages pinned wins, and /opt/venv holds exactly the lock.

Settings, from the environment (the Dockerfile sets the defaults):
    NB2C_PORT              port (8000)
    NB2C_PROBE_PORT        port of /health and /ready for probes (8081), answered by the arbiter
                           (nb2c_probes.py): never behind a call, a slow client or a full table
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

The image's HEALTHCHECK is ``nb2c_health.py`` (C modules only: ``_socket``, ``posix``).
"""

from __future__ import annotations

import contextlib
import gc
import json
import logging
import math
import os
import re
import shutil
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

try:  # inside the package (tests) or beside this file in the image
    from nb2container.runtime import budget, loads, plain_call
    from nb2container.runtime.layout import IMAGE
    from nb2container.runtime.probes import ProbeServer
except ImportError:
    import nb2c_budget as budget  # type: ignore[no-redef]
    import nb2c_loads as loads  # type: ignore[no-redef]
    import nb2c_plain_call as plain_call  # type: ignore[no-redef]
    from nb2c_layout import IMAGE  # type: ignore[no-redef]
    from nb2c_probes import ProbeServer  # type: ignore[no-redef]

sys.path.append(os.environ.get("NB2C_SERVER_LIBS", IMAGE.server_libs))  # after site-packages: the lock wins
PORT = int(os.environ.get("NB2C_PORT", "8000"))
PROBE_PORT = int(os.environ.get("NB2C_PROBE_PORT", IMAGE.probe_port))
TIMEOUT_SECONDS = float(os.environ.get("NB2C_TIMEOUT", "60"))  # nb2c_wsgi reads the same
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
    grace = int(float(os.environ.get("NB2C_GRACE_SECONDS", IMAGE.grace_seconds)))
    threads = int(os.environ.get("NB2C_THREADS") or (64 if BATCHING else 16))
    return {
        "bind": f"0.0.0.0:{PORT}",
        "workers": int(os.environ.get("NB2C_WORKERS") or cpu_limit()),
        # Threads read requests and answer them; idle connections wait in the worker's poller.
        "threads": threads,
        "worker_class": "nb2c_launcher.GuardedWorker",
        "worker_connections": MAX_CONNECTIONS + threads + 1,  # GuardedWorker refuses past MAX_CONNECTIONS
        "logger_class": "nb2c_launcher.JsonLogger",
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
        "when_ready": _when_ready,
        "pre_fork": _pre_fork,
        "post_fork": _post_fork,
        "child_exit": _child_exit,
    }


def _prepare_runtime_dir() -> None:
    """Before gunicorn loads the application: with NB2C_PRELOAD its arbiter imports nb2c_wsgi,
    whose metrics write here, before any server hook (on_starting) would run."""
    shutil.rmtree(RUNTIME_DIR, ignore_errors=True)
    (RUNTIME_DIR / "metrics").mkdir(parents=True)
    (RUNTIME_DIR / "ready").mkdir()
    (RUNTIME_DIR / "exited").mkdir()


PROBES: ProbeServer | None = None  # the arbiter's probe listener (workers close their copy)
LOADS = loads.Loads()  # made in the arbiter, shared with every worker it forks


def _when_ready(arbiter: Any) -> None:
    """The arbiter has its listeners: a connection is accepted once its request's bytes arrive
    (or READ_TIMEOUT passed), so idle sockets wait in the kernel, not in a worker; then the
    probe listener starts, before any worker is forked."""
    global PROBES
    for listener in arbiter.LISTENERS:
        with contextlib.suppress(OSError, AttributeError):  # Linux only
            listener.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_DEFER_ACCEPT, max(1, int(READ_TIMEOUT)))
    try:
        PROBES = ProbeServer(PROBE_PORT, lambda: _serving(arbiter.num_workers))
    except OSError as exc:
        _log({"event": "error", "error": f"the probe port {PROBE_PORT} cannot be opened ({exc.strerror}): another "
              "process holds it (several containers on the host's network?). Set NB2C_PROBE_PORT to a free port."})
        sys.exit(1)
    PROBES.start()


def _serving(workers: int) -> bool:
    """Ready once every worker has loaded the function, then for as long as one can serve: a
    worker that died (and its successor, loading) must not take the container out of its load
    balancer."""
    started = RUNTIME_DIR / "started"
    ready = len(list((RUNTIME_DIR / "ready").iterdir()))
    if not started.exists() and ready >= workers:
        started.touch()
    return ready > 0 and started.exists()


def _pre_fork(arbiter: Any, worker: Any) -> None:
    worker.slot = LOADS.assign({getattr(other, "slot", None) for other in arbiter.WORKERS.values()})


def _post_fork(arbiter: Any, worker: Any) -> None:
    """Load the function in each worker, beside the loop that answers /health and /ready."""
    import nb2c_wsgi

    if PROBES is not None:
        PROBES.forget()
    service, preloaded = nb2c_wsgi.SERVICE, nb2c_wsgi.SERVICE.function is not None
    service.server_ready = lambda: _serving(worker.cfg.workers)

    def load() -> None:
        started = time.monotonic()
        try:
            if not preloaded:
                service.load()
            service.start()
            # What loading made lives as long as the worker: kept out of the collector's full
            # passes, which otherwise walk the model and its libraries (70 ms for a small forest).
            gc.collect()
            gc.freeze()
            (RUNTIME_DIR / "ready" / str(os.getpid())).touch()
        except BaseException:
            logging.getLogger("nb2container").exception("loading the function failed")
            os._exit(3)  # gunicorn's "worker failed to boot": the server stops and says so
        _log({"event": "ready", "function": nb2c_wsgi.SERVICE.spec["function"], "pid": os.getpid(),
              "load_seconds": round(time.monotonic() - started, 3)})
        _log_replacement()

    threading.Thread(target=load, name="nb2c-load", daemon=True).start()


def _child_exit(arbiter: Any, worker: Any) -> None:
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)
    LOADS.release(getattr(worker, "slot", None))
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
    from email.utils import formatdate
    from functools import partial

    from gunicorn import util
    from gunicorn.glogging import Logger
    from gunicorn.http import wsgi
    from gunicorn.http.errors import NoMoreData
    from gunicorn.workers.gthread import TConn, ThreadWorker

    def write_json_error(sock: Any, status: int, reason: str, message: str) -> None:
        """gunicorn's own refusals (a malformed request line, headers, chunks) as JSON, like
        every other error of this server, instead of its HTML page."""
        body = json.dumps({"error": f"{reason}: {message}" if message else reason}).encode()
        util.write_nonblock(sock, f"HTTP/1.1 {status} {reason}\r\nConnection: close\r\nContent-Type: "
                                  f"application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body)

    util.write_error = write_json_error  # the workers' handle_error writes through util.write_error

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
            if self.deadline == float("inf"):  # between requests: gunicorn's own timeouts apply
                return bytes(self._sock.recv(size))
            remaining = self.deadline - time.monotonic()
            if remaining <= 0:
                raise ReadDeadline()
            previous = self._sock.gettimeout()
            self._sock.settimeout(remaining)
            try:
                return bytes(self._sock.recv(size))
            except TimeoutError:
                raise ReadDeadline() from None
            finally:
                self._sock.settimeout(previous)

        def recv_now(self, size: int) -> bytes:
            """What has arrived, without waiting (the event loop's read)."""
            return bytes(self._sock.recv(size, socket.MSG_DONTWAIT))

        def sendall(self, data: bytes) -> None:
            try:  # an answer usually fits the socket's buffer: one send, no timeout to set and reset
                sent = self._sock.send(data, socket.MSG_DONTWAIT)
            except BlockingIOError:
                sent = 0
            if sent == len(data):
                return
            rest = memoryview(data)[sent:]
            previous = self._sock.gettimeout()
            self._sock.settimeout(WRITE_TIMEOUT)
            try:
                self._sock.sendall(rest)
            finally:
                self._sock.settimeout(previous)

        def __getattr__(self, name: str) -> Any:
            return getattr(self._sock, name)

    class OneWriteResponse(wsgi.Response):
        """The head goes out with the first piece of the body, in one write: one system call and
        one segment for a JSON answer, where gunicorn writes the head and the body apart."""

        head = b""
        headers_sent: bool

        def send_headers(self) -> None:
            if not self.headers_sent:
                head = self.default_headers() + [f"{name}: {value}\r\n" for name, value in self.headers]
                self.head = f"{''.join(head)}\r\n".encode("latin-1")
                self.headers_sent = True

        def _flush_head(self) -> None:
            head, self.head = self.head, b""
            if head:
                util.write(self.sock, head)

        def _emit_body(self, data: bytes) -> None:
            if self.head and not self.chunked:
                head, self.head = self.head, b""
                util.write(self.sock, head + data)
                return
            self._flush_head()
            super()._emit_body(data)

        def sendfile(self, respiter: Any) -> Any:
            self.send_headers()
            self._flush_head()
            return super().sendfile(respiter)

        def close(self) -> None:  # an answer without a body (HEAD, an empty one) still has its head
            self.send_headers()
            self._flush_head()
            super().close()

    wsgi.Response = OneWriteResponse  # wsgi.create makes every response by this name

    cached_date = [0, ""]

    def http_date(timestamp: float | None = None) -> str:
        """gunicorn formats the Date header anew for every answer; it changes once a second."""
        if timestamp is not None:
            return str(formatdate(timestamp, usegmt=True))
        now = int(time.time())
        if cached_date[0] != now:
            cached_date[:] = [now, formatdate(now, usegmt=True)]
        return str(cached_date[1])

    util.http_date = http_date  # Response.default_headers reads it through the module

    class GuardedConn(TConn):
        """A connection whose graceful close (FIN, then read until the client closes, RFC 9112
        9.6) lingers in the worker's poller, not in its main thread: gunicorn's own lingers up to
        2 s there, so clients that keep their end open after an answer could stall every call."""

        def __init__(self, worker: Any, *args: Any) -> None:
            super().__init__(*args)
            self.worker = worker

        def close(self, graceful: bool = False) -> None:
            if graceful:
                self.worker.linger(self.sock)
            else:
                super().close()

    class GuardedWorker(ThreadWorker):
        """gunicorn's threaded worker, hardened for a port with nothing in front of it:

        - the worker's event loop reads each request whole (headers and a body of known length)
          before a thread takes it, so idle and slow clients never hold a thread; what has not
          arrived within NB2C_READ_TIMEOUT is answered 408 and closed;
        - past NB2C_MAX_CONNECTIONS open connections, a new one is answered 503 and closed;
        - HTTP keep-alive; the threads answer requests, while the notebook's function runs one
          call at a time in the main thread (unless batching), where SIGALRM can interrupt a
          call past NB2C_TIMEOUT;
        - on SIGTERM it takes what the kernel already queued, closes its listeners (later
          connections are refused, not dropped) and answers what it holds within the grace."""

        def init_process(self) -> None:
            import nb2c_wsgi  # after main() made the metrics folder it writes to

            self.reading: dict[Any, float] = {}  # connection -> when its request must have arrived
            self.lingering: dict[Any, float] = {}  # closing socket -> when it is closed anyway
            self.max_body = nb2c_wsgi.MAX_BODY_BYTES
            self.slot: int | None = getattr(self, "slot", None)  # in the shared table of loads (_pre_fork)
            self.next_notify = 0.0
            # The requests this worker's poller holds count against the budget its threads use too.
            self.budget = nb2c_wsgi.BUDGET = budget.Budget(budget.per_worker(self.cfg.workers))
            if not BATCHING:
                nb2c_wsgi.SERVICE.runner = self.run_in_main_thread
            super().init_process()

        def run_in_main_thread(self, work: Any) -> Any:
            if threading.current_thread() is threading.main_thread():
                return work()
            done: Future[Any] = Future()

            def run() -> None:
                try:
                    done.set_result(work())
                except BaseException as exc:  # handed back to the request's thread
                    done.set_exception(exc)

            self.method_queue.defer(run)
            return done.result()

        def wait_for_and_dispatch_events(self, timeout: float) -> None:
            """A round of events: the connections' first, one new connection taken after each
            (a burst of new connections drains at one per call, not one per round of every
            connection held, which starved them for seconds at c=64), the rest left to an idle
            worker, which is waiting in its poller and takes them first."""
            LOADS.publish(self.slot, self.nr_conns, 0.0)  # waiting in the poller
            try:
                events = self.poller.select(timeout)
            except InterruptedError:
                return
            listening = [key for key, _ in events if key.fileobj in self.sockets]
            for key, _ in events:
                if key.fileobj not in self.sockets:
                    LOADS.publish(self.slot, self.nr_conns, time.monotonic())
                    key.data(key.fileobj)
                    for listener in listening:
                        listener.data(listener.fileobj)
            for listener in listening:
                listener.data(listener.fileobj)

        def accept(self, listener: Any, at_once: bool = True) -> None:
            """One connection per round of events, read at once: the listener defers accepting
            until a request's bytes arrived, so a call is usually whole here and runs before
            this worker accepts another; an idle worker takes the next (fair dispatch). On
            SIGTERM (``at_once`` false) connections are only taken, and answered from the poller.
            A worker holding more connections than another leaves it to that one (loads.py)."""
            if at_once and self.cfg.workers > 1 and (
                    self._body_on_its_way() or LOADS.another_takes(self.slot, self.nr_conns, BODY_GRACE)):
                return  # this round's connection is another worker's to take
            try:
                client, address = listener.accept()
            except (OSError, AttributeError):  # another worker took it, or SIGTERM closed the listener
                return  # earlier in this round of events (gunicorn's closed socket has no .accept)
            if self.nr_conns >= MAX_CONNECTIONS and not self._evict_idle():
                _answer_and_close(client, 503, _TOO_MANY, ("Retry-After: 1",))
                return
            self.nr_conns += 1
            self._read(GuardedConn(self, self.cfg, GuardedSocket(client), address, listener.getsockname()),
                       at_once=at_once)

        def _body_on_its_way(self) -> bool:
            """Whether the newest connection sent part of its request moments ago (a client that
            writes the head and the body apart): its call may be whole in a millisecond, and it
            would run before anything accepted now. Never longer than BODY_GRACE per connection."""
            if not self.reading:
                return False
            conn, deadline = next(reversed(self.reading.items()))
            return bool(conn.prefetched) and deadline - READ_TIMEOUT > time.monotonic() - BODY_GRACE

        def _evict_idle(self) -> bool:
            """At the cap, the oldest connection that has sent nothing gives way to a new one:
            a flood of idle sockets cannot lock real callers out."""
            silent = next((conn for conn in self.reading if not conn.prefetched), None)
            if silent is not None:
                self._drop(silent)
                return True
            if self.keepalived_conns:
                conn = self.keepalived_conns.popleft()
                with contextlib.suppress(OSError, KeyError, ValueError):
                    self.poller.unregister(conn.sock)
                self.nr_conns -= 1
                conn.close()
                return True
            return False

        def notify(self) -> None:
            """The heartbeat the arbiter checks against NB2C_TIMEOUT + 5 s: touched once a second,
            not once per round of events (a system call per request)."""
            now = time.monotonic()
            if now >= self.next_notify:
                self.next_notify = now + 1.0
                super().notify()

        def on_client_socket_readable(self, conn: Any, client: Any) -> None:
            """A kept-alive connection's next request. A plain call arrived whole (nearly always)
            is answered here; anything else is read whole from the poller first, as a new
            connection's request is."""
            # Out of the poller until answered: registered anew, a connection is reported in the
            # order its next request arrives (left in, the poller keeps its old place in the
            # round, and the last one answered in a round waits two rounds for its next call).
            self.poller.unregister(client)
            self.keepalived_conns.remove(conn)
            data = _receive(conn.sock)
            if not (data and self._answer_kept_alive(conn, data)):
                self._read(conn, data)

        def _answer_kept_alive(self, conn: Any, data: bytes) -> bool:
            call = self._plain_call(conn, data)
            if call is None:
                return False
            self.finish_request(conn, _Answered(self._answer_plain(conn, call)))
            return True

        def _plain_call(self, conn: Any, data: bytes | bytearray) -> Any:
            """The plain call in ``data`` this (the main) thread may answer without gunicorn's
            parser, or None: not while batching (calls meet in the threads) or stopping, nor when
            gunicorn's parser read ahead on this connection (the request starts there)."""
            if BATCHING or not self.alive or not data.startswith(b"POST /predict "):
                return None
            if conn.parser is not None and conn.parser.unreader.buf.getvalue():
                return None
            return plain_call.parse(data)

        def _read(self, conn: Any, data: bytes | None = None, at_once: bool = True) -> None:
            """Read the request: ``data`` or what has arrived now (usually all of it), the rest
            from the poller."""
            conn.prefetched = bytearray()
            conn.polled = False
            self.reading[conn] = time.monotonic() + READ_TIMEOUT
            if data is not None:
                self._received(conn, data)
            elif at_once:
                self._on_readable(conn, None)
            else:
                self._poll(conn)

        def _on_readable(self, conn: Any, _: Any) -> None:
            self._received(conn, _receive(conn.sock))

        def _received(self, conn: Any, data: bytes | None) -> None:
            if data == b"":  # the client went away
                self._drop(conn)
                return
            if data is not None and not self.budget.take(len(data)):  # it holds all the partial requests it may
                self._drop(conn, 503, _BUSY)
                return
            conn.prefetched += data or b""  # taken from the budget while in self.reading
            arrived = _arrived(conn.prefetched, self.max_body) if data else None
            if arrived is None:  # wait for the rest
                self._poll(conn)
                return
            self._unpoll(conn)
            del self.reading[conn]
            self.budget.give(len(conn.prefetched))  # from here the request's reader counts it
            conn.data_ready = True
            if arrived == "whole" and not BATCHING and conn.prefetched.startswith(b"POST /predict "):
                self._handle_here(conn)
            else:
                self.enqueue_req(conn)

        def _handle_here(self, conn: Any) -> None:
            """A call, whole in memory, answered in this (the main) thread, where it would run
            anyway: handing it to a thread and back would only add latency. Other paths go to
            the threads, so /health answers during a long call. A plain call (plain_call.py) is
            answered without gunicorn's parser; anything else, and everything while stopping,
            by gunicorn's own handling."""
            call = self._plain_call(conn, conn.prefetched)
            keep_alive = self._answer_plain(conn, call) if call else self.handle(conn)  # both answer every error
            self.finish_request(conn, _Answered(keep_alive))

        def _answer_plain(self, conn: Any, call: Any) -> bool:
            """Answer a plain call through the WSGI application; whether to keep the connection."""
            started = time.perf_counter()
            conn.init()  # gunicorn's parser reads whatever this connection sends next
            conn.prefetched = bytearray()
            environ = call.environ(conn.client, conn.server)
            reply: list[Any] = []  # what start_response was given: the status, the headers
            body, keep_alive = b"", False
            try:
                body = b"".join(self.wsgi(environ, lambda *given: reply.extend(given[:2])))
                self.nr += 1
                keep_alive = (call.keep_alive and self.alive and self.nr < self.max_requests
                              and len(self.keepalived_conns) < self.max_keepalived)
                conn.sock.sendall(plain_call.answer(reply[0], reply[1], body, keep_alive, util.http_date()))
            except OSError:  # the client went away, or did not read its answer in time
                return False
            except Exception:
                self.log.exception("Error handling request")
                return False
            finally:
                if reply:
                    self.log.access_line(environ, reply[0], len(body), time.perf_counter() - started)
            return bool(keep_alive)

        def _poll(self, conn: Any) -> None:
            if not conn.polled:
                self.poller.register(conn.sock, selectors.EVENT_READ, partial(self._on_readable, conn))
                conn.polled = True

        def _unpoll(self, conn: Any) -> None:
            if conn.polled:
                self.poller.unregister(conn.sock)
                conn.polled = False

        def _drop(self, conn: Any, status: int = 0, answer: bytes = b"") -> None:
            """Close a connection whose request is still arriving: answered when it sent part of
            one (408 too slow, 503 past the budget), silently when it sent nothing."""
            self._unpoll(conn)
            del self.reading[conn]
            self.budget.give(len(conn.prefetched))
            self.nr_conns -= 1
            if status:
                _answer_and_close(conn.sock, status, answer, ("Retry-After: 1",) if status == 503 else ())
            else:
                conn.close()

        def murder_pending(self) -> None:
            super().murder_pending()
            now = time.monotonic()
            for conn in [conn for conn, deadline in self.reading.items() if deadline <= now]:
                self._drop(conn, *((408, _TOO_SLOW) if conn.prefetched else ()))
            for sock in [sock for sock, deadline in self.lingering.items() if deadline <= now]:
                self._end_linger(sock)

        def linger(self, sock: Any) -> None:
            """Half-close (the client reads the whole answer), then drain what the client still
            sends from the poller until it closes, for LINGER_SECONDS at most."""
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_WR)
            if len(self.lingering) >= MAX_LINGERING:  # bounded: the oldest is closed outright
                self._end_linger(next(iter(self.lingering)))
            try:
                sock.setblocking(False)
                self.poller.register(sock, selectors.EVENT_READ, partial(self._drain, sock))
            except (OSError, ValueError, KeyError):
                sock.close()
                return
            self.lingering[sock] = time.monotonic() + LINGER_SECONDS

        def _drain(self, sock: Any, _: Any) -> None:
            if _receive(sock) == b"":
                self._end_linger(sock)

        def _end_linger(self, sock: Any) -> None:
            del self.lingering[sock]
            with contextlib.suppress(OSError, ValueError, KeyError):
                self.poller.unregister(sock)
            with contextlib.suppress(OSError):
                sock.close()

        def handle(self, conn: Any) -> Any:
            conn.sock.deadline = time.monotonic() + READ_TIMEOUT  # a chunked body is read here
            if getattr(conn, "prefetched", None):
                conn.sock.setblocking(True)
                conn.init()
                unreader = conn.parser.unreader
                unreader.unread(unreader.take_buffered() + bytes(conn.prefetched))
                conn.prefetched = bytearray()
            try:
                return super().handle(conn)
            finally:
                conn.sock.deadline = float("inf")

        def handle_exit(self, sig: int, frame: Any) -> None:
            LOADS.release(self.slot)  # a stopping worker takes no more: none is left to it
            if self.alive:
                self.method_queue.defer(self._stop_listening)
            super().handle_exit(sig, frame)

        def _stop_listening(self) -> None:
            """Stop taking connections without resetting one a client made: the kernel stops waiting
            for a request's bytes before accepting (a connection it held back would be reset at
            close), and what arrives within DRAIN_SECONDS is taken, then answered from the poller
            (running calls meanwhile would let more queue)."""
            self.set_accept_enabled(False)
            for listener in self.sockets:
                with contextlib.suppress(OSError, AttributeError):
                    listener.setsockopt(socket.IPPROTO_TCP, socket.TCP_DEFER_ACCEPT, 0)
            until = time.monotonic() + DRAIN_SECONDS
            for listener in self.sockets:
                _take_pending(listener, partial(self.accept, at_once=False), until)

    class JsonLogger(Logger):
        """One JSON object per line on stdout: access lines and gunicorn's own messages."""

        def setup(self, cfg: Any) -> None:
            super().setup(cfg)
            for handler in self.error_log.handlers + self.access_log.handlers:
                handler.setFormatter(_JsonFormatter())

        def access(self, resp: Any, req: Any, environ: dict[str, Any], request_time: Any) -> None:
            self.access_line(environ, resp.status, getattr(resp, "sent", None), request_time.total_seconds())

        def access_line(self, environ: dict[str, Any], status: Any, sent: int | None, seconds: float) -> None:
            if not self.access_log_enabled:
                return
            self.access_log.info(json.dumps({
                "time": _now(), "kind": "access", "remote": environ.get("REMOTE_ADDR"),
                "method": environ.get("REQUEST_METHOD"), "path": environ.get("PATH_INFO"),
                "status": int(str(status).split()[0]) if status else None, "bytes": sent,
                "duration_ms": round(seconds * 1000, 3), "pid": os.getpid()}))

    return {"GuardedWorker": GuardedWorker, "JsonLogger": JsonLogger}


_TOO_MANY = json.dumps({"error": f"this server holds its most connections ({MAX_CONNECTIONS} per worker, "
                                 "NB2C_MAX_CONNECTIONS); retry shortly"}).encode()
_TOO_SLOW = json.dumps({"error": f"the request did not arrive within {READ_TIMEOUT:g} s "
                                 "(NB2C_READ_TIMEOUT)"}).encode()
_BUSY = json.dumps({"error": budget.BUSY}).encode()
LINGER_SECONDS = 2.0  # as gunicorn's graceful close
BODY_GRACE = 0.02  # seconds a worker leaves new connections to others while a call's body arrives
DRAIN_SECONDS = 0.25  # on SIGTERM, how long connections already made still reach a worker
_BACKLOG = 2048  # gunicorn's listen backlog: the most a listener can hold queued
MAX_LINGERING = 256
_HEAD_END = re.compile(rb"\r?\n\r?\n")
_LENGTH = re.compile(rb"(?im)^content-length:[ \t]*(\d+)[ \t]*\r?$")
_MAX_HEAD = 64 * 1024


def _arrived(data: bytes | bytearray, max_body: int) -> str | None:
    """How much of the request has arrived: "whole" (the headers and a body of known length),
    "enough" (a thread may take it: a chunked body, one a client sends only after
    `100 Continue`, one over the limit, answered 413 unread, or something malformed for
    gunicorn's parser to refuse; a thread reads the rest under the same deadline), or None."""
    end = _HEAD_END.search(data)
    if end is None:
        return "enough" if len(data) > _MAX_HEAD else None
    head = bytes(data[: end.start()]).lower()
    if b"transfer-encoding" in head or b"100-continue" in head:  # the client waits for gunicorn's answer
        return "enough"
    length = _LENGTH.search(head)
    wanted = int(length.group(1)) if length else 0
    if wanted > max_body:
        return "enough"
    return "whole" if len(data) - end.end() >= wanted else None


class _Answered:
    """What finish_request reads of a request handled in the main thread: the future it would
    have been in a thread, without the lock and condition a Future makes."""

    def __init__(self, keep_alive: Any) -> None:
        self.keep_alive = keep_alive

    def cancelled(self) -> bool:
        return False

    def result(self) -> Any:
        return self.keep_alive


def _receive(sock: Any) -> bytes | None:
    """What has arrived on ``sock``, without waiting: None for nothing yet, b"" when the client
    closed or the connection broke."""
    try:
        return bytes(sock.recv_now(65536))
    except BlockingIOError:
        return None
    except OSError:
        return b""


def _answer_and_close(client: Any, status: int, body: bytes, headers: tuple[str, ...] = ()) -> None:
    """A clear answer (503 past the cap, 408 too slow), then close, instead of a silent drop."""
    phrase = {408: "Request Timeout", 503: "Service Unavailable"}[status]
    head = "".join(f"{header}\r\n" for header in ("Content-Type: application/json", *headers,
                                                     "Connection: close", f"Content-Length: {len(body)}"))
    with contextlib.suppress(OSError):
        client.settimeout(1)
        client.sendall(f"HTTP/1.1 {status} {phrase}\r\n{head}\r\n".encode() + body)
    with contextlib.suppress(OSError):
        client.close()


def _take_pending(listener: Any, take: Any, until: float) -> None:
    """Take what the kernel accepts for us until ``until`` and what it holds then (at most a
    backlog's worth), then close: later connections are refused."""
    import select

    while (remaining := until - time.monotonic()) > 0 and select.select([listener], [], [], remaining)[0]:
        take(listener)
    for _ in range(_BACKLOG):
        if not select.select([listener], [], [], 0)[0]:
            break
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
    from gunicorn.arbiter import Arbiter

    class DrainingArbiter(Arbiter):
        """From SIGTERM on, /ready on the probe port says 503 while the workers drain."""

        def handle_term(self) -> None:
            if PROBES is not None:
                PROBES.draining.set()
            super().handle_term()

    os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", str(RUNTIME_DIR / "metrics"))
    _prepare_runtime_dir()
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
            import nb2c_wsgi

            if config["preload_app"] and nb2c_wsgi.SERVICE.function is None:
                nb2c_wsgi.SERVICE.load()  # before the fork; each worker starts its threads
            return nb2c_wsgi.application

        def run(self) -> None:  # BaseApplication.run, with the draining arbiter
            try:
                DrainingArbiter(self).run()
            except RuntimeError as exc:
                sys.stderr.write(f"\nError: {exc}\n\n")
                sys.exit(1)

    _log({"event": "starting", "port": PORT, "probe_port": PROBE_PORT, "workers": config["workers"],
          "threads": config["threads"],
          "read_timeout_seconds": READ_TIMEOUT, "max_connections": MAX_CONNECTIONS,
          "cpu_limit": cpu_limit(), "batching": os.environ.get("NB2C_BATCH") or None,
          "timeout_seconds": TIMEOUT_SECONDS,
          "grace_seconds": config["graceful_timeout"], "preload": config["preload_app"]})
    Server().run()


if __name__ == "__main__":
    sys.modules.setdefault("nb2c_launcher", sys.modules[__name__])  # gunicorn imports its classes by this name
    main()
