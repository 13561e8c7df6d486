"""The plain call the worker answers without gunicorn's parser (runtime/plain_call.py): exactly
the common shape is taken, and every other shape, above all those a smuggler or a fuzzer sends,
is left to gunicorn. Pure logic."""

from __future__ import annotations

import pytest

from nb2container.runtime import plain_call

BODY = b'{"area_sqft": 1500, "num_bedrooms": 3}'
HEAD = (b"POST /predict HTTP/1.1\r\nHost: localhost:8000\r\nUser-Agent: curl/8.5\r\n"
        b"Content-Type: application/json\r\nContent-Length: 38\r\n")


def test_the_common_call_is_taken_with_its_headers_and_body() -> None:
    call = plain_call.parse(HEAD + b"\r\n" + BODY)
    assert call is not None and call.body == BODY and call.keep_alive
    environ = call.environ(("10.0.0.7", 51234), ("0.0.0.0", 8000))
    assert environ["REQUEST_METHOD"] == "POST" and environ["PATH_INFO"] == "/predict"
    assert environ["CONTENT_LENGTH"] == "38" and environ["CONTENT_TYPE"] == "application/json"
    assert environ["HTTP_HOST"] == "localhost:8000" and environ["REMOTE_ADDR"] == "10.0.0.7"
    assert "HTTP_CONTENT_LENGTH" not in environ and environ["wsgi.input"].read() == BODY


def test_repeated_headers_are_joined_and_the_last_content_type_wins_as_in_gunicorn() -> None:
    call = plain_call.parse(HEAD + b"Accept: a/b\r\nContent-Type: text/plain\r\nAccept: c/d\r\n\r\n" + BODY)
    assert call is not None
    environ = call.environ(("10.0.0.7", 51234), ("0.0.0.0", 8000))
    assert environ["HTTP_ACCEPT"] == "a/b,c/d" and environ["CONTENT_TYPE"] == "text/plain"


def test_connection_close_is_honoured() -> None:
    call = plain_call.parse(HEAD + b"Connection: Close\r\n\r\n" + BODY)
    assert call is not None and not call.keep_alive


@pytest.mark.parametrize("request_bytes", [
    HEAD.replace(b"HTTP/1.1", b"HTTP/1.0") + b"\r\n" + BODY,  # keep-alive rules of its own
    HEAD.replace(b"/predict", b"/predict?x=1") + b"\r\n" + BODY,
    HEAD.replace(b"POST", b"PUT") + b"\r\n" + BODY,
    HEAD + b"Transfer-Encoding: chunked\r\n\r\n" + BODY,  # CL.TE smuggling shape
    HEAD + b"Content-Length: 38\r\n\r\n" + BODY,  # a second length
    HEAD.replace(b"Content-Length: 38", b"Content-Length: +38") + b"\r\n" + BODY,
    HEAD.replace(b"Content-Length: 38", b"Content-Length : 38") + b"\r\n" + BODY,  # space before the colon
    HEAD + b"X-Folded: a\r\n b\r\n\r\n" + BODY,  # obsolete line folding
    HEAD + b"X-Bare: a\rb\r\n\r\n" + BODY,  # a bare CR inside a value
    HEAD + b"X-Latin: caf\xe9\r\n\r\n" + BODY,  # non-ASCII
    HEAD + b"X_Under: spoof\r\n\r\n" + BODY,  # an underscore name, which gunicorn handles its own way
    HEAD + b"Expect: 100-continue\r\n\r\n" + BODY,
    HEAD + b"Connection: upgrade\r\nUpgrade: h2c\r\n\r\n" + BODY,
    HEAD + b"\r\n" + BODY[:-1],  # not all of the body
    HEAD + b"\r\n" + BODY + b"POST /predict HTTP/1.1\r\n",  # a pipelined request after it
    HEAD.replace(b"Content-Length: 38\r\n", b"") + b"\r\n",  # no length
    HEAD.replace(b"\r\n", b"\n") + b"\n" + BODY,  # bare LF line ends
    HEAD + b"".join(b"X-%d: 1\r\n" % n for n in range(100)) + b"\r\n" + BODY,  # past gunicorn's field limit
])
def test_every_other_shape_is_left_to_gunicorn(request_bytes: bytes) -> None:
    assert plain_call.parse(request_bytes) is None


def test_the_answer_is_what_gunicorn_writes() -> None:
    answer = plain_call.answer("200 OK", [("Content-Type", "application/json"), ("Content-Length", "2")], b"{}",
                               False, "Mon, 07 Dec 2026 06:17:53 GMT")
    assert answer == (b"HTTP/1.1 200 OK\r\nServer: gunicorn\r\nDate: Mon, 07 Dec 2026 06:17:53 GMT\r\n"
                      b"Connection: close\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}")
