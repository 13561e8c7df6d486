"""The common request, read and answered without gunicorn's general HTTP machinery.

Nearly every request a model server sees is the same shape: ``POST /predict HTTP/1.1``, a few
ordinary headers, one ``Content-Length`` and a JSON body, all arrived at once. gunicorn's
Python parser, its WSGI environ and its response object cost about as much CPU per request as
a small model's call. The worker (nb2c_launcher.py) reads such a request whole before it
answers it; ``parse`` recognises one and ``answer`` writes the reply, and anything else (other
methods or paths, HTTP/1.0, ``Transfer-Encoding``, ``Expect``, duplicate or odd lengths,
bytes past the body, folded or non-ASCII headers, names with ``_``) returns None and goes
to gunicorn, so every refusal and every defence stays where it was. Standard library only.
"""

from __future__ import annotations

import io
import re
import sys
from dataclasses import dataclass
from typing import Any

_REQUEST_LINE = b"POST /predict HTTP/1.1"
# A header line: a token name, a colon, an optional value of visible ASCII with inner spaces.
_HEADER = re.compile(rb"([!#$%&'*+.^`|~0-9A-Za-z-]+):[ \t]*((?:[\x21-\x7e][\x20-\x7e\t]*)?[\x21-\x7e])?[ \t]*")
_DIGITS = re.compile(rb"[0-9]{1,12}")
_NOT_HERE = frozenset({b"transfer-encoding", b"expect", b"upgrade", b"http2-settings", b"trailer"})
MAX_FIELDS = 100  # gunicorn's limit_request_fields: past it, gunicorn refuses the request
MAX_HEAD = 8190  # gunicorn's limit_request_field_size, for the whole head here


@dataclass
class PlainCall:
    headers: list[tuple[str, str]]  # (lower-case name, value), as sent
    body: bytes
    keep_alive: bool

    def environ(self, client: Any, server: Any) -> dict[str, Any]:
        """The WSGI environ gunicorn would make for it (PEP 3333's keys, HTTP_ headers)."""
        host, port = server[:2] if isinstance(server, tuple) else (str(server), "")
        environ: dict[str, Any] = {
            "REQUEST_METHOD": "POST", "SCRIPT_NAME": "", "PATH_INFO": "/predict", "RAW_URI": "/predict",
            "QUERY_STRING": "", "SERVER_PROTOCOL": "HTTP/1.1", "SERVER_NAME": str(host), "SERVER_PORT": str(port),
            "REMOTE_ADDR": client[0] if isinstance(client, tuple) else str(client),
            "REMOTE_PORT": str(client[1]) if isinstance(client, tuple) else "",
            "wsgi.version": (1, 0), "wsgi.url_scheme": "http", "wsgi.input": io.BytesIO(self.body),
            "wsgi.errors": sys.stderr, "wsgi.multithread": True, "wsgi.multiprocess": True, "wsgi.run_once": False,
            "CONTENT_LENGTH": str(len(self.body)),
        }
        for name, value in self.headers:
            if name == "content-type":
                environ["CONTENT_TYPE"] = value
            elif name != "content-length":
                key = "HTTP_" + name.upper().replace("-", "_")
                environ[key] = f"{environ[key]},{value}" if key in environ else value
        return environ


def parse(data: bytes | bytearray) -> PlainCall | None:
    """The request in ``data`` if it is a plain call arrived whole, with nothing after it."""
    end = data.find(b"\r\n\r\n")
    if end < 0 or end > MAX_HEAD or not data.startswith(_REQUEST_LINE + b"\r\n"):
        return None
    lines = bytes(data[len(_REQUEST_LINE) + 2:end]).split(b"\r\n") if end > len(_REQUEST_LINE) else []
    if len(lines) > MAX_FIELDS:
        return None
    headers: list[tuple[str, str]] = []
    length: int | None = None
    keep_alive = True
    for line in lines:
        field = _HEADER.fullmatch(line)
        if field is None:  # folded, non-ASCII, a bare CR or LF, a space before the colon, ...
            return None
        name, value = field.group(1).lower(), field.group(2) or b""
        if name in _NOT_HERE:
            return None
        if name == b"content-length":
            if length is not None or not _DIGITS.fullmatch(value):
                return None
            length = int(value)
        elif name == b"connection":
            token = value.lower()
            if token not in (b"keep-alive", b"close"):
                return None
            keep_alive = token == b"keep-alive"
        headers.append((name.decode("ascii"), value.decode("ascii")))
    body = bytes(data[end + 4:])
    if length is None or len(body) != length:  # no length, a short body, or a pipelined request after it
        return None
    return PlainCall(headers, body, keep_alive)


def answer(status: str, headers: list[tuple[str, str]], body: bytes, keep_alive: bool, date: str) -> bytes:
    """The whole reply, head and body, as gunicorn would write it (one write)."""
    head = [f"HTTP/1.1 {status}\r\nServer: gunicorn\r\nDate: {date}\r\n"
            f"Connection: {'keep-alive' if keep_alive else 'close'}\r\n"]
    head += [f"{name}: {value}\r\n" for name, value in headers]
    return f"{''.join(head)}\r\n".encode("latin-1") + body
