"""The HTTP server nb2container puts in the image, next to the generated module.

Standard library only, so that it cannot change any version of the frozen environment
(and so that the kernel side can import ``to_json`` to record results as this server sends them).

    POST /predict   JSON object (argument name -> value) or array (positional arguments)
    GET  /health    liveness: 200 while the process answers
    GET  /ready     readiness: 503 until the function and its artifacts are loaded
    GET  /metadata  function, signature, Python, packages, source notebook
Errors are JSON: 4xx for bad requests, 500 (with an error id) when the function raises.
SIGTERM stops accepting, lets in-flight requests finish, then exits 0.
Run ``python nb2c_server.py --healthcheck`` for the image's HEALTHCHECK.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
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

APP_DIR = Path(__file__).resolve().parent
PORT = int(os.environ.get("NB2C_PORT", "8000"))
MAX_BODY_BYTES = int(os.environ.get("NB2C_MAX_BODY_BYTES", str(10 * 1024 * 1024)))

log = logging.getLogger("nb2container")


class _State:
    function: Any = None
    spec: dict[str, Any] = {}  # noqa: RUF012 - filled once at start-up
    ready = threading.Event()


def load() -> None:
    _State.spec = json.loads((APP_DIR / "spec.json").read_text())
    module = importlib.import_module(_State.spec["module"])
    _State.function = getattr(module, _State.spec["function"])
    _State.ready.set()


def to_json(value: Any) -> Any:
    if hasattr(value, "tolist") and callable(value.tolist):
        return value.tolist()
    if hasattr(value, "to_dict") and callable(value.to_dict):
        return value.to_dict(orient="list")
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if isinstance(value, (set, frozenset)):
        return sorted(value, key=repr)
    raise TypeError(f"a result of type {type(value).__qualname__} has no JSON form")


class RequestError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def call_function(body: Any) -> Any:
    if isinstance(body, dict):
        args, kwargs = [], body
    elif isinstance(body, list):
        args, kwargs = body, {}
    else:
        raise RequestError(400, "the body must be a JSON object (argument name -> value) "
                                "or a JSON array (positional arguments)")
    try:
        inspect.signature(_State.function).bind(*args, **kwargs)
    except TypeError as exc:
        raise RequestError(422, f"arguments do not match {_State.spec['function']}"
                                f"{_State.spec['signature']}: {exc}") from None
    result = _State.function(*args, **kwargs)
    if inspect.iscoroutine(result):
        result = asyncio.run(result)
    return result


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
            result = call_function(body)
            self._send(200, {"result": json.loads(json.dumps(result, default=to_json))})
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
