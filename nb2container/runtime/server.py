"""The HTTP server nb2container puts in the image, next to the generated module.

Standard library only, so that it cannot change any version of the frozen environment.
Arguments are restored and results encoded by the codecs beside it (``nb2c_codecs.py``,
the same module the kernel used to record the notebook's calls).

    POST /predict      JSON object (argument name -> value) or array (positional arguments);
                       answers {"result": ...}, plus "stdout" for functions that print
    GET  /health       liveness: 200 while the process answers
    GET  /ready        readiness: 503 until the function and its artifacts are loaded
    GET  /metadata     function, signature, Python, packages, source notebook
    GET  /openapi.json the OpenAPI 3 description of /predict, with the notebook's first call
Errors are JSON: 4xx for bad requests, 500 (with an error id) when the function raises.
SIGTERM stops accepting, lets in-flight requests finish, then exits 0.
Run ``python nb2c_server.py --healthcheck`` for the image's HEALTHCHECK.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import io
import json
import logging
import os
import signal
import sys
import threading
import traceback
import urllib.request
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

try:  # inside the package (tests, the kernel) or beside this file in the image
    from nb2container.runtime import codecs
except ImportError:
    import nb2c_codecs as codecs  # type: ignore[no-redef]

APP_DIR = Path(__file__).resolve().parent
PORT = int(os.environ.get("NB2C_PORT", "8000"))
MAX_BODY_BYTES = int(os.environ.get("NB2C_MAX_BODY_BYTES", str(10 * 1024 * 1024)))

log = logging.getLogger("nb2container")


class _State:
    function: Any = None
    module: Any = None
    spec: dict[str, Any] = {}  # noqa: RUF012 - filled once at start-up
    ready = threading.Event()


class _ThreadStdout(io.TextIOBase):
    """sys.stdout that a request thread can capture alone (prints of concurrent calls never mix)."""

    def __init__(self, real: Any) -> None:
        self.real, self.local = real, threading.local()

    def write(self, text: str) -> int:
        buffer = getattr(self.local, "buffer", None)
        return (buffer if buffer is not None else self.real).write(text)

    def flush(self) -> None:
        self.real.flush()


def load() -> None:
    _State.spec = json.loads((APP_DIR / "spec.json").read_text())
    _State.module = importlib.import_module(_State.spec["module"])
    _State.function = getattr(_State.module, _State.spec["function"])
    _State.ready.set()


class RequestError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def call_function(body: Any) -> dict[str, Any]:
    """Restore the arguments, supply the bound ones, call, and encode the answer."""
    spec = _State.spec
    bound: dict[str, str] = spec.get("bound", {})  # parameter -> the module's global that holds it
    signature = inspect.signature(_State.function)
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
    kwargs.update({name: getattr(_State.module, global_name) for name, global_name in bound.items()})
    try:
        call = signature.bind(*args, **kwargs)
    except TypeError as exc:
        raise RequestError(422, f"arguments do not match {spec['function']}{spec['signature']}: {exc}") from None
    for name, codec in spec.get("codecs", {}).get("params", {}).items():
        if name in call.arguments and name not in bound:
            try:
                call.arguments[name] = codecs.decode(codec, call.arguments[name])
            except ValueError as exc:
                raise RequestError(422, f"`{name}`: {exc}") from None
    printed = io.StringIO() if spec.get("prints") else None
    if printed is not None and isinstance(sys.stdout, _ThreadStdout):
        sys.stdout.local.buffer = printed
    try:
        result = _State.function(*call.args, **call.kwargs)
        if inspect.iscoroutine(result):
            result = asyncio.run(result)
    finally:
        if isinstance(sys.stdout, _ThreadStdout):
            sys.stdout.local.buffer = None
    answer = {"result": json.loads(json.dumps(result, default=codecs.to_json))}
    if printed is not None:
        answer["stdout"] = printed.getvalue()
    return answer


class Handler(BaseHTTPRequestHandler):
    server_version = "nb2container"
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        if self.path == "/health":
            self._send(200, {"status": "ok"})
        elif self.path == "/ready":
            ready = _State.ready.is_set()
            self._send(200 if ready else 503, {"ready": ready})
        elif self.path == "/metadata":
            self._send(200, _State.spec)
        elif self.path == "/openapi.json" and (APP_DIR / "openapi.json").is_file():
            self._send(200, json.loads((APP_DIR / "openapi.json").read_text()))
        else:
            self._send(404, {"error": f"no such endpoint: GET {self.path}"})

    def do_POST(self) -> None:
        if self.path != "/predict":
            self._send(404, {"error": f"no such endpoint: POST {self.path}"})
            return
        try:
            body = self._read_json()
            if not _State.ready.is_set():
                raise RequestError(503, "the model is still loading; retry shortly")
            self._send(200, call_function(body))
        except RequestError as exc:
            self._send(exc.status, {"error": str(exc)})
        except Exception as exc:
            error_id = uuid.uuid4().hex[:12]
            log.error("error %s in %s: %s", error_id, _State.spec.get("function"),
                      traceback.format_exc())
            self._send(500, {"error": f"{type(exc).__name__}: {exc}", "error_id": error_id})

    def _read_json(self) -> Any:
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY_BYTES:
            raise RequestError(413, f"the body is {length} bytes, over the limit of {MAX_BODY_BYTES}")
        raw = self.rfile.read(length)
        try:
            return json.loads(raw or b"null")
        except ValueError as exc:
            raise RequestError(400, f"the body is not valid JSON: {exc}") from None

    def _send(self, status: int, payload: Any) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        log.info(json.dumps({"client": self.client_address[0], "request": format % args}))


def healthcheck() -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{PORT}/health", timeout=3) as response:
            return 0 if response.status == 200 else 1
    except OSError:
        return 1


def serve() -> None:
    logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(message)s")
    sys.stdout = _ThreadStdout(sys.stdout)  # logs keep the real stdout; each request can capture its own
    server = ThreadingHTTPServer(("0.0.0.0", PORT), Handler)
    server.daemon_threads = False  # in-flight requests finish before exit
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    threading.Thread(target=_load_logged, daemon=True).start()
    log.info(json.dumps({"event": "listening", "port": PORT}))
    server.serve_forever()
    server.server_close()  # joins the request threads
    log.info(json.dumps({"event": "stopped"}))


def _load_logged() -> None:
    try:
        load()
        log.info(json.dumps({"event": "ready", "function": _State.spec["function"]}))
    except Exception:
        log.error("loading the function failed:\n%s", traceback.format_exc())
        os._exit(3)


if __name__ == "__main__":
    if "--healthcheck" in sys.argv:
        sys.exit(healthcheck())
    serve()
