"""The image's HEALTHCHECK: ``GET /health`` on this container's probe port (NB2C_PROBE_PORT, which
the arbiter answers, never behind a call); exit 0 when it answers 200.

Run as ``python -I -S``, importing only C modules (``_socket``, ``posix``): the official
Python images ship no bytecode for the standard library and the image's root is read-only, so
every Python module a probe imported would be compiled again at every probe (``socket``
alone: about 130 ms of CPU). This costs a few milliseconds, even on a busy host.
"""

import _socket
import posix
import sys


def main() -> int:
    port = int(posix.environ.get(b"NB2C_PROBE_PORT", b"8081"))  # the Dockerfile sets it (IMAGE.probe_port)
    connection = _socket.socket(_socket.AF_INET, _socket.SOCK_STREAM)
    try:
        connection.settimeout(2)
        connection.connect(("127.0.0.1", port))
        connection.sendall(b"GET /health HTTP/1.0\r\nHost: localhost\r\n\r\n")
        status = connection.recv(32)
    except OSError:
        return 1
    finally:
        connection.close()
    return 0 if status.split(b" ", 2)[1:2] == [b"200"] else 1


if __name__ == "__main__":
    sys.exit(main())
