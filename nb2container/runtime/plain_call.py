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

_REQUEST_LINE = b"POST /predict HTTP/1.1\r\n"
# A header line: a token name, a colon, an optional value of visible ASCII with inner spaces.
_NAME = rb"[!#$%&'*+.^`|~0-9A-Za-z-]+"
_VALUE = rb"(?:[\x21-\x7e][\x20-\x7e\t]*)?[\x21-\x7e]"
_FIELD = re.compile(rb"(" + _NAME + rb"):[ \t]*(" + _VALUE + rb")?[ \t]*\r\n")
_FIELDS = re.compile(rb"(?:" + _NAME + rb":[ \t]*(?:" + _VALUE + rb")?[ \t]*\r\n)*")  # the whole head, checked in C
_DIGITS = re.compile(rb"[0-9]{1,12}")
_NOT_HERE = frozenset({b"transfer-encoding", b"expect", b"upgrade", b"http2-settings", b"trailer"})
MAX_FIELDS = 100  # gunicorn's limit_request_fields: past it, gunicorn refuses the request
MAX_HEAD = 8190  # gunicorn's limit_request_field_size, for the whole head here


@dataclass
class PlainCall:
    fields: dict[str, str]  # the headers as the environ has them (CONTENT_TYPE, HTTP_*)
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
        environ.update(self.fields)
        return environ


def parse(data: bytes | bytearray) -> PlainCall | None:
    """The request in ``data`` if it is a plain call arrived whole, with nothing after it."""
    end = data.find(b"\r\n\r\n")
    if end < 0 or end > MAX_HEAD or not data.startswith(_REQUEST_LINE):
        return None
    head = bytes(data[len(_REQUEST_LINE):end + 2])  # the header lines, each ending in CRLF
    if head.count(b"\r\n") > MAX_FIELDS or not _FIELDS.fullmatch(head):  # folded, non-ASCII, a bare CR, ...
        return None
    fields: dict[str, str] = {}
    length: int | None = None
    keep_alive = True
    for raw_name, raw_value in _FIELD.findall(head):
        name = raw_name.lower()
        if name in _NOT_HERE:
            return None
        if name == b"content-length":
            if length is not None or not _DIGITS.fullmatch(raw_value):
                return None
            length = int(raw_value)
            continue
        if name == b"connection":
            token = raw_value.lower()
            if token not in (b"keep-alive", b"close"):
                return None
            keep_alive = token == b"keep-alive"
        value = raw_value.decode("ascii")
        if name == b"content-type":  # as gunicorn: the last one
            fields["CONTENT_TYPE"] = value
            continue
        key = "HTTP_" + name.decode("ascii").upper().replace("-", "_")
        fields[key] = f"{fields[key]},{value}" if key in fields else value
    body = bytes(data[end + 4:])
    if length is None or len(body) != length:  # no length, a short body, or a pipelined request after it
        return None
    return PlainCall(fields, body, keep_alive)


def answer(status: str, headers: list[tuple[str, str]], body: bytes, keep_alive: bool, date: str) -> bytes:
    """The whole reply, head and body, as gunicorn would write it (one write)."""
    head = [f"HTTP/1.1 {status}\r\nServer: gunicorn\r\nDate: {date}\r\n"
            f"Connection: {'keep-alive' if keep_alive else 'close'}\r\n"]
    head += [f"{name}: {value}\r\n" for name, value in headers]
    return f"{''.join(head)}\r\n".encode("latin-1") + body
