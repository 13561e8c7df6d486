"""The WSGI application nb2container puts in the image, next to the generated module.

gunicorn serves it (``nb2c_launcher.py`` starts it). This module needs nothing beyond the
standard library and prometheus_client, and both server libraries live outside the frozen
environment, so nothing here can change a version of the notebook's packages. Arguments are
restored and results encoded by the codecs beside it (``nb2c_codecs.py``, the same module the
kernel used to record the notebook's calls).

    POST /predict      JSON object (argument name -> value) or array (positional arguments);
                       answers {"result": ...}, plus "stdout" for functions that print
    GET  /health       liveness: 200 while the process answers
    GET  /ready        readiness: 503 until the workers have loaded the function and its artifacts,
                       then 200 while one of them can serve
    GET  /metadata     function, signature, Python, packages, source notebook
    GET  /openapi.json the OpenAPI 3 description of /predict, with the notebook's first call
    GET  /metrics      Prometheus text: requests, errors, latency, batch sizes

Errors are JSON: 4xx for bad requests, 500 with an error id when the function raises (the
traceback goes to the log), 504 when a call runs past NB2C_TIMEOUT seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import inspect
import io
import json
import logging
import os
import signal
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from http import HTTPStatus
from pathlib import Path
from typing import Any

try:  # inside the package (tests, the kernel) or beside this file in the image
    from nb2container.runtime import batching, budget, codecs, contract
except ImportError:
    import nb2c_batching as batching  # type: ignore[no-redef]
    import nb2c_budget as budget  # type: ignore[no-redef]
    import nb2c_codecs as codecs  # type: ignore[no-redef]
    import nb2c_contract as contract  # type: ignore[no-redef]

APP_DIR = Path(__file__).resolve().parent
# The Dockerfile sets it from the contract (contract.body_limit): 64 KiB for a call of numbers.
MAX_BODY_BYTES = int(os.environ.get("NB2C_MAX_BODY_BYTES", str(10 * 1024 * 1024)))
READ_PIECE = 64 * 1024  # a body is read, and counted against the budget, this much at a time
# What clients can make this worker hold (nb2c_launcher sizes it for the worker count).
BUDGET = budget.Budget(budget.per_worker(1))
TIMEOUT_SECONDS = float(os.environ.get("NB2C_TIMEOUT", "60"))
PATHS = ("/predict", "/health", "/ready", "/metadata", "/openapi.json", "/metrics")
# Metrics label values are bounded: a client's invented method or path must not add a series.
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
ERROR_DETAILS = os.environ.get("NB2C_ERROR_DETAILS") == "1"

log = logging.getLogger("nb2container")


class RequestError(Exception):
    def __init__(self, status: int, message: str, headers: tuple[tuple[str, str], ...] = ()) -> None:
        super().__init__(message)
        self.status, self.headers = status, headers


class CallTimeout(BaseException):
    """Raised inside a call that ran past the timeout (a BaseException: `except Exception` in
    the notebook's code must not swallow it)."""


class _ThreadStdout(io.TextIOBase):
    """sys.stdout that a call can capture alone (prints of concurrent calls never mix)."""

    def __init__(self, real: Any) -> None:
        self.real, self.local = real, threading.local()

    def write(self, text: str) -> int:
        buffer = getattr(self.local, "buffer", None)
        return (buffer if buffer is not None else self.real).write(text)

    def flush(self) -> None:
        self.real.flush()


def call_with_alarm(work: Callable[[], Any], timeout: float) -> Any:
    """Run ``work`` in this (the worker's main) thread; past ``timeout`` seconds SIGALRM raises
    CallTimeout inside it, which also interrupts a sleep or a wait in C. Code stuck in C that
    never returns to Python is left to gunicorn, which replaces a worker silent that long."""

    if _handler_of(signal.SIGALRM) is not _expire:  # once per worker, unless the function replaced it
        signal.signal(signal.SIGALRM, _expire)
    try:
        signal.setitimer(signal.ITIMER_REAL, timeout)
        try:
            return work()
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
    except CallTimeout:
        raise RequestError(504, f"the call ran past the timeout of {timeout:g} s (NB2C_TIMEOUT) "
                                "and was stopped") from None


try:  # signal.getsignal's own C function: the wrapper tries an enum through an exception, 3 µs a call
    from _signal import getsignal as _handler_of
except ImportError:
    _handler_of = signal.getsignal


def _expire(signum: int, frame: Any) -> None:
    raise CallTimeout


class Service:
    """The function of this worker: loaded once, then called per request."""

    def __init__(self, app_dir: Path = APP_DIR) -> None:
        self.app_dir = app_dir  # spec.json, openapi.json and the generated module
        self.spec: dict[str, Any] = {}
        self.module: Any = None
        self.function: Any = None
        self.signature: inspect.Signature | None = None
        self.ready = threading.Event()  # this worker's function is loaded
        # Whether the server can serve (nb2c_launcher: across its workers); alone, whether this one can.
        self.server_ready: Callable[[], bool] = self.ready.is_set
        self.batching = False
        self.openapi = b""
        # Where a call runs: here, or (nb2c_launcher, without batching) handed to the worker's main
        # thread, the only one SIGALRM can interrupt.
        self.runner: Callable[[Callable[[], Any]], Any] = lambda work: work()
        # The common call's plan (_by_name), made for this signature.
        self._plan_for: inspect.Signature | None = None
        self._names: frozenset[str] | None = None
        self._order: tuple[str, ...] = ()
        self._required: frozenset[str] = frozenset()

    def load(self) -> None:
        """Import the function and its artifacts (in each worker, or once before forking)."""
        self.spec = json.loads((self.app_dir / "spec.json").read_text())
        if (self.app_dir / "openapi.json").is_file():
            self.openapi = (self.app_dir / "openapi.json").read_bytes()
        if str(self.app_dir) not in sys.path:
            sys.path.insert(0, str(self.app_dir))
        self.module = importlib.import_module(self.spec["module"])
        self.function = getattr(self.module, self.spec["function"])
        self.signature = inspect.signature(self.function)

    def start(self) -> None:
        """Ready this worker. Without batching, calls run one at a time in the worker's main
        thread, as they did in the notebook; with it, in gunicorn's request threads, meeting in
        the batchers' threads, started here (never before a fork: threads do not survive one)."""
        if not isinstance(sys.stdout, _ThreadStdout):  # logs keep the real stdout
            sys.stdout = _ThreadStdout(sys.stdout)
        batch = batching.Settings.from_environment([a["name"] for a in self.spec.get("artifacts", [])],
                                                   TIMEOUT_SECONDS)
        if batch:
            batching.install(self.module, batch, METRICS.batch_size)
        self.batching = batch is not None
        self.ready.set()

    def call(self, body: Any) -> dict[str, Any]:
        """Check and restore the arguments, supply the bound ones, call, encode the answer."""
        if not (self.ready.is_set() or self.ready.wait(TIMEOUT_SECONDS)):  # during start-up, wait for it
            raise RequestError(503, "the model is still loading; retry shortly", (("Retry-After", "1"),))
        args, kwargs = self._bind(body)
        prints = bool(self.spec.get("prints"))
        # The batchers wait for the calls in flight; without them, there is nothing to count.
        counted = batching.IN_FLIGHT if self.batching else _UNCOUNTED

        def work() -> dict[str, Any]:
            printed = io.StringIO() if prints else None
            if printed is not None and isinstance(sys.stdout, _ThreadStdout):
                sys.stdout.local.buffer = printed
            try:
                with counted:
                    result = self.function(*args, **kwargs)
                    if inspect.iscoroutine(result):
                        result = asyncio.run(result)
            finally:
                if isinstance(sys.stdout, _ThreadStdout):
                    sys.stdout.local.buffer = None
            answer = {"result": result}  # encoded once, by application() (codecs.to_json)
            if printed is not None:
                answer["stdout"] = printed.getvalue()
            return answer

        if self.batching:  # in this request thread: the wait for the batch is what times out
            try:
                return work()
            except batching.BatchTimeout as exc:
                raise RequestError(504, f"{exc} (NB2C_TIMEOUT)") from None
        return self.runner(lambda: call_with_alarm(work, TIMEOUT_SECONDS))

    def _bind(self, body: Any) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """The call's positional and keyword arguments, checked against the contract and restored."""
        names = self._by_name()
        if names is not None and type(body) is dict and body.keys() <= names and self._required <= body.keys():
            return (), self._checked({name: body[name] for name in self._order if name in body})
        return self._bind_generally(body)

    def _by_name(self) -> frozenset[str] | None:
        """The parameter names when a JSON object of them can be passed as keywords as it is (no
        positional-only or variadic parameters, nothing bound by the server, every argument used
        as JSON gives it), else None: the common call needs neither ``Signature.bind`` nor its checks."""
        if self._plan_for is not self.signature:
            self._plan_for, self._names = self.signature, None
            parameters = list(self.signature.parameters.values()) if self.signature else []
            restored = self.spec.get("codecs", {}).get("params", {}).values()
            if (self.signature and not self.spec.get("bound") and all(c.get("kind", "json") == "json" for c in restored)
                    and all(p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) for p in parameters)):
                self._order = tuple(p.name for p in parameters)
                self._names = frozenset(self._order)
                self._required = frozenset(p.name for p in parameters if p.default is p.empty)
        return self._names

    def _checked(self, arguments: dict[str, Any]) -> dict[str, Any]:
        properties = self.spec.get("request_schema", {}).get("properties", {})
        for name, value in arguments.items():  # the contract /openapi.json documents
            try:
                arguments[name] = contract.check(properties.get(name, {}), value, name)
            except contract.ContractError as exc:
                raise RequestError(422, str(exc)) from None
        return arguments

    def _bind_generally(self, body: Any) -> tuple[tuple[Any, ...], dict[str, Any]]:
        spec, signature = self.spec, self.signature
        assert signature is not None
        bound: dict[str, str] = spec.get("bound", {})  # parameter -> the module's global that holds it
        if isinstance(body, dict):
            args, kwargs = [], dict(body)
        elif isinstance(body, list):
            args, kwargs = list(body), {}
            if bound:  # positions count the parameters the request sends, so name them
                names = [p.name for p in signature.parameters.values() if p.name not in bound
                         and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
                if len(args) > len(names):
                    raise RequestError(422, f"{len(args)} positional arguments given; {spec['function']} "
                                            f"takes {len(names)} from the request ({', '.join(names)})")
                args, kwargs = [], dict(zip(names, args, strict=False))
        else:
            raise RequestError(400, "the body must be a JSON object (argument name -> value) "
                                    "or a JSON array (positional arguments)")
        clash = sorted(set(kwargs) & set(bound))
        if clash:
            raise RequestError(422, f"`{clash[0]}` is supplied by the server (the notebook's object is "
                                    "bound to it); leave it out of the request")
        kwargs.update({name: getattr(self.module, holder) for name, holder in bound.items()})
        try:
            call = signature.bind(*args, **kwargs)
        except TypeError as exc:
            raise RequestError(422, f"arguments do not match {spec['function']}{spec['signature']}: {exc}") from None
        call.arguments.update(self._checked({name: value for name, value in call.arguments.items()
                                             if name not in bound}))
        for name, codec in spec.get("codecs", {}).get("params", {}).items():
            if name in call.arguments and name not in bound:
                try:
                    call.arguments[name] = codecs.decode(codec, call.arguments[name])
                except (ValueError, TypeError, OverflowError) as exc:
                    raise RequestError(422, f"`{name}`: {exc}") from None
        return call.args, call.kwargs


class Metrics:
    """Prometheus metrics, summed over the workers (prometheus_client's multiprocess mode)."""

    def __init__(self) -> None:
        try:
            import prometheus_client as prometheus
        except ImportError:  # the kernel and unit tests: no server libraries
            self.prometheus = None
            return
        self.prometheus = prometheus
        self.series: dict[tuple[str, str, int], tuple[Any, Any, Any]] = {}
        self.requests = prometheus.Counter("nb2c_requests", "HTTP requests answered",
                                           ["path", "method", "code"])
        self.latency = prometheus.Histogram(
            "nb2c_request_duration_seconds", "Time to answer a request", ["path"],
            buckets=(.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60))
        self.errors = prometheus.Counter("nb2c_predict_errors", "Calls of /predict not answered with 200",
                                         ["code"])
        self.batch = prometheus.Histogram("nb2c_batch_size", "Requests served by one batched model call",
                                          buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256))

    def observe(self, path: str, method: str, status: int, seconds: float) -> None:
        if self.prometheus is None:
            return
        key = (path, method, status)
        series = self.series.get(key)
        if series is None:  # labels() takes a lock and builds its key on every call: once per kind of answer
            label = path if path in PATHS else "other"
            method = method if method in METHODS else "other"
            series = (self.requests.labels(label, method, str(status)), self.latency.labels(label),
                      self.errors.labels(str(status)) if label == "/predict" and status != 200 else None)
            if len(self.series) < 1024:  # the labels are bounded; the keys (invented paths) are not
                self.series[key] = series
        requests, latency, errors = series
        requests.inc()
        latency.observe(seconds)
        if errors is not None:
            errors.inc()

    def batch_size(self, size: int) -> None:
        if self.prometheus is not None:
            self.batch.observe(size)

    def text(self) -> bytes:
        if self.prometheus is None:
            raise RequestError(501, "metrics need prometheus_client, which this process lacks")
        prometheus = self.prometheus
        registry = prometheus.REGISTRY
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            from prometheus_client import multiprocess
            registry = prometheus.CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
        return bytes(prometheus.generate_latest(registry))


SERVICE = Service()
METRICS = Metrics()


def create_app(service: Service) -> Callable[[dict[str, Any], Callable[..., Any]], list[bytes]]:
    """The WSGI application serving ``service`` (tests call it in-process, over fixture apps)."""

    def application(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        started = time.perf_counter()
        method, path = environ["REQUEST_METHOD"], environ.get("PATH_INFO") or "/"
        content_type = "application/json"
        headers: tuple[tuple[str, str], ...] = ()
        try:
            status, payload = _route(service, method, path, environ)
            if path == "/metrics":
                content_type = "text/plain; version=0.0.4; charset=utf-8"
            # numpy and pandas results become JSON here; a result with no JSON form is the function's 500
            body = payload if isinstance(payload, bytes) else _ENCODE(payload).encode()
        except RequestError as exc:
            status, headers = exc.status, exc.headers
            body = json.dumps({"error": str(exc)}).encode()
        except Exception as exc:  # the function raised: 500, the worker lives on
            error_id = uuid.uuid4().hex[:12]
            log.error(json.dumps({"event": "error", "error_id": error_id, "function": service.spec.get("function"),
                                  "error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()}))
            status = 500
            body = json.dumps({"error": _error_text(service, exc, error_id), "error_id": error_id}).encode()
        start_response(_status_line(status),
                       [("Content-Type", content_type), ("Content-Length", str(len(body))), *headers])
        METRICS.observe(path, method, status, time.perf_counter() - started)
        return [body]

    return application


application = create_app(SERVICE)  # what gunicorn serves
_ENCODE = json.JSONEncoder(default=codecs.to_json).encode  # json.dumps(..., default=) makes one per call
_UNCOUNTED = contextlib.nullcontext()
_STATUS_LINES: dict[int, str] = {}


def _status_line(status: int) -> str:
    line = _STATUS_LINES.get(status)
    if line is None:
        line = _STATUS_LINES[status] = f"{status} {HTTPStatus(status).phrase}"
    return line


def _error_text(service: Service, exc: Exception, error_id: str) -> str:
    """What a 500 tells the caller: the exception's class and the error id that finds it in the
    log. Its message can hold paths, data or secrets, so it stays in the log, unless
    NB2C_ERROR_DETAILS=1 (internal use)."""
    if ERROR_DETAILS:
        return f"{type(exc).__name__}: {exc}"
    return f"{type(exc).__name__} in {service.spec.get('function') or 'the function'} (error id {error_id}; " \
           "its message is in the server's log)"


def _route(service: Service, method: str, path: str, environ: dict[str, Any]) -> tuple[int, Any]:
    wanted = "POST" if path == "/predict" else "GET"
    if path not in PATHS:
        raise RequestError(404, f"no such endpoint: {method} {path}; see /openapi.json")
    if method != wanted:
        raise RequestError(405, f"{path} answers {wanted}, not {method}", (("Allow", wanted),))
    if path == "/predict":
        with BUDGET.hold() as held:  # the body and its parsed objects, until the call is answered
            return 200, service.call(_read_json(environ, held))
    if path == "/health":
        return 200, {"status": "ok"}
    if path == "/ready":
        ready = service.server_ready()
        return (200 if ready else 503), {"ready": ready}
    if path == "/metadata":
        if not service.spec:
            raise RequestError(503, "still loading", (("Retry-After", "1"),))
        return 200, service.spec
    if path == "/openapi.json":
        return 200, service.openapi or {}
    return 200, METRICS.text()


def _busy() -> RequestError:
    return RequestError(503, budget.BUSY, (("Retry-After", "1"),))


def _read_body(environ: dict[str, Any], held: budget.Hold) -> bytes:
    """The body, read a piece at a time and each piece counted against the budget."""
    length = environ.get("CONTENT_LENGTH") or ""
    if length and int(length) > MAX_BODY_BYTES:
        raise RequestError(413, f"the body is {length} bytes, over the limit of {MAX_BODY_BYTES} "
                                "(NB2C_MAX_BODY_BYTES)")
    wanted = int(length) if length else MAX_BODY_BYTES + 1
    pieces: list[bytes] = []
    while wanted > 0:
        try:
            piece = environ["wsgi.input"].read(min(READ_PIECE, wanted))
        except OSError as exc:  # nb2c_launcher's read deadline, or the client went away
            raise RequestError(408, f"the body did not arrive: {exc}") from None
        except Exception as exc:  # the server's reader refused the body's framing (chunks, trailers): the client's
            raise RequestError(400, f"the body is not well-formed HTTP ({type(exc).__name__}: {exc})"[:300]) from None
        if not piece:
            break
        if not held.take(len(piece)):
            raise _busy()
        pieces.append(piece)
        wanted -= len(piece)
    if wanted <= 0 and not length:  # chunked, without a length
        raise RequestError(413, f"the body is over the limit of {MAX_BODY_BYTES} bytes (NB2C_MAX_BODY_BYTES)")
    return b"".join(pieces)


def _read_json(environ: dict[str, Any], held: budget.Hold) -> Any:
    raw = _read_body(environ, held)
    cost = budget.parse_cost(raw)
    if cost > BUDGET.limit:
        raise RequestError(413, f"the body would take about {cost // 2**20 + 1} MiB of memory once parsed, more "
                                f"than this worker may hold for requests ({BUDGET.limit // 2**20} MiB, "
                                "NB2C_MEMORY_BUDGET_BYTES); send fewer values at once")
    if not held.take(cost):
        raise _busy()
    if not raw.strip():
        raise RequestError(400, "the body is empty; send a JSON object of argument names to values")
    deep = RequestError(400, f"the body nests deeper than {contract.MAX_DEPTH} levels")
    try:
        body = json.loads(raw)
    except RecursionError:  # the decoder's own stack ran out
        raise deep from None
    except ValueError as exc:
        raise RequestError(400, f"the body is not valid JSON: {exc}") from None
    # Walked only when the body holds enough brackets to nest that deep (inside strings too).
    if raw.count(b"[") + raw.count(b"{") > contract.MAX_DEPTH and contract.depth(body) > contract.MAX_DEPTH:
        raise deep
    return body
